//! Retention for operators (admin): what the archive holds and the last run
//! (`GET /v1/archive`), and a run started now (`POST /v1/archive`), followed through the
//! same `GET` (`docs/retention.md`).

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use tradefloor_actors::trading::archiver::{ArchiveRun, recorded_before};

use crate::api::{self, ArchiveRequest};
use crate::http::auth::Principal;
use crate::http::convert;
use crate::http::error::ApiError;
use crate::http::state::AppState;

/// The longest `older_than_seconds` (100 years).
const OLDER_THAN_MAX_SECONDS: u64 = 3_153_600_000;

fn run_body(run: &ArchiveRun) -> api::ArchiveRunBody {
    let progress = &run.progress;
    api::ArchiveRunBody {
        recorded_before: run.recorded_before,
        started_at_unix_ms: run.started_at_unix_ms,
        files: progress.files,
        events: progress.events,
        bytes: progress.bytes,
        through_offset: progress.through_offset,
        last_offset: progress.last_offset,
        progress: if run.took_ms.is_some() || progress.last_offset == 0 {
            1.0
        } else {
            (progress.through_offset as f64 / progress.last_offset as f64).min(1.0)
        },
        took_ms: run.took_ms,
        error: run.error.clone(),
    }
}

async fn archive_body(state: &AppState) -> Result<api::ArchiveBody, ApiError> {
    state
        .call(|exchange| async move {
            let archiver = exchange.archiver();
            let totals = archiver.totals().await?;
            Ok(api::ArchiveBody {
                files: totals.files,
                events: totals.events,
                bytes: totals.bytes,
                horizon_seconds: archiver.horizon().map(|horizon| horizon.as_secs()),
                run: archiver.current().as_ref().map(run_body),
            })
        })
        .await
}

/// What the archive holds, and the run in progress or the last one (admin).
#[utoipa::path(get, path = "/v1/archive", tag = "retention",
    responses((status = 200, description = "The archive", body = api::ArchiveBody)))]
pub async fn archive(
    state: web::Data<AppState>,
    principal: Principal,
) -> Result<HttpResponse, ApiError> {
    principal.require_admin()?;
    Ok(HttpResponse::Ok().json(archive_body(&state).await?))
}

/// Starts an archive run (admin): the events recorded before the horizon that a snapshot
/// covers (never a stream's last) move to compressed files; every read still returns them.
/// Its progress shows in `GET /v1/archive`.
#[utoipa::path(post, path = "/v1/archive", tag = "retention",
    request_body = ArchiveRequest,
    responses((status = 202, description = "Started", body = api::ArchiveBody),
        (status = 400, description = "No horizon given or configured", body = api::ErrorBody),
        (status = 409, description = "A run is in progress", body = api::ErrorBody)))]
pub async fn start(
    state: web::Data<AppState>,
    principal: Principal,
    body: web::Json<serde_json::Value>,
) -> Result<HttpResponse, ApiError> {
    principal.require_admin()?;
    let request: ArchiveRequest = convert::object_body(body.into_inner(), "the body")?;
    if request
        .older_than_seconds
        .is_some_and(|seconds| seconds > OLDER_THAN_MAX_SECONDS)
    {
        return Err(ApiError::invalid_json(format!(
            "older_than_seconds is at most {OLDER_THAN_MAX_SECONDS}"
        )));
    }
    let started = state
        .call(move |exchange| async move {
            let archiver = exchange.archiver();
            let horizon = request
                .older_than_seconds
                .map(Duration::from_secs)
                .or_else(|| archiver.horizon());
            Ok(horizon.map(|horizon| archiver.start(recorded_before(horizon))))
        })
        .await?;
    match started {
        None => Err(ApiError::invalid_json(
            "give older_than_seconds: this node has no retention.horizon_seconds",
        )),
        Some(Err(running)) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "archive_running",
            format!(
                "an archive run started at {} ms is in progress (see GET /v1/archive)",
                running.started_at_unix_ms
            ),
        )),
        Some(Ok(_)) => Ok(HttpResponse::Accepted().json(archive_body(&state).await?)),
    }
}
