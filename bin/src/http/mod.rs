//! The HTTP endpoint (DESIGN §5) on actix-web: routes, the JSON error contract, bearer-token
//! auth, admission control, deadlines and metrics.
//!
//! [`serve`] runs the server on a bound listener until [`ServerHandle::stop`] is called,
//! which stops accepting, lets requests in flight finish, then returns: tests and the node
//! drive shutdown the same way.

pub mod auth;
pub mod convert;
pub mod error;
pub mod limits;
mod loopback;
pub mod openapi;
mod rate;
pub mod routes;
pub mod state;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::{StatusCode, header};
use actix_web::middleware::from_fn;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, Resource, ResponseError, web};

use error::ApiError;
use routes::{
    accounts, archive, cluster, dead_letters, events, markets, operations, orders, projections,
    quotes, risk, rules, strategies, streams,
};
pub use state::{AppState, NodeIdentity};

/// Starts serving `listener`, over TLS when `tls` is set; the returned [`Server`] runs until
/// its handle stops it.
pub fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    state: web::Data<AppState>,
) -> std::io::Result<Server> {
    let limits = state.limits.clone();
    let workers = limits
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .configure(|config| configure(config, &state.limits))
            .wrap(from_fn(limits::guard))
    })
    .workers(workers)
    .max_connections(limits.connections_per_worker_max)
    .keep_alive(Duration::from_secs(limits.keep_alive_seconds))
    .client_request_timeout(Duration::from_millis(limits.client_request_timeout_ms))
    .client_disconnect_timeout(Duration::from_secs(1))
    .shutdown_timeout(limits.shutdown_timeout_seconds)
    .disable_signals();
    let server = match tls {
        Some(tls) => server.listen_rustls_0_23(listener, Arc::unwrap_or_clone(tls))?,
        None => server.listen(listener)?,
    };
    Ok(server.run())
}

/// Stops `server` gracefully: no new connections, requests in flight finish.
pub async fn stop(handle: ServerHandle) {
    handle.stop(true).await;
}

/// Registers every route and the extractors' error answers.
pub fn configure(config: &mut web::ServiceConfig, limits: &crate::config::HttpLimits) {
    config
        .app_data(
            web::JsonConfig::default()
                .limit(limits.body_bytes_max)
                .error_handler(json_error),
        )
        .app_data(web::PayloadConfig::default().limit(limits.body_bytes_max))
        .app_data(web::QueryConfig::default().error_handler(query_error))
        .app_data(web::PathConfig::default().error_handler(path_error))
        // The hottest routes first: actix tries resources in order, each pattern with a
        // parameter by regular expression, and the orders' routes are most of the traffic.
        .service(resource("/v1/orders", "POST").route(web::post().to(orders::place)))
        .service(
            resource("/v1/orders/{id}", "GET, DELETE")
                .route(web::get().to(orders::order))
                .route(web::delete().to(orders::cancel)),
        )
        .service(resource("/v1/markets", "POST").route(web::post().to(markets::list_market)))
        .service(resource("/v1/markets/{symbol}", "GET").route(web::get().to(markets::market)))
        .service(resource("/v1/markets/{symbol}/halt", "POST").route(web::post().to(markets::halt)))
        .service(
            resource("/v1/markets/{symbol}/resume", "POST").route(web::post().to(markets::resume)),
        )
        .service(resource("/v1/markets/{symbol}/book", "GET").route(web::get().to(markets::book)))
        .service(
            resource("/v1/markets/{symbol}/trades", "GET").route(web::get().to(markets::trades)),
        )
        .service(
            resource("/v1/markets/{symbol}/candles", "GET").route(web::get().to(markets::candles)),
        )
        .service(
            resource("/v1/markets/{symbol}/quotes", "POST").route(web::post().to(quotes::publish)),
        )
        .service(
            resource("/v1/markets/{symbol}/stream", "GET").route(web::get().to(streams::market)),
        )
        .service(resource("/v1/accounts/{id}/stream", "GET").route(web::get().to(streams::account)))
        .service(
            resource("/v1/accounts/{id}/limits", "GET, PUT")
                .route(web::get().to(risk::limits))
                .route(web::put().to(risk::set_limits)),
        )
        .service(
            resource("/v1/accounts/{id}/positions", "GET").route(web::get().to(risk::positions)),
        )
        .service(resource("/v1/accounts/{id}/risk", "GET").route(web::get().to(risk::risk)))
        .service(resource("/v1/ws", "GET").route(web::get().to(streams::ws::upgrade)))
        .service(
            resource("/v1/accounts/{id}/deposits", "POST").route(web::post().to(accounts::deposit)),
        )
        .service(
            resource("/v1/accounts/{id}/withdrawals", "POST")
                .route(web::post().to(accounts::withdraw)),
        )
        .service(resource("/v1/accounts/{id}", "GET").route(web::get().to(accounts::account)))
        .service(
            resource("/v1/accounts/{id}/history", "GET").route(web::get().to(accounts::history)),
        )
        .service(
            resource("/v1/accounts/{id}/orders/{client_order_id}", "GET")
                .route(web::get().to(orders::order_by_client_id)),
        )
        .service(resource("/v1/cluster/members", "GET").route(web::get().to(cluster::members)))
        .service(resource("/v1/cluster/shards", "GET").route(web::get().to(cluster::shards)))
        .service(
            resource("/v1/cluster/rebalance", "POST").route(web::post().to(cluster::rebalance)),
        )
        .service(
            resource("/v1/cluster/shards/{shard}/move", "POST")
                .route(web::post().to(cluster::move_shard)),
        )
        .service(
            resource("/v1/cluster/members/{node}/leave", "POST")
                .route(web::post().to(cluster::leave)),
        )
        .service(
            resource("/v1/strategies", "GET, POST")
                .route(web::get().to(strategies::list))
                .route(web::post().to(strategies::create)),
        )
        .service(resource("/v1/strategies/{id}", "GET").route(web::get().to(strategies::strategy)))
        .service(
            resource("/v1/strategies/{id}/start", "POST").route(web::post().to(strategies::start)),
        )
        .service(
            resource("/v1/strategies/{id}/stop", "POST").route(web::post().to(strategies::stop)),
        )
        .service(resource("/v1/events", "GET").route(web::get().to(events::events)))
        .service(
            resource("/v1/subscriptions/{name}/offset", "GET, PUT")
                .route(web::get().to(events::subscription_offset))
                .route(web::put().to(events::commit_subscription)),
        )
        .service(resource("/v1/dead-letters", "GET").route(web::get().to(dead_letters::list)))
        .service(
            resource("/v1/dead-letters/{id}", "GET, DELETE")
                .route(web::get().to(dead_letters::letter))
                .route(web::delete().to(dead_letters::delete)),
        )
        .service(
            resource("/v1/dead-letters/{id}/retry", "POST")
                .route(web::post().to(dead_letters::retry)),
        )
        .service(
            resource("/v1/rules", "GET, PUT")
                .route(web::get().to(rules::rules))
                .route(web::put().to(rules::replace)),
        )
        .service(resource("/v1/alerts", "GET").route(web::get().to(rules::alerts)))
        .service(
            resource("/v1/archive", "GET, POST")
                .route(web::get().to(archive::archive))
                .route(web::post().to(archive::start)),
        )
        .service(resource("/v1/projections", "GET").route(web::get().to(projections::list)))
        .service(
            resource("/v1/projections/{name}/rebuild", "POST")
                .route(web::post().to(projections::rebuild)),
        )
        .service(
            resource("/v1/subscriptions/{name}/replay", "POST")
                .route(web::post().to(events::replay_subscription)),
        )
        .service(resource("/v1/actors", "GET").route(web::get().to(operations::actors)))
        .service(resource("/v1/audit", "GET").route(web::get().to(operations::audit)))
        .service(resource("/health/live", "GET").route(web::get().to(operations::live)))
        .service(resource("/health/ready", "GET").route(web::get().to(operations::ready)))
        .service(resource("/metrics", "GET").route(web::get().to(operations::metrics)))
        .service(resource("/openapi.json", "GET").route(web::get().to(operations::openapi)))
        .default_service(web::to(not_found));
}

/// A resource serving `allow` (e.g. `"GET, DELETE"`) whose other methods answer 405 with the
/// JSON error body and the `Allow` header (RFC 9110 §15.5.6).
fn resource(path: &str, allow: &'static str) -> Resource {
    web::resource(path).default_service(web::to(move |request| method_not_allowed(request, allow)))
}

async fn not_found(request: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::not_found(
        "not_found",
        format!("no route {}", request.path()),
    ))
}

async fn method_not_allowed(request: HttpRequest, allow: &'static str) -> HttpResponse {
    let error = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} is not allowed on {}", request.method(), request.path()),
    );
    let mut response = error.error_response();
    response
        .headers_mut()
        .insert(header::ALLOW, header::HeaderValue::from_static(allow));
    response
}

fn json_error(error: JsonPayloadError, _: &HttpRequest) -> actix_web::Error {
    let answer = match &error {
        JsonPayloadError::OverflowKnownLength { .. } | JsonPayloadError::Overflow { .. } => {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                error.to_string(),
            )
        }
        JsonPayloadError::ContentType => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the body must be application/json",
        ),
        JsonPayloadError::Deserialize(reason) => ApiError::invalid_json(reason.to_string()),
        _ => ApiError::invalid_json(error.to_string()),
    };
    answer.into()
}

fn query_error(error: QueryPayloadError, _: &HttpRequest) -> actix_web::Error {
    ApiError::invalid_query(error.to_string()).into()
}

fn path_error(error: PathError, _: &HttpRequest) -> actix_web::Error {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_path", error.to_string()).into()
}
