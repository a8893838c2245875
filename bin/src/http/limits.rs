//! The endpoint's outer layer: on a node without tokens refuses what only a browser tricked
//! by another site would send ([`loopback`](super::loopback)), sheds requests beyond the
//! in-flight bound with 429, answers
//! 503 `timeout` when a request outlives its deadline, and records each request's route,
//! status and latency. Health checks and metrics are never shed: an overloaded node is
//! alive, and a liveness probe shed with 429 would get it restarted just when it is busiest.

use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, ResponseError, web};

use tradefloor_actors::trading::audit::{AuditRecord, Outcome};

use super::auth::MatchedToken;
use super::error::ApiError;
use super::state::AppState;

/// Wraps every request: admission, deadline, metrics.
pub async fn guard(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(state) = request.app_data::<web::Data<AppState>>().cloned() else {
        return next
            .call(request)
            .await
            .map(|response| response.map_into_boxed_body());
    };
    let started = Instant::now();
    let method = method_label(request.method());
    let matched = state
        .tokens
        .matched(super::auth::presented_token(request.headers()));
    if state.tokens.is_open()
        && let Err(error) = super::loopback::check(&request)
    {
        record(method, "refused", error.status, started);
        audit(&state, matched, method, request.path(), error.status, false);
        return Ok(request.into_response(error.error_response()));
    }
    if let Err(error) = state.tokens.admit(matched, started) {
        metrics::counter!("tradefloor_http_rate_limited_total").increment(1);
        record(method, "rate_limited", error.status, started);
        audit(&state, matched, method, request.path(), error.status, true);
        return Ok(request.into_response(error.error_response()));
    }
    request.extensions_mut().insert(matched);
    let permit = state.in_flight.clone().try_acquire_owned();
    if permit.is_err() && !is_probe(request.path(), request.query_string()) {
        metrics::counter!("tradefloor_http_shed_total").increment(1);
        let error = ApiError::retry(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_requests",
            format!(
                "more than {} requests in flight",
                state.limits.requests_in_flight_max
            ),
            state.limits.retry_after_seconds,
        );
        record(method, "shed", error.status, started);
        return Ok(request.into_response(error.error_response()));
    }
    // Kept only for a command's audit row: a read's path is read off its answer if denied.
    let command_path = is_command(method).then(|| request.path().to_owned());
    let deadline = state.limits.request_deadline();
    match tokio::time::timeout(deadline, next.call(request)).await {
        Ok(Ok(response)) => {
            let route = response
                .request()
                .match_pattern()
                .unwrap_or_else(|| "unmatched".to_owned());
            record(method, &route, response.status(), started);
            let path = command_path.as_deref().unwrap_or(response.request().path());
            audit(&state, matched, method, path, response.status(), false);
            Ok(response.map_into_boxed_body())
        }
        Ok(Err(error)) => {
            let status = error.as_response_error().status_code();
            record(method, "error", status, started);
            if let Some(path) = &command_path {
                audit(&state, matched, method, path, status, false);
            }
            Err(error)
        }
        // The handler is dropped; a command it handed to the actors still completes, and
        // repeating it with the same id tells its outcome.
        Err(_) => {
            let error = ApiError::deadline(deadline);
            record(method, "timeout", error.status, started);
            if let Some(path) = &command_path {
                audit(&state, matched, method, path, error.status, false);
            }
            Err(error.into())
        }
    }
}

/// Whether a request with this method may change state (a command, always audited).
fn is_command(method: &str) -> bool {
    !matches!(method, "GET" | "HEAD" | "OPTIONS")
}

/// Writes the audit log's row of a request, if it is a command or was denied (401, 403, or
/// `rate_limited`: 429 from its token's limit).
fn audit(
    state: &AppState,
    matched: MatchedToken,
    method: &str,
    path: &str,
    status: StatusCode,
    rate_limited: bool,
) {
    let denied = rate_limited || matches!(status.as_u16(), 401 | 403);
    if !denied && !is_command(method) {
        return;
    }
    let outcome = if denied {
        Outcome::Denied
    } else if status.is_success() {
        Outcome::Done
    } else {
        Outcome::Failed
    };
    let principal = state.tokens.principal_name(matched);
    state.audit.record(AuditRecord::now(
        principal,
        method,
        path,
        status.as_u16(),
        outcome,
    ));
}

/// Routes that answer from memory at once and must answer under overload: the health checks
/// and this node's own metrics (not another node's: `?node=` asks the cluster).
fn is_probe(path: &str, query: &str) -> bool {
    match path {
        "/health/live" | "/health/ready" => true,
        "/metrics" => !query.split('&').any(|pair| pair.starts_with("node=")),
        _ => false,
    }
}

/// The method as a metrics label: one of the methods HTTP defines, or `other`, so that a
/// client inventing method names cannot create series without bound.
fn method_label(method: &Method) -> &'static str {
    [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::HEAD,
        Method::OPTIONS,
        Method::CONNECT,
        Method::TRACE,
    ]
    .iter()
    .find(|known| *known == method)
    .map_or("other", Method::as_str)
}

fn record(method: &'static str, route: &str, status: StatusCode, started: Instant) {
    let labels = [
        ("method", method.to_owned()),
        ("route", route.to_owned()),
        ("status", status.as_u16().to_string()),
    ];
    metrics::counter!("tradefloor_http_requests_total", &labels).increment(1);
    metrics::histogram!("tradefloor_http_request_duration_seconds", &labels[..2])
        .record(started.elapsed().as_secs_f64());
}
