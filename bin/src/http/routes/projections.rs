//! The read models for operators (admin): their progress on this node
//! (`GET /v1/projections`) and a rebuild in place from offset 0
//! (`POST /v1/projections/{name}/rebuild`), followed through the same list.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use tradefloor_actors::hosting::projection::ProjectionStats;
use tradefloor_actors::trading::READ_MODELS;

use crate::api;
use crate::http::auth::Principal;
use crate::http::error::ApiError;
use crate::http::state::AppState;

/// A read model's stats as the API shows them.
fn body(stats: &ProjectionStats) -> api::ProjectionBody {
    let seen = stats.read_to;
    api::ProjectionBody {
        name: stats.name.clone(),
        offset: stats.offset,
        read_to: stats.read_to,
        lag: stats.lag,
        events: stats.events,
        batches: stats.batches,
        dead_letters: stats.dead_letters,
        fenced: stats.fenced,
        rebuild: stats.rebuild.as_ref().map(|rebuild| api::RebuildBody {
            target: rebuild.target,
            progress: if rebuild.took_ms.is_some() || rebuild.target == 0 {
                1.0
            } else {
                (seen as f64 / rebuild.target as f64).min(1.0)
            },
            started_at_unix_ms: rebuild.started_at_unix_ms,
            took_ms: rebuild.took_ms,
        }),
    }
}

/// The read models running on this node, with their progress (admin).
#[utoipa::path(get, path = "/v1/projections", tag = "projections",
    responses((status = 200, description = "The read models", body = api::ProjectionList)))]
pub async fn list(
    state: web::Data<AppState>,
    principal: Principal,
) -> Result<HttpResponse, ApiError> {
    principal.require_admin()?;
    let stats = state
        .call(|exchange| async move { Ok(exchange.read_models().await?) })
        .await?;
    Ok(HttpResponse::Ok().json(api::ProjectionList {
        projections: stats.iter().map(body).collect(),
    }))
}

/// Rebuilds a read model in place (admin): its tables, offset and dead letters are emptied
/// in one transaction and the log applied again from offset 0 while the node serves; its
/// progress shows in `GET /v1/projections`.
#[utoipa::path(post, path = "/v1/projections/{name}/rebuild", tag = "projections",
    params(("name" = String, Path, description = "e.g. trading.balances")),
    responses((status = 202, description = "Rebuilding", body = api::ProjectionBody),
        (status = 404, description = "No such read model", body = api::ErrorBody),
        (status = 409, description = "It runs on another node", body = api::ErrorBody)))]
pub async fn rebuild(
    state: web::Data<AppState>,
    principal: Principal,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    principal.require_admin()?;
    let name = name.into_inner();
    if !READ_MODELS.contains(&name.as_str()) {
        return Err(ApiError::not_found(
            "no_projection",
            format!("no read model {name:?} (one of {})", READ_MODELS.join(", ")),
        ));
    }
    let asked = name.clone();
    let stats = state
        .call(move |exchange| async move {
            let Some(_) = exchange.rebuild_read_model(&asked).await? else {
                return Ok(None);
            };
            let stats = exchange.read_models().await?;
            Ok(stats.into_iter().find(|stats| stats.name == asked))
        })
        .await?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::CONFLICT,
                "not_here",
                format!("{name} does not run on this node: ask the node that holds it"),
            )
        })?;
    Ok(HttpResponse::Accepted().json(body(&stats)))
}
