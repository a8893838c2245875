//! The cluster routes (admin only). A clustered node answers from the membership and shard
//! tables (every node sees the same); a node of its own is a one-member cluster that owns
//! every shard, and a rebalance has nothing to move.

use actix_web::{HttpResponse, web};

use tradefloor_cluster::Status;
use tradefloor_cluster::runtime::ClusterNode;

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
    if let Some(cluster) = state.cluster() {
        let members = member_rows(&cluster).await?;
        let shards = shard_rows(&cluster).await?;
        let members = members
            .into_iter()
            .map(|member| api::Member {
                shards: shards
                    .iter()
                    .filter(|row| row.owner == member.node.node_id)
                    .count() as u32,
                this_node: member.node.node_id == cluster.node_id(),
                status: match member.status {
                    Status::Joining => api::MemberStatus::Joining,
                    Status::Up => api::MemberStatus::Up,
                    Status::Leaving => api::MemberStatus::Leaving,
                    Status::Down => api::MemberStatus::Down,
                },
                node_id: member.node.node_id,
                http_addr: member.node.http_addr,
                cluster_addr: member.node.cluster_addr,
            })
            .collect();
        return Ok(HttpResponse::Ok().json(api::Members { members }));
    }
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
    let mut shards: Vec<api::Shard> = match state.cluster() {
        Some(cluster) => shard_rows(&cluster)
            .await?
            .into_iter()
            .map(|row| api::Shard {
                shard: row.shard,
                target: row.handoff.target().map(str::to_owned),
                handoff: row.handoff.as_str().to_owned(),
                owner: row.owner,
                entities: 0,
                queued: 0,
                epoch: row.epoch,
            })
            .collect(),
        None => (0..shard_count)
            .map(|shard| api::Shard {
                shard,
                owner: state.identity.node_id.clone(),
                entities: 0,
                queued: 0,
                epoch: 0,
                handoff: "active".to_owned(),
                target: None,
            })
            .collect(),
    };
    for (_, stat) in stats {
        // Counts are this node's: a shard owned elsewhere shows none here.
        if let Some(shard) = shards.iter_mut().find(|shard| shard.shard == stat.shard) {
            shard.entities += stat.entities as u64;
            shard.queued += stat.queued as u64;
        }
    }
    Ok(HttpResponse::Ok().json(api::Shards {
        shard_count,
        shards,
    }))
}

/// Plan (`dry_run=true`) or run a rebalance: the coordinator's next round (unserved shards
/// placed, leaving nodes drained, loads evened out, at most `moves_max` hand-offs at once).
/// `ctl rebalance` follows it through `GET /v1/cluster/shards`.
#[utoipa::path(post, path = "/v1/cluster/rebalance", tag = "cluster", params(RebalanceQuery),
    responses((status = 200, description = "The plan and its progress", body = api::Rebalance)))]
pub async fn rebalance(
    state: web::Data<AppState>,
    principal: Principal,
    query: web::Query<RebalanceQuery>,
) -> Result<HttpResponse, ApiError> {
    principal.require_admin()?;
    state.exchange()?;
    if let Some(cluster) = state.cluster() {
        let dry_run = query.dry_run.unwrap_or(false);
        let plan = if dry_run {
            cluster.plan().await
        } else {
            cluster.rebalance().await
        }
        .map_err(cluster_error)?;
        let moves = plan
            .reassign
            .iter()
            .chain(&plan.complete)
            .chain(&plan.moves)
            .map(|step| api::ShardMove {
                shard: step.shard,
                from: step.from.clone(),
                to: step.to.clone(),
            })
            .chain(plan.initial.iter().map(|(shard, owner)| api::ShardMove {
                shard: *shard,
                from: String::new(),
                to: owner.clone(),
            }))
            .collect();
        return Ok(HttpResponse::Ok().json(api::Rebalance {
            dry_run,
            moves,
            completed: 0,
        }));
    }
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
    if let Some(cluster) = state.cluster() {
        let rows = shard_rows(&cluster).await?;
        let from = rows
            .iter()
            .find(|row| row.shard == shard)
            .map(|row| row.owner.clone())
            .unwrap_or_default();
        let member = cluster
            .membership()
            .member(&body.to)
            .await
            .map_err(cluster_error)?;
        if member.is_none() {
            return Err(unknown_node(&body.to));
        }
        if from == body.to {
            return Ok(HttpResponse::Ok().json(api::ShardMove {
                shard,
                from,
                to: body.to.clone(),
            }));
        }
        if !cluster
            .move_shard(shard, &body.to)
            .await
            .map_err(cluster_error)?
        {
            return Err(ApiError::new(
                actix_web::http::StatusCode::CONFLICT,
                "shard_moving",
                format!("shard {shard} is being handed off already; try again when it is done"),
            ));
        }
        return Ok(HttpResponse::Ok().json(api::ShardMove {
            shard,
            from,
            to: body.to.clone(),
        }));
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
    if let Some(cluster) = state.cluster() {
        let members = member_rows(&cluster).await?;
        let Some(member) = members.iter().find(|member| member.node.node_id == *node) else {
            return Err(unknown_node(&node));
        };
        let others = members
            .iter()
            .filter(|other| other.status == Status::Up && other.node.node_id != *node)
            .count();
        if others == 0 {
            return Err(last_member());
        }
        if member.status == Status::Down {
            return Err(ApiError::new(
                actix_web::http::StatusCode::CONFLICT,
                "member_down",
                format!("{node} is down already; its shards were reassigned"),
            ));
        }
        cluster.ask_to_leave(&node).await.map_err(cluster_error)?;
        let plan = cluster.plan().await.map_err(cluster_error)?;
        let moves = plan
            .moves
            .iter()
            .filter(|step| step.from == *node)
            .map(|step| api::ShardMove {
                shard: step.shard,
                from: step.from.clone(),
                to: step.to.clone(),
            })
            .collect();
        return Ok(HttpResponse::Ok().json(api::Leave {
            node_id: node.into_inner(),
            moves,
        }));
    }
    known_node(&state, &node)?;
    Err(last_member())
}

/// 409 `last_member`: nobody could take the shards.
fn last_member() -> ApiError {
    ApiError::new(
        actix_web::http::StatusCode::CONFLICT,
        "last_member",
        "the only member of the cluster cannot hand its shards to anyone",
    )
}

/// 404 `unknown_node`.
pub fn unknown_node(node: &str) -> ApiError {
    ApiError::not_found("unknown_node", format!("no member has the id {node:?}"))
}

/// The membership table, or 503 `cluster_unavailable`.
pub async fn member_rows(
    cluster: &ClusterNode,
) -> Result<Vec<tradefloor_cluster::Member>, ApiError> {
    cluster.membership().members().await.map_err(cluster_error)
}

/// The shard table, or 503 `cluster_unavailable`.
async fn shard_rows(
    cluster: &ClusterNode,
) -> Result<Vec<tradefloor_cluster::Assignment>, ApiError> {
    cluster
        .allocation()
        .assignments()
        .await
        .map_err(cluster_error)
}

/// The cluster tables failed: 503 (the database is usually briefly unavailable), or 400 for
/// a request the tables refused.
fn cluster_error(error: tradefloor_cluster::Error) -> ApiError {
    match error {
        tradefloor_cluster::Error::InvalidRequest(reason) => ApiError::new(
            actix_web::http::StatusCode::BAD_REQUEST,
            "invalid_request",
            reason,
        ),
        other => ApiError::new(
            actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
            "cluster_unavailable",
            other.to_string(),
        ),
    }
}

/// 404 `unknown_node` unless `node` is a member.
pub fn known_node(state: &AppState, node: &str) -> Result<(), ApiError> {
    if node == state.identity.node_id {
        return Ok(());
    }
    Err(unknown_node(node))
}
