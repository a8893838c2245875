//! The log for consumers outside the node: `GET /v1/events` (admin), pages of events after an
//! offset, filtered, with long polling. At-most-once unless the consumer keeps the offset it
//! processed: it resumes with `after` = the last `next_after` it handled.

use std::time::Duration;

use actix_web::{HttpResponse, web};
use tradefloor_actors::trading::events::{LOG_WAIT_MAX, LogQuery};

use crate::api::{self, EventsQuery};
use crate::http::auth::Principal;
use crate::http::error::ApiError;
use crate::http::state::AppState;

/// Entity kinds a filter may name.
const KINDS: [&str; 5] = ["account", "order_book", "order_saga", "quotes", "strategy"];
/// Most names or kinds one filter lists.
const FILTER_ITEMS_MAX: usize = 32;
/// The longest stream prefix a filter takes.
const STREAM_PREFIX_BYTES_MAX: usize = 128;
/// The largest offset a client may name (JSON numbers are exact up to 2^53).
const OFFSET_MAX: u64 = (1 << 53) - 1;

/// Events of the log after an offset (admin).
#[utoipa::path(get, path = "/v1/events", tag = "events",
    params(EventsQuery),
    responses((status = 200, description = "A page of the log", body = api::EventsPage)))]
pub async fn events(
    state: web::Data<AppState>,
    principal: Principal,
    query: web::Query<EventsQuery>,
) -> Result<HttpResponse, ApiError> {
    principal.require_admin()?;
    let query = log_query(query.into_inner())?;
    let page = state
        .call(move |exchange| async move { Ok(exchange.log_page(&query).await?) })
        .await?;
    Ok(HttpResponse::Ok().json(api::EventsPage {
        events: page.events,
        next_after: page.next_after,
    }))
}

/// The query, checked: a bad one is a 400 naming the parameter.
fn log_query(query: EventsQuery) -> Result<LogQuery, ApiError> {
    let after = query.after.unwrap_or(0);
    if after > OFFSET_MAX {
        return Err(ApiError::invalid_query(format!(
            "after must be 0 to {OFFSET_MAX}"
        )));
    }
    let limit = super::markets::bounded(query.limit, 100, 1_000, "limit")?;
    let wait = Duration::from_millis(u64::from(query.wait_ms.unwrap_or(0)));
    if wait > LOG_WAIT_MAX {
        return Err(ApiError::invalid_query(format!(
            "wait_ms must be 0 to {}",
            LOG_WAIT_MAX.as_millis()
        )));
    }
    let kinds = list(query.kinds.as_deref(), "kinds")?;
    if let Some(kind) = kinds.iter().find(|kind| !KINDS.contains(&kind.as_str())) {
        return Err(ApiError::invalid_query(format!(
            "kinds: no kind {kind:?} (one of {})",
            KINDS.join(", ")
        )));
    }
    let names = list(query.names.as_deref(), "names")?;
    if let Some(stream) = &query.stream
        && (stream.is_empty() || stream.len() > STREAM_PREFIX_BYTES_MAX)
    {
        return Err(ApiError::invalid_query(format!(
            "stream must be 1 to {STREAM_PREFIX_BYTES_MAX} bytes"
        )));
    }
    let symbol = query
        .symbol
        .as_deref()
        .map(|symbol| crate::http::convert::symbol(symbol).map(|symbol| symbol.to_string()))
        .transpose()
        .map_err(|error| ApiError::domain(&error))?;
    Ok(LogQuery {
        after,
        limit: limit as usize,
        kinds,
        names,
        stream_prefix: query.stream,
        symbol,
        wait,
    })
}

/// A comma-separated list: its items, none empty, at most [`FILTER_ITEMS_MAX`].
fn list(text: Option<&str>, name: &str) -> Result<Vec<String>, ApiError> {
    let Some(text) = text else {
        return Ok(Vec::new());
    };
    let items: Vec<String> = text.split(',').map(str::to_owned).collect();
    if items.len() > FILTER_ITEMS_MAX || items.iter().any(|item| item.is_empty() || item.len() > 64)
    {
        return Err(ApiError::invalid_query(format!(
            "{name}: 1 to {FILTER_ITEMS_MAX} comma-separated items of 1 to 64 bytes"
        )));
    }
    Ok(items)
}
