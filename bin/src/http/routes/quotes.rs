//! Market data in: a feed (or an admin) publishes external quotes of a reference symbol,
//! journaled as one event per batch on the symbol's quotes stream, where strategies read them
//! from the log like the node's own trades.

use actix_web::{HttpResponse, web};
use tradefloor_domain::quote::{QUOTES_PER_BATCH_MAX, Quote};
use tradefloor_domain::{Price, Quantity, Timestamp};

use crate::api::{self, QuotesRequest};
use crate::http::auth::Principal;
use crate::http::convert;
use crate::http::error::ApiError;
use crate::http::state::AppState;

/// Publish a batch of quotes (feed or admin): journaled in their order, answered with the
/// batch's log offset.
#[utoipa::path(post, path = "/v1/markets/{symbol}/quotes", tag = "markets",
    params(("symbol" = String, Path, description = "The reference symbol, e.g. BTC-USD")),
    request_body = QuotesRequest,
    responses((status = 201, description = "Journaled", body = api::QuotesAccepted)))]
pub async fn publish(
    state: web::Data<AppState>,
    principal: Principal,
    symbol: web::Path<String>,
    body: web::Json<serde_json::Value>,
) -> Result<HttpResponse, ApiError> {
    principal.require_feed()?;
    let symbol = convert::symbol(&symbol)?;
    let request = quotes_request(body.into_inner())?;
    let now = state.exchange()?.now();
    let quotes: Vec<Quote> = request
        .quotes
        .iter()
        .map(|quote| Quote {
            at: quote.at.map_or(now, Timestamp),
            price: Price(quote.price),
            quantity: Quantity(quote.quantity.unwrap_or(0)),
        })
        .collect();
    let accepted = quotes.len() as u64;
    let offset = state
        .call(move |exchange| async move { Ok(exchange.publish_quotes(symbol, quotes).await?) })
        .await?;
    tracing::debug!(%symbol, accepted, offset, "quotes published");
    Ok(HttpResponse::Created().json(api::QuotesAccepted {
        symbol: symbol.to_string(),
        accepted,
        offset,
    }))
}

/// The body as a batch: an object whose quotes are objects (serde would otherwise take arrays
/// for both), of 1 to [`QUOTES_PER_BATCH_MAX`] quotes.
fn quotes_request(body: serde_json::Value) -> Result<QuotesRequest, ApiError> {
    let objects = body.is_object()
        && body["quotes"]
            .as_array()
            .is_none_or(|quotes| quotes.iter().all(serde_json::Value::is_object));
    if !objects {
        return Err(ApiError::invalid_json(
            "the body is an object {\"quotes\": [{\"at\", \"price\", \"quantity\"}, …]}",
        ));
    }
    let request: QuotesRequest =
        serde_json::from_value(body).map_err(|error| ApiError::invalid_json(error.to_string()))?;
    if request.quotes.is_empty() || request.quotes.len() > QUOTES_PER_BATCH_MAX {
        return Err(ApiError::domain(&tradefloor_domain::Error::InvalidQuotes {
            reason: format!("a batch holds 1 to {QUOTES_PER_BATCH_MAX} quotes"),
        }));
    }
    Ok(request)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn only_an_object_of_object_quotes_is_a_batch() {
        let valid = json!({"quotes": [{"at": 1, "price": 100, "quantity": 2}, {"price": 101}]});
        let request = quotes_request(valid).expect("a batch");
        assert_eq!(request.quotes[1].at, None);
        assert_eq!(request.quotes[1].quantity, None);
        for (bad, code) in [
            (json!([[{"price": 1}]]), "invalid_json"),
            (json!({"quotes": [[1, 100, 0]]}), "invalid_json"),
            (json!({"quotes": [{"price": 1, "size": 2}]}), "invalid_json"),
            (json!({"quotes": [{"price": -1}]}), "invalid_json"),
            (json!({"quotes": []}), "invalid_quotes"),
            (json!({}), "invalid_json"),
        ] {
            let error = quotes_request(bad.clone()).expect_err("refused");
            assert_eq!(error.code, code, "{bad}");
        }
    }
}
