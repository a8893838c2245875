//! Operations: liveness, readiness, metrics, the actor tree, the OpenAPI document.

use actix_web::http::StatusCode;
use actix_web::http::header::ContentType;
use actix_web::{HttpRequest, HttpResponse, web};

use tradefloor_cluster::runtime::ClusterNode;

use tradefloor_actors::trading::audit::{AuditLog, Outcome};

use crate::api::{self, ActorsQuery, AuditQuery, MetricsQuery};
use crate::config::TOKEN_NAME_CHARS_MAX;
use crate::http::auth::Principal;
use crate::http::convert;
use crate::http::error::ApiError;
use crate::http::openapi;
use crate::http::routes::cluster::{known_node, member_rows, unknown_node};
use crate::http::routes::markets::bounded;
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

/// Prometheus text exposition: this node's (open to anyone, never shed), another member's
/// (`?node=n2`) or every member's (`?node=all`, each sample labelled with its `node`); those
/// two ask other nodes, so they are for admins and shed like any route.
#[utoipa::path(get, path = "/metrics", tag = "operations", security(), params(MetricsQuery),
    responses((status = 200, description = "Prometheus text format", body = String,
        content_type = "text/plain")))]
pub async fn metrics(
    request: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<MetricsQuery>,
) -> Result<HttpResponse, ApiError> {
    let me = state.identity.node_id.clone();
    if query.node.as_deref().is_some_and(|node| node != me) {
        Principal::of(&request)?.require_admin()?;
    }
    let text = match query.node.as_deref() {
        None => local_metrics(&state),
        Some(node) if node == me => local_metrics(&state),
        Some(ALL_NODES) => {
            let mut parts = vec![label_samples(&local_metrics(&state), &me)];
            if let Some(cluster) = state.cluster() {
                for member in live_members(&cluster).await? {
                    if member != me {
                        match remote_metrics(&cluster, &member).await {
                            Ok(text) => parts.push(label_samples(&text, &member)),
                            Err(error) => {
                                tracing::warn!(%member, %error, "metrics of a member not read")
                            }
                        }
                    }
                }
            }
            merge_expositions(&parts)
        }
        Some(node) => {
            let Some(cluster) = state.cluster() else {
                return Err(unknown_node(node));
            };
            if !live_members(&cluster)
                .await?
                .iter()
                .any(|member| member == node)
            {
                return Err(unknown_node(node));
            }
            remote_metrics(&cluster, node).await.map_err(|error| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "node_unreachable",
                    error.to_string(),
                )
            })?
        }
    };
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(text))
}

/// `?node=all`.
const ALL_NODES: &str = "all";

fn local_metrics(state: &AppState) -> String {
    state
        .metrics
        .as_ref()
        .map(|handle| handle.render())
        .unwrap_or_default()
}

/// The members not down, by node id.
async fn live_members(cluster: &ClusterNode) -> Result<Vec<String>, ApiError> {
    let members = member_rows(cluster).await?;
    Ok(members
        .into_iter()
        .filter(|member| member.status != tradefloor_cluster::Status::Down)
        .map(|member| member.node.node_id)
        .collect())
}

async fn remote_metrics(
    cluster: &ClusterNode,
    node: &str,
) -> Result<String, tradefloor_actors::Error> {
    cluster
        .remoting()
        .call::<String>(
            node,
            NODE_SERVICE,
            OP_METRICS,
            node,
            &(),
            REMOTE_TREE_DEADLINE,
        )
        .await
}

/// Adds `node="{node}"` to every sample of a Prometheus text exposition.
pub fn label_samples(text: &str, node: &str) -> String {
    let mut labelled = String::with_capacity(text.len() + text.len() / 4);
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            labelled.push_str(line);
        } else {
            let brace = line.find('{');
            let space = line.find(' ').unwrap_or(line.len());
            match brace.filter(|brace| *brace < space) {
                Some(brace) if line[brace + 1..].starts_with('}') => {
                    labelled.push_str(&format!(
                        "{}{{node=\"{node}\"{}",
                        &line[..brace],
                        &line[brace + 1..]
                    ));
                }
                Some(brace) => {
                    labelled.push_str(&format!(
                        "{}{{node=\"{node}\",{}",
                        &line[..brace],
                        &line[brace + 1..]
                    ));
                }
                None => {
                    labelled.push_str(&format!(
                        "{}{{node=\"{node}\"}}{}",
                        &line[..space],
                        &line[space..]
                    ));
                }
            }
        }
        labelled.push('\n');
    }
    labelled
}

/// Several nodes' expositions as one: each metric family's `# HELP` and `# TYPE` once, its
/// samples from every node together.
pub fn merge_expositions(parts: &[String]) -> String {
    let mut families: Vec<(String, Vec<String>, Vec<String>)> = Vec::new();
    for part in parts {
        let mut current: Option<usize> = None;
        for line in part.lines().filter(|line| !line.trim().is_empty()) {
            let family = if let Some(rest) = line
                .strip_prefix("# HELP ")
                .or_else(|| line.strip_prefix("# TYPE "))
            {
                rest.split(' ').next().unwrap_or_default().to_owned()
            } else if line.starts_with('#') {
                continue;
            } else {
                let end = line.find(['{', ' ']).unwrap_or(line.len());
                let name = &line[..end];
                // Histogram and summary samples belong to their base family.
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|suffix| name.strip_suffix(suffix))
                    .filter(|base| current.is_some_and(|index| families[index].0 == *base));
                base.unwrap_or(name).to_owned()
            };
            let index = match families.iter().position(|(name, ..)| *name == family) {
                Some(index) => index,
                None => {
                    families.push((family, Vec::new(), Vec::new()));
                    families.len() - 1
                }
            };
            current = Some(index);
            let (_, header, samples) = &mut families[index];
            if line.starts_with('#') {
                if !header.iter().any(|seen| seen == line) {
                    header.push(line.to_owned());
                }
            } else {
                samples.push(line.to_owned());
            }
        }
    }
    let mut merged = String::new();
    for (_, header, samples) in families {
        for line in header.iter().chain(&samples) {
            merged.push_str(line);
            merged.push('\n');
        }
    }
    merged
}

/// The OpenAPI 3.1 document of every route and body.
#[utoipa::path(get, path = "/openapi.json", tag = "operations", security(),
    responses((status = 200, description = "This document", content_type = "application/json")))]
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(ContentType::json())
        .body(openapi::document().to_string())
}

/// Most audit rows one request returns.
pub const AUDIT_LIMIT_MAX: u32 = 1_000;

/// The audit log of the whole cluster, newest first: who sent each command, and who was
/// denied (admins only).
#[utoipa::path(get, path = "/v1/audit", tag = "operations", params(AuditQuery),
    responses((status = 200, description = "The newest rows", body = api::AuditLog)))]
pub async fn audit(
    state: web::Data<AppState>,
    principal: Principal,
    query: web::Query<AuditQuery>,
) -> Result<HttpResponse, ApiError> {
    principal.require_admin()?;
    let limit = bounded(query.limit, 100, AUDIT_LIMIT_MAX, "limit")?;
    let caller = query.into_inner().principal;
    if caller
        .as_ref()
        .is_some_and(|caller| caller.chars().count() > TOKEN_NAME_CHARS_MAX)
    {
        return Err(ApiError::invalid_query(format!(
            "principal is at most {TOKEN_NAME_CHARS_MAX} characters"
        )));
    }
    let rows = state
        .call(move |exchange| async move {
            Ok(AuditLog::recent(exchange.journal(), caller.as_deref(), limit).await?)
        })
        .await?;
    let entries = rows
        .into_iter()
        .map(|row| api::AuditEntry {
            recorded_at: row.recorded_at,
            principal: row.principal,
            method: row.method,
            path: row.path,
            status: row.status,
            outcome: match row.outcome {
                Outcome::Done => api::AuditOutcome::Done,
                Outcome::Denied => api::AuditOutcome::Denied,
                Outcome::Failed => api::AuditOutcome::Failed,
            },
        })
        .collect();
    Ok(HttpResponse::Ok().json(api::AuditLog { entries }))
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
    let members = member_rows(&cluster).await?;
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
        // The tree travels as JSON text (see `serve_node_calls`).
        let answer = cluster
            .remoting()
            .call::<String>(
                &node,
                NODE_SERVICE,
                OP_ACTORS,
                &node,
                &depth,
                REMOTE_TREE_DEADLINE,
            )
            .await
            .map_err(|error| error.to_string())
            .and_then(|tree| {
                serde_json::from_str::<api::ActorNode>(&tree).map_err(|error| error.to_string())
            });
        nodes.push(answer.unwrap_or_else(|reason| unreachable_node(&node, &reason)));
    }
    Ok(HttpResponse::Ok().json(cluster_root(nodes, depth)))
}

/// The remoting target of a node's own services (its actor tree).
pub const NODE_SERVICE: &str = "node";
/// The operation answering a node's actor tree (its argument: the depth below the root).
pub const OP_ACTORS: &str = "actors";
/// The operation answering a node's metrics (Prometheus text).
pub const OP_METRICS: &str = "metrics";
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_labelled_with_their_node() {
        let text =
            "# HELP a_total A.\n# TYPE a_total counter\na_total 3\nb{kind=\"x\"} 1.5\nc{} 2\n";
        assert_eq!(
            label_samples(text, "n2"),
            "# HELP a_total A.\n# TYPE a_total counter\na_total{node=\"n2\"} 3\n\
             b{node=\"n2\",kind=\"x\"} 1.5\nc{node=\"n2\"} 2\n"
        );
    }

    #[test]
    fn merged_expositions_keep_one_header_per_family_and_every_sample() {
        let one = label_samples(
            "# TYPE up gauge\nup 1\n# TYPE lat histogram\nlat_bucket{le=\"1\"} 2\nlat_sum 3\nlat_count 2\n",
            "n1",
        );
        let two = label_samples("# TYPE up gauge\nup 0\n", "n2");
        let merged = merge_expositions(&[one, two]);
        assert_eq!(
            merged,
            "# TYPE up gauge\nup{node=\"n1\"} 1\nup{node=\"n2\"} 0\n# TYPE lat histogram\n\
             lat_bucket{node=\"n1\",le=\"1\"} 2\nlat_sum{node=\"n1\"} 3\nlat_count{node=\"n1\"} 2\n"
        );
    }
}
