//! Operations: liveness, readiness, metrics, the actor tree, the OpenAPI document.

use actix_web::http::StatusCode;
use actix_web::http::header::ContentType;
use actix_web::{HttpResponse, web};

use crate::api::{self, ActorsQuery};
use crate::http::auth::Principal;
use crate::http::convert;
use crate::http::error::ApiError;
use crate::http::openapi;
use crate::http::routes::cluster::known_node;
use crate::http::state::AppState;

/// The process is up and answering.
#[utoipa::path(get, path = "/health/live", tag = "operations", security(),
    responses((status = 200, description = "Alive", body = api::Health)))]
pub async fn live(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(api::Health {
        status: "live".to_owned(),
        node_id: state.identity.node_id.clone(),
    })
}

/// The node has recovered its state and takes commands (503 while recovering or stopping).
#[utoipa::path(get, path = "/health/ready", tag = "operations", security(),
    responses((status = 200, description = "Ready", body = api::Health)))]
pub async fn ready(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state.exchange()?;
    Ok(HttpResponse::Ok().json(api::Health {
        status: "ready".to_owned(),
        node_id: state.identity.node_id.clone(),
    }))
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "operations", security(),
    responses((status = 200, description = "Prometheus text format", body = String,
        content_type = "text/plain")))]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let text = state
        .metrics
        .as_ref()
        .map(|handle| handle.render())
        .unwrap_or_default();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(text)
}

/// The OpenAPI 3.1 document of every route and body.
#[utoipa::path(get, path = "/openapi.json", tag = "operations", security(),
    responses((status = 200, description = "This document", content_type = "application/json")))]
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(ContentType::json())
        .body(openapi::document().to_string())
}

/// Deepest actor tree one request may ask for (the tree is far shallower).
pub const ACTOR_DEPTH_MAX: u32 = 64;

/// The actor tree of every node (or of `node`), `depth` levels below the cluster's root.
#[utoipa::path(get, path = "/v1/actors", tag = "operations", params(ActorsQuery),
    responses((status = 200, description = "The tree", body = api::ActorNode)))]
pub async fn actors(
    state: web::Data<AppState>,
    principal: Principal,
    query: web::Query<ActorsQuery>,
) -> Result<HttpResponse, ApiError> {
    principal.require_admin()?;
    if query.depth.is_some_and(|depth| depth > ACTOR_DEPTH_MAX) {
        return Err(ApiError::invalid_query(format!(
            "depth must be 0 to {ACTOR_DEPTH_MAX}"
        )));
    }
    let depth = query.depth.map(|depth| depth as usize);
    let Some(cluster) = state.cluster() else {
        if let Some(node) = &query.node {
            known_node(&state, node)?;
        }
        return Ok(HttpResponse::Ok().json(cluster_root(vec![node_tree(&state, depth)], depth)));
    };
    let members = cluster.membership().members().await.map_err(|error| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "cluster_unavailable",
            error.to_string(),
        )
    })?;
    let wanted: Vec<String> = match &query.node {
        Some(node) => {
            if !members.iter().any(|member| member.node.node_id == *node) {
                return Err(ApiError::not_found(
                    "unknown_node",
                    format!("no member has the id {node:?}"),
                ));
            }
            vec![node.clone()]
        }
        None => members
            .iter()
            .filter(|member| member.status != tradefloor_cluster::Status::Down)
            .map(|member| member.node.node_id.clone())
            .collect(),
    };
    let mut nodes = Vec::with_capacity(wanted.len());
    for node in wanted {
        if node == state.identity.node_id {
            nodes.push(node_tree(&state, depth));
            continue;
        }
        let answer = cluster
            .remoting()
            .call::<api::ActorNode>(
                &node,
                NODE_SERVICE,
                OP_ACTORS,
                &node,
                &depth,
                REMOTE_TREE_DEADLINE,
            )
            .await;
        nodes.push(answer.unwrap_or_else(|error| unreachable_node(&node, &error.to_string())));
    }
    Ok(HttpResponse::Ok().json(cluster_root(nodes, depth)))
}

/// The remoting target of a node's own services (its actor tree).
pub const NODE_SERVICE: &str = "node";
/// The operation answering a node's actor tree (its argument: the depth below the root).
pub const OP_ACTORS: &str = "actors";
/// How long the tree waits for another node's part.
const REMOTE_TREE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(3);

/// A member whose tree did not come: shown, with why.
fn unreachable_node(node: &str, reason: &str) -> api::ActorNode {
    tracing::warn!(%node, %reason, "actor tree of a member not read");
    api::ActorNode {
        path: format!("/{node}"),
        kind: Some("node".to_owned()),
        status: Some("unreachable".to_owned()),
        restarts: None,
        mailbox: None,
        breaker: None,
        entities: None,
        descendants_hidden: 0,
        children: Vec::new(),
    }
}

/// The cluster's root (`/`) over the nodes' trees (`depth` counts from the root).
fn cluster_root(nodes: Vec<api::ActorNode>, depth: Option<usize>) -> api::ActorNode {
    let (children, descendants_hidden) = match depth {
        Some(0) => {
            let hidden = nodes.iter().map(|node| node.descendants_hidden + 1).sum();
            (Vec::new(), hidden)
        }
        _ => (nodes, 0),
    };
    api::ActorNode {
        path: "/".to_owned(),
        kind: Some("cluster".to_owned()),
        status: None,
        restarts: None,
        mailbox: None,
        breaker: None,
        entities: None,
        descendants_hidden,
        children,
    }
}

/// This node (`/{node_id}`) and its actors below it, `depth` counting from the cluster's
/// root (so 0 and 1 show the node alone).
pub fn node_tree(state: &AppState, depth: Option<usize>) -> api::ActorNode {
    let node_id = &state.identity.node_id;
    let prefix = format!("/{node_id}");
    let mut node = match depth {
        Some(0) => None,
        _ => state
            .registry
            .snapshot("/", depth.map(|depth| depth - 1))
            .map(|tree| convert::actor_tree(&tree)),
    }
    .unwrap_or_else(|| api::ActorNode {
        path: "/".to_owned(),
        kind: None,
        status: None,
        restarts: None,
        mailbox: None,
        breaker: None,
        entities: None,
        descendants_hidden: 0,
        children: Vec::new(),
    });
    prefix_paths(&mut node, &prefix);
    node.path = prefix;
    node.kind = Some("node".to_owned());
    node.status = Some(
        if state.is_ready() {
            "running"
        } else {
            "starting"
        }
        .to_owned(),
    );
    if depth == Some(0) {
        node.descendants_hidden = state.registry.len() as u64;
        node.children.clear();
    }
    node
}

fn prefix_paths(node: &mut api::ActorNode, prefix: &str) {
    for child in &mut node.children {
        child.path = format!("{prefix}{}", child.path);
        prefix_paths(child, prefix);
    }
}
