//! Dead letters (admin): events the log's consumers parked because they could not apply them
//! (`GET /v1/dead-letters`, one by id), asked to be applied again after a fix
//! (`POST …/{id}/retry`) or given up (`DELETE …/{id}`); and the actor messages that could
//! not be delivered, counted and the latest kept.

use std::future::Future;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use tradefloor_actors::hosting::dead_letter_table::{
    DEAD_LETTERS_PAGE_MAX, DeadLetter, DeadLetterTable, LetterQuery, parse_id,
};
use tradefloor_actors::trading::event_json;

use crate::api::{self, DeadLettersQuery};
use crate::http::auth::Principal;
use crate::http::error::ApiError;
use crate::http::state::AppState;

/// A letter as the API shows it.
fn body(letter: &DeadLetter) -> api::DeadLetterBody {
    api::DeadLetterBody {
        id: letter.id(),
        consumer: letter.consumer.clone(),
        offset: letter.event.global_offset,
        error: letter.error.clone(),
        attempts: letter.attempts,
        parked_at: letter.parked_at,
        order_key: letter.order_key.clone(),
        held_by: letter.held_by,
        retry_requested: letter.retry_requested,
        event: event_json::envelope(&letter.event),
    }
}

/// A letter's id, checked: `{consumer}:{offset}`.
fn letter_id(id: &str) -> Result<(String, u64), ApiError> {
    parse_id(id)
        .filter(|(consumer, _)| consumer_name(consumer))
        .map(|(consumer, offset)| (consumer.to_owned(), offset))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_id",
                "a dead letter's id is {consumer}:{offset}, e.g. trading.balances:1234",
            )
        })
}

fn consumer_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn no_letter(id: &str) -> ApiError {
    ApiError::not_found("no_dead_letter", format!("no dead letter {id}"))
}

/// Parked events, by consumer then offset, and the undeliverable actor messages (admin).
#[utoipa::path(get, path = "/v1/dead-letters", tag = "dead-letters",
    params(DeadLettersQuery),
    responses((status = 200, description = "A page of dead letters", body = api::DeadLettersPage)))]
pub async fn list(
    state: web::Data<AppState>,
    principal: Principal,
    query: web::Query<DeadLettersQuery>,
) -> Result<HttpResponse, ApiError> {
    principal.require_admin()?;
    let query = query.into_inner();
    if query
        .consumer
        .as_deref()
        .is_some_and(|name| !consumer_name(name))
    {
        return Err(ApiError::invalid_query(
            "consumer is 1 to 64 of A-Z a-z 0-9 _ . -",
        ));
    }
    let after = query.after.as_deref().map(letter_id).transpose()?;
    let limit =
        super::markets::bounded(query.limit, 100, DEAD_LETTERS_PAGE_MAX as u32, "limit")? as usize;
    let letters_query = LetterQuery {
        consumer: query.consumer,
        after,
        limit,
    };
    let (letters, counts) = on_table(&state, move |table| async move {
        Ok((table.list(&letters_query).await?, table.counts().await?))
    })
    .await?;
    let undelivered = state.registry.dead_letters();
    let recent = undelivered
        .recent()
        .iter()
        .map(|letter| serde_json::to_value(letter).expect("dead letters serialize"))
        .collect();
    let next_after = (letters.len() == limit)
        .then(|| letters.last().map(DeadLetter::id))
        .flatten();
    Ok(HttpResponse::Ok().json(api::DeadLettersPage {
        letters: letters.iter().map(body).collect(),
        next_after,
        counts: counts.into_iter().collect(),
        undelivered: api::UndeliveredBody {
            total: undelivered.count(),
            recent,
        },
    }))
}

/// Runs `call` on the dead-letter table, on the actors' runtime.
async fn on_table<T, F, Fut>(state: &AppState, call: F) -> Result<T, ApiError>
where
    F: FnOnce(DeadLetterTable) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, tradefloor_persistence::Error>> + Send + 'static,
    T: Send + 'static,
{
    state
        .call(move |exchange| async move { call(exchange.dead_letters()).await.map_err(storage) })
        .await
}

fn storage(error: tradefloor_persistence::Error) -> ApiError {
    ApiError::from(tradefloor_actors::Error::Persistence {
        actor: "/dead-letters".to_owned(),
        reason: error.to_string(),
    })
}

/// One parked event (admin).
#[utoipa::path(get, path = "/v1/dead-letters/{id}", tag = "dead-letters",
    params(("id" = String, Path, description = "{consumer}:{offset}")),
    responses((status = 200, description = "The letter", body = api::DeadLetterBody),
        (status = 404, description = "No such letter", body = api::ErrorBody)))]
pub async fn letter(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    principal.require_admin()?;
    let (consumer, offset) = letter_id(&id)?;
    let letter = on_table(&state, move |table| async move {
        table.get(&consumer, offset).await
    })
    .await?
    .ok_or_else(|| no_letter(&id))?;
    Ok(HttpResponse::Ok().json(body(&letter)))
}

/// Asks the consumer to apply the parked event again (admin), with the letters of its key
/// behind it if the consumer keeps the key's order. The consumer tries within its poll
/// interval; a letter that fails again stays, its error and attempts updated.
#[utoipa::path(post, path = "/v1/dead-letters/{id}/retry", tag = "dead-letters",
    params(("id" = String, Path, description = "{consumer}:{offset}")),
    responses((status = 202, description = "Marked for retry", body = api::RetryAnswer),
        (status = 404, description = "No such letter", body = api::ErrorBody)))]
pub async fn retry(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    principal.require_admin()?;
    let (consumer, offset) = letter_id(&id)?;
    let letters = on_table(&state, move |table| async move {
        table.request_retry(&consumer, offset).await
    })
    .await?;
    if letters == 0 {
        return Err(no_letter(&id));
    }
    Ok(HttpResponse::Accepted().json(api::RetryAnswer {
        id: id.into_inner(),
        letters,
    }))
}

/// Gives a parked event up (admin): its letter is deleted and the event never applied.
#[utoipa::path(delete, path = "/v1/dead-letters/{id}", tag = "dead-letters",
    params(("id" = String, Path, description = "{consumer}:{offset}")),
    responses((status = 204, description = "Deleted"),
        (status = 404, description = "No such letter", body = api::ErrorBody)))]
pub async fn delete(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    principal.require_admin()?;
    let (consumer, offset) = letter_id(&id)?;
    let deleted = on_table(&state, move |table| async move {
        table.delete(&consumer, offset).await
    })
    .await?;
    if !deleted {
        return Err(no_letter(&id));
    }
    Ok(HttpResponse::NoContent().finish())
}
