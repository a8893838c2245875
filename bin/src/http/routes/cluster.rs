//! The cluster routes (admin only). Until clustering lands a node is a one-member cluster that
//! owns every shard: the routes answer truthfully for it, and a rebalance has nothing to move.

use actix_web::{HttpResponse, web};

use crate::api::{self, MoveRequest, RebalanceQuery};
use crate::http::auth::Principal;
use crate::http::error::ApiError;
use crate::http::state::AppState;

/// The cluster's members.
#[utoipa::path(get, path = "/v1/cluster/members", tag = "cluster",
    responses((status = 200, description = "Every member", body = api::Members)))]
pub async fn members(
    state: web::Data<AppState>,
    principal: Principal,
) -> Result<HttpResponse, ApiError> {
    principal.require_admin()?;
    let identity = &state.identity;
    let status = if state.is_ready() {
        api::MemberStatus::Up
    } else if state.exchange_if_started().is_some() {
        api::MemberStatus::Leaving
    } else {
        api::MemberStatus::Joining
    };
    Ok(HttpResponse::Ok().json(api::Members {
        members: vec![api::Member {
            node_id: identity.node_id.clone(),
            http_addr: identity.http_addr.clone(),
            cluster_addr: identity.cluster_addr.clone(),
            status,
            shards: identity.shard_count,
            this_node: true,
        }],
    }))
}

/// Every shard, its owner and its load (entities and queued commands over all regions).
#[utoipa::path(get, path = "/v1/cluster/shards", tag = "cluster",
    responses((status = 200, description = "Every shard", body = api::Shards)))]
pub async fn shards(
    state: web::Data<AppState>,
    principal: Principal,
) -> Result<HttpResponse, ApiError> {
    principal.require_admin()?;
    let shard_count = state.identity.shard_count;
    let stats = state
        .call(|exchange| async move { Ok(exchange.shard_stats().await) })
        .await?;
    let mut shards: Vec<api::Shard> = (0..shard_count)
        .map(|shard| api::Shard {
            shard,
            owner: state.identity.node_id.clone(),
            entities: 0,
            queued: 0,
        })
        .collect();
    for (_, stat) in stats {
        if let Some(shard) = shards.get_mut(stat.shard as usize) {
            shard.entities += stat.entities as u64;
            shard.queued += stat.queued as u64;
        }
    }
    Ok(HttpResponse::Ok().json(api::Shards {
        shard_count,
        shards,
    }))
}

/// Plan (`dry_run=true`) or run a rebalance. One member owns every shard: nothing moves.
#[utoipa::path(post, path = "/v1/cluster/rebalance", tag = "cluster", params(RebalanceQuery),
    responses((status = 200, description = "The plan and its progress", body = api::Rebalance)))]
pub async fn rebalance(
    state: web::Data<AppState>,
    principal: Principal,
    query: web::Query<RebalanceQuery>,
) -> Result<HttpResponse, ApiError> {
    principal.require_admin()?;
    state.exchange()?;
    Ok(HttpResponse::Ok().json(api::Rebalance {
        dry_run: query.dry_run.unwrap_or(false),
        moves: Vec::new(),
        completed: 0,
    }))
}

/// Move a shard to a node.
#[utoipa::path(post, path = "/v1/cluster/shards/{shard}/move", tag = "cluster",
    params(("shard" = u32, Path, description = "The shard")),
    request_body = MoveRequest,
    responses((status = 200, description = "The move made", body = api::ShardMove)))]
pub async fn move_shard(
    state: web::Data<AppState>,
    principal: Principal,
    shard: web::Path<u32>,
    body: web::Json<MoveRequest>,
) -> Result<HttpResponse, ApiError> {
    principal.require_admin()?;
    let shard = shard.into_inner();
    if shard >= state.identity.shard_count {
        return Err(ApiError::not_found(
            "unknown_shard",
            format!(
                "shards are numbered 0 to {}",
                state.identity.shard_count - 1
            ),
        ));
    }
    known_node(&state, &body.to)?;
    Ok(HttpResponse::Ok().json(api::ShardMove {
        shard,
        from: state.identity.node_id.clone(),
        to: body.to.clone(),
    }))
}

/// Drain a node: hand its shards to the others, then let it stop.
#[utoipa::path(post, path = "/v1/cluster/members/{node}/leave", tag = "cluster",
    params(("node" = String, Path, description = "The node")),
    responses((status = 200, description = "The node is leaving", body = api::Leave)))]
pub async fn leave(
    state: web::Data<AppState>,
    principal: Principal,
    node: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    principal.require_admin()?;
    known_node(&state, &node)?;
    Err(ApiError::new(
        actix_web::http::StatusCode::CONFLICT,
        "last_member",
        "the only member of the cluster cannot hand its shards to anyone",
    ))
}

/// 404 `unknown_node` unless `node` is a member.
pub fn known_node(state: &AppState, node: &str) -> Result<(), ApiError> {
    if node == state.identity.node_id {
        return Ok(());
    }
    Err(ApiError::not_found(
        "unknown_node",
        format!("no member has the id {node:?}"),
    ))
}
