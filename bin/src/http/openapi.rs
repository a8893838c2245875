//! The OpenAPI document (`GET /openapi.json`), derived from the handlers and the bodies in
//! [`crate::api`]. Every operation also lists the error answers every route can give, so a
//! schema-driven client or fuzzer can check each response against it.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::routes::{
    accounts, archive, cluster, dead_letters, events, markets, operations, orders, projections,
    quotes, risk, rules, strategies, streams,
};
use crate::api;

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(title = "Tradefloor", description = "An event-sourced trading platform on a \
        clustered actor system: the HTTP contract (v1)."),
    paths(
        markets::list_market, markets::market, markets::halt, markets::resume,
        markets::book, markets::trades, markets::candles, quotes::publish,
        accounts::deposit, accounts::withdraw, accounts::account, accounts::history,
        orders::place, orders::order, orders::cancel, orders::order_by_client_id,
        cluster::members, cluster::shards, cluster::rebalance, cluster::move_shard,
        cluster::leave,
        operations::actors, operations::audit, operations::live, operations::ready, operations::metrics,
        operations::openapi,
        streams::market, streams::account, streams::ws::upgrade,
        risk::limits, risk::set_limits, risk::positions, risk::risk,
        strategies::create, strategies::list, strategies::strategy, strategies::start,
        strategies::stop, events::events, events::subscription_offset,
        events::commit_subscription, dead_letters::list, dead_letters::letter,
        dead_letters::retry, dead_letters::delete, projections::list, projections::rebuild,
        events::replay_subscription, rules::rules, rules::replace, rules::alerts,
        archive::archive, archive::start,
    ),
    components(schemas(api::ErrorBody, api::ErrorDetail)),
    modifiers(&Conventions),
    security(("bearer" = [])),
)]
pub struct ApiDoc;

/// Bounds of query parameters that the handlers check but the query types do not carry:
/// `(path, parameter, minimum, maximum)`.
const QUERY_BOUNDS: [(&str, &str, u32, u32); 5] = [
    ("/v1/markets/{symbol}/book", "depth", 1, markets::DEPTH_MAX),
    (
        "/v1/markets/{symbol}/trades",
        "limit",
        1,
        markets::LIST_LIMIT_MAX,
    ),
    (
        "/v1/markets/{symbol}/candles",
        "limit",
        1,
        markets::LIST_LIMIT_MAX,
    ),
    ("/v1/actors", "depth", 0, operations::ACTOR_DEPTH_MAX),
    ("/v1/audit", "limit", 1, operations::AUDIT_LIMIT_MAX),
];

/// The candle intervals `GET /v1/markets/{symbol}/candles` takes.
pub const CANDLE_INTERVALS: [&str; 3] = ["1s", "1m", "1h"];

/// The document served at `/openapi.json`: [`ApiDoc`] with the bounds the handlers check.
pub fn document() -> serde_json::Value {
    let mut document = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    let parameters = |document: &mut serde_json::Value, path: &str| {
        document["paths"][path]["get"]["parameters"]
            .as_array_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    };
    for (path, name, minimum, maximum) in QUERY_BOUNDS {
        let mut list = parameters(&mut document, path);
        for parameter in list
            .iter_mut()
            .filter(|parameter| parameter["name"] == name)
        {
            let schema = &mut parameter["schema"];
            schema["minimum"] = minimum.into();
            schema["maximum"] = maximum.into();
        }
        document["paths"][path]["get"]["parameters"] = list.into();
    }
    let path = "/v1/markets/{symbol}/candles";
    let mut list = parameters(&mut document, path);
    for parameter in list
        .iter_mut()
        .filter(|parameter| parameter["name"] == "interval")
    {
        parameter["schema"]["enum"] = CANDLE_INTERVALS.into();
    }
    document["paths"][path]["get"]["parameters"] = list.into();
    document
}

/// The error answers any route may give, by status.
const ERRORS: [(&str, &str); 10] = [
    (
        "400",
        "Malformed request: invalid JSON, types, ids or values",
    ),
    ("401", "No valid bearer token"),
    ("403", "The token's role does not allow this"),
    (
        "404",
        "Unknown route, market, account, order, shard or node",
    ),
    ("405", "Method not allowed on this route"),
    ("409", "Conflicts with existing state (a reused id)"),
    ("413", "Body larger than the node's limit"),
    ("415", "Body is not application/json"),
    ("422", "A business rule refused it"),
    (
        "503",
        "Overloaded, circuit open, timed out or not ready; see Retry-After",
    ),
];

/// Adds the bearer scheme and the shared error answers to every operation.
struct Conventions;

impl Modify for Conventions {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        let error = |description: &str| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(description)
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                                "ErrorBody",
                            ))))
                            .build(),
                    )
                    .build(),
            )
        };
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.delete,
                &mut item.put,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                for (status, description) in ERRORS {
                    operation
                        .responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| error(description));
                }
                operation
                    .responses
                    .responses
                    .entry("429".to_owned())
                    .or_insert_with(|| error("Too many requests in flight; see Retry-After"));
            }
        }
    }
}
