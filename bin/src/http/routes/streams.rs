//! Live streams: Server-Sent Events per market and per account, and one WebSocket that
//! follows several of them.
//!
//! Every connection reads its topics through the node's stream hub
//! (`tradefloor_actors::trading::streams`). What it has not yet written sits in a buffer of
//! `http_limits.stream_buffer_messages`; a client that lets it fill is disconnected with the
//! reason (`slow_consumer`) and resumes from the last id it read, so a slow client costs the
//! node a bounded buffer, never more. A connection first gets a snapshot of the state (top of
//! book and candles; balances and open orders), then the messages; a reconnecting client
//! sends the last id it saw (`Last-Event-ID`, or `after`) and gets every message after it
//! exactly once.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::Stream;
use serde::Deserialize;
use tokio::sync::mpsc;
use tradefloor_actors::trading::CandleInterval;
use tradefloor_actors::trading::streams::{
    CandleBody, StreamEnd, StreamMessage, Subscription, TopBody, Topic,
};

use crate::http::auth::Principal;
use crate::http::convert;
use crate::http::error::ApiError;
use crate::http::state::AppState;

pub mod ws;

/// `after`: resume after this message id (as `Last-Event-ID` does).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    /// The last message id the client saw.
    pub after: Option<u64>,
}

/// A market's live stream (SSE): `trade` and `market` messages with ids, `top` and `candle`
/// state updates; a `top` and the latest `candle` of each interval first.
#[utoipa::path(get, path = "/v1/markets/{symbol}/stream", tag = "streams",
    params(("symbol" = String, Path, description = "e.g. BTC-USD"), StreamQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "resume after this id")),
    responses((status = 200, description = "text/event-stream of the market's messages"),
        (status = 410, description = "resume_too_old: start again without an id")))]
pub async fn market(
    request: HttpRequest,
    state: web::Data<AppState>,
    _principal: Principal,
    symbol: web::Path<String>,
    query: web::Query<StreamQuery>,
) -> Result<HttpResponse, ApiError> {
    let symbol = convert::symbol(&symbol)?;
    let after = resume_point(&request, query.after)?;
    let (subscription, snapshot) = open(&state, Topic::Market(symbol), after).await?;
    Ok(sse_response(&state, subscription, snapshot))
}

/// An account's live stream (SSE): `order`, `fill`, `balance` and `limits` messages with
/// ids; its balances and open orders first (`snapshot`). A trader's token streams only its
/// own accounts.
#[utoipa::path(get, path = "/v1/accounts/{id}/stream", tag = "streams",
    params(("id" = String, Path, description = "The account"), StreamQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "resume after this id")),
    responses((status = 200, description = "text/event-stream of the account's messages"),
        (status = 410, description = "resume_too_old: start again without an id")))]
pub async fn account(
    request: HttpRequest,
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
    query: web::Query<StreamQuery>,
) -> Result<HttpResponse, ApiError> {
    let account_id = convert::account_id(&id)?;
    principal.require_funds(account_id.as_str())?;
    let after = resume_point(&request, query.after)?;
    let (subscription, snapshot) = open(&state, Topic::Account(account_id), after).await?;
    Ok(sse_response(&state, subscription, snapshot))
}

/// A snapshot's messages: `(event, JSON body)`.
pub type Snapshot = Vec<(&'static str, String)>;

/// Subscribes to `topic` (after message `after`) and takes its snapshot: a market's top of
/// book and latest candles, an account's balances and open orders. Subscribed first, so no
/// change after the snapshot is missed.
pub async fn open(
    state: &AppState,
    topic: Topic,
    after: Option<u64>,
) -> Result<(Subscription, Snapshot), ApiError> {
    state
        .call(move |exchange| async move {
            if let Topic::Market(symbol) = topic {
                exchange.market(symbol).await?;
            }
            let subscription = exchange.streams().subscribe(topic, after).await?;
            let snapshot = match topic {
                Topic::Market(symbol) => {
                    let top = exchange.book_depth(symbol, 1).await?;
                    let mut snapshot = vec![("top", json(&TopBody::of(symbol, &top)))];
                    for interval in CandleInterval::ALL {
                        if let Some(candle) = exchange.candles(symbol, interval, 1).await?.first() {
                            let body = CandleBody::new(&symbol, interval, candle, false);
                            snapshot.push(("candle", json(&body)));
                        }
                    }
                    snapshot
                }
                Topic::Account(account) => {
                    let view = exchange.account(account).await?;
                    let mut snapshot = vec![("snapshot", json(&convert::account(&view)))];
                    for flag in exchange.account_risk_flags(account).await? {
                        snapshot.push(("risk", json(&flag)));
                    }
                    snapshot
                }
            };
            Ok((subscription, snapshot))
        })
        .await
}

fn json(body: &impl serde::Serialize) -> String {
    serde_json::to_string(body).expect("stream bodies serialize")
}

/// Where a client resumes: `Last-Event-ID` (what a browser's `EventSource` sends) or `after`.
pub(crate) fn resume_point(
    request: &HttpRequest,
    after: Option<u64>,
) -> Result<Option<u64>, ApiError> {
    let header = request.headers().get("Last-Event-ID");
    match (header, after) {
        (Some(value), _) => value
            .to_str()
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .map(Some)
            .ok_or_else(|| {
                ApiError::new(
                    actix_web::http::StatusCode::BAD_REQUEST,
                    "invalid_header",
                    "Last-Event-ID must be a message id this node sent",
                )
            }),
        (None, after) => Ok(after),
    }
}

/// One SSE event.
pub(crate) fn sse_frame(id: Option<u64>, event: &str, body: &impl serde::Serialize) -> Bytes {
    sse_text(id, event, &json(body))
}

pub(crate) fn sse_text(id: Option<u64>, event: &str, data: &str) -> Bytes {
    let mut frame = String::with_capacity(data.len() + event.len() + 32);
    if let Some(id) = id {
        frame.push_str(&format!("id: {id}\n"));
    }
    frame.push_str(&format!("event: {event}\ndata: {data}\n\n"));
    Bytes::from(frame)
}

/// The `error` event a stream ends with: why, for the client to act on.
fn end_code(end: &StreamEnd) -> &'static str {
    match end {
        StreamEnd::Lagged { .. } => "slow_consumer",
        StreamEnd::Closed => "shutting_down",
        StreamEnd::Storage(_) => "unavailable",
    }
}

pub(crate) fn error_body(code: &str, message: &str) -> serde_json::Value {
    serde_json::json!({ "code": code, "message": message })
}

/// The SSE response: the snapshot, then a forwarder on the actors' runtime writes the
/// subscription's messages into the connection's bounded buffer.
fn sse_response(state: &AppState, subscription: Subscription, snapshot: Snapshot) -> HttpResponse {
    let limits = &state.limits;
    let snapshot: Vec<Bytes> = snapshot
        .iter()
        .map(|(event, data)| sse_text(None, event, data))
        .collect();
    let (sender, receiver) = mpsc::channel(limits.stream_buffer_messages.max(snapshot.len()));
    for frame in snapshot {
        sender
            .try_send(frame)
            .expect("the buffer holds the snapshot");
    }
    let ending = Arc::new(Mutex::new(None));
    let keepalive = Duration::from_secs(limits.stream_keepalive_seconds);
    state.spawn(forward(subscription, sender, ending.clone(), keepalive));
    metrics::counter!("tradefloor_stream_connections_total", "kind" => "sse").increment(1);
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(Frames::new(receiver, ending))
}

/// Writes `subscription`'s messages into `sender` (a comment every `keepalive` when quiet)
/// until the client goes, falls behind or the stream ends; the reason goes to `ending`.
async fn forward(
    mut subscription: Subscription,
    sender: mpsc::Sender<Bytes>,
    ending: Arc<Mutex<Option<Bytes>>>,
    keepalive: Duration,
) {
    let mut ticker = tokio::time::interval(keepalive);
    ticker.tick().await;
    let end = |code: &str, message: &str| {
        let frame = sse_frame(None, "error", &error_body(code, message));
        *ending.lock().unwrap_or_else(PoisonError::into_inner) = Some(frame);
    };
    loop {
        let frame = tokio::select! {
            next = subscription.next() => match next {
                Ok(message) => frame_of(&message),
                Err(stream_end) => {
                    end(end_code(&stream_end), &stream_end.to_string());
                    return;
                }
            },
            () = sender.closed() => return,
            _ = ticker.tick() => Bytes::from_static(b": keep-alive\n\n"),
        };
        match sender.try_send(frame) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                metrics::counter!("tradefloor_stream_slow_consumers_total").increment(1);
                end(
                    "slow_consumer",
                    "the client read too slowly and its buffer filled; resume from the last id",
                );
                return;
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return,
        }
    }
}

fn frame_of(message: &StreamMessage) -> Bytes {
    sse_text(message.id, message.event, &message.data)
}

/// The body of an SSE response: the buffer's frames, then the reason it ended, if any.
pub(crate) struct Frames {
    receiver: mpsc::Receiver<Bytes>,
    ending: Arc<Mutex<Option<Bytes>>>,
    ended: bool,
}

impl Frames {
    /// A body reading `receiver`, then what `ending` holds when it closes.
    pub(crate) fn new(receiver: mpsc::Receiver<Bytes>, ending: Arc<Mutex<Option<Bytes>>>) -> Self {
        Self {
            receiver,
            ending,
            ended: false,
        }
    }
}

impl Stream for Frames {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        match self.receiver.poll_recv(context) {
            Poll::Ready(Some(frame)) => Poll::Ready(Some(Ok(frame))),
            Poll::Ready(None) => {
                self.ended = true;
                let ending = self
                    .ending
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take();
                Poll::Ready(ending.map(Ok))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}
