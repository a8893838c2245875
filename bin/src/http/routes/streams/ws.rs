//! `GET /v1/ws`: one WebSocket following several topics.
//!
//! The client sends JSON text messages: `{"op":"subscribe","channel":"market:BTC-USD"}`
//! (with `"after": id` to resume), `{"op":"unsubscribe","channel":…}` and `{"op":"ping"}`.
//! The node answers `{"type":"subscribed"|"unsubscribed"|"pong"|"error",…}` and sends each
//! message as `{"type":"message","channel":…,"event":…,"id":…,"data":{…}}`. A channel's
//! snapshot comes first after `subscribed`, as messages without an id. The node pings every
//! `stream_keepalive_seconds` and closes a connection silent for twice that; a client that
//! lets its buffer fill is sent `slow_consumer` and closed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{AggregatedMessage, CloseCode, CloseReason, Session};
use serde::Deserialize;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tradefloor_actors::trading::streams::{StreamMessage, Subscription, Topic};

use super::{end_code, error_body};
use crate::http::auth::Principal;
use crate::http::error::ApiError;
use crate::http::state::AppState;

/// What a client sends.
#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
enum Request {
    Subscribe { channel: String, after: Option<u64> },
    Unsubscribe { channel: String },
    Ping,
}

/// What one connection shares between its reader, its writer and its forwarders.
struct Connection {
    /// Text frames waiting to be written (bounded: a full buffer closes the connection).
    sender: mpsc::Sender<String>,
    /// Set when the connection must close, with the reason's frame.
    closing: Mutex<Option<(String, CloseCode)>>,
    close: Notify,
}

impl Connection {
    /// Queues `frame`, or closes the connection if its buffer is full.
    fn send(&self, frame: String) -> bool {
        match self.sender.try_send(frame) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                metrics::counter!("tradefloor_stream_slow_consumers_total").increment(1);
                self.close_with(
                    "slow_consumer",
                    "the client read too slowly and its buffer filled; resume from the last id",
                    CloseCode::Policy,
                );
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    fn close_with(&self, code: &str, message: &str, close: CloseCode) {
        let frame = serde_json::json!({"type": "error", "code": code, "message": message});
        let mut closing = self.closing.lock().unwrap_or_else(PoisonError::into_inner);
        if closing.is_none() {
            *closing = Some((frame.to_string(), close));
        }
        drop(closing);
        self.close.notify_one();
    }
}

/// Upgrades to a WebSocket (authenticated like every route; channels are checked against
/// the token one by one).
#[utoipa::path(get, path = "/v1/ws", tag = "streams",
    responses((status = 101, description = "Switching to the WebSocket protocol")))]
pub async fn upgrade(
    request: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
    principal: Principal,
) -> Result<HttpResponse, ApiError> {
    let limits = &state.limits;
    let (response, session, messages) = actix_ws::handle(&request, body).map_err(|error| {
        ApiError::new(
            actix_web::http::StatusCode::BAD_REQUEST,
            "not_a_websocket",
            error.to_string(),
        )
    })?;
    let messages = messages
        .max_frame_size(limits.ws_message_bytes_max)
        .aggregate_continuations()
        .max_continuation_size(limits.ws_message_bytes_max);
    let (sender, receiver) = mpsc::channel(limits.stream_buffer_messages);
    let connection = Arc::new(Connection {
        sender,
        closing: Mutex::new(None),
        close: Notify::new(),
    });
    let keepalive = Duration::from_secs(limits.stream_keepalive_seconds);
    metrics::counter!("tradefloor_stream_connections_total", "kind" => "websocket").increment(1);
    actix_web::rt::spawn(write(
        session.clone(),
        receiver,
        connection.clone(),
        keepalive,
    ));
    actix_web::rt::spawn(read(
        session,
        messages,
        connection,
        state.clone(),
        principal,
    ));
    Ok(response)
}

/// Writes queued frames, pings, and the closing frame.
async fn write(
    mut session: Session,
    mut receiver: mpsc::Receiver<String>,
    connection: Arc<Connection>,
    keepalive: Duration,
) {
    let mut ticker = tokio::time::interval(keepalive);
    ticker.tick().await;
    loop {
        tokio::select! {
            frame = receiver.recv() => match frame {
                Some(frame) => if session.text(frame).await.is_err() { return },
                None => return,
            },
            () = connection.close.notified() => break,
            _ = ticker.tick() => if session.ping(b"").await.is_err() { return },
        }
    }
    let closing = connection
        .closing
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    if let Some((frame, code)) = closing {
        let _ = session.text(frame).await;
        let _ = session
            .close(Some(CloseReason {
                code,
                description: None,
            }))
            .await;
    }
}

/// Reads the client's requests until it goes, is silent too long, or the connection closes.
async fn read(
    session: Session,
    mut messages: actix_ws::AggregatedMessageStream,
    connection: Arc<Connection>,
    state: web::Data<AppState>,
    principal: Principal,
) {
    let keepalive = Duration::from_secs(state.limits.stream_keepalive_seconds);
    let mut forwarders: BTreeMap<Topic, JoinHandle<()>> = BTreeMap::new();
    let mut heard = Instant::now();
    loop {
        let next = tokio::select! {
            next = messages.recv() => next,
            () = tokio::time::sleep(keepalive * 2) => {
                if heard.elapsed() >= keepalive * 2 {
                    connection.close_with("timeout", "no message or pong for too long", CloseCode::Away);
                    break;
                }
                continue;
            }
        };
        heard = Instant::now();
        match next {
            Some(Ok(AggregatedMessage::Text(text))) => {
                let answer = handle(&text, &state, &principal, &connection, &mut forwarders).await;
                if let Some(answer) = answer
                    && !connection.send(answer.to_string())
                {
                    break;
                }
            }
            Some(Ok(AggregatedMessage::Ping(bytes))) => {
                let mut session = session.clone();
                if session.pong(&bytes).await.is_err() {
                    break;
                }
            }
            Some(Ok(AggregatedMessage::Pong(_))) => {}
            Some(Ok(AggregatedMessage::Binary(_))) => {
                connection.close_with(
                    "invalid_message",
                    "send JSON text messages",
                    CloseCode::Unsupported,
                );
                break;
            }
            Some(Ok(AggregatedMessage::Close(_))) | None => break,
            Some(Err(error)) => {
                connection.close_with("invalid_message", &error.to_string(), CloseCode::Protocol);
                break;
            }
        }
    }
    for (_, forwarder) in forwarders {
        forwarder.abort();
    }
    connection.close.notify_one();
}

/// Carries out one request; the answer to send, if any.
async fn handle(
    text: &str,
    state: &web::Data<AppState>,
    principal: &Principal,
    connection: &Arc<Connection>,
    forwarders: &mut BTreeMap<Topic, JoinHandle<()>>,
) -> Option<serde_json::Value> {
    let request: Request = match serde_json::from_str(text) {
        Ok(request) => request,
        Err(error) => return Some(error_answer("invalid_message", &error.to_string(), None)),
    };
    let (channel, after) = match request {
        Request::Ping => return Some(serde_json::json!({"type": "pong"})),
        Request::Unsubscribe { channel } => {
            let Some(topic) = Topic::parse(&channel) else {
                return Some(error_answer(
                    "invalid_channel",
                    "no such channel",
                    Some(&channel),
                ));
            };
            if let Some(forwarder) = forwarders.remove(&topic) {
                forwarder.abort();
            }
            return Some(serde_json::json!({"type": "unsubscribed", "channel": channel}));
        }
        Request::Subscribe { channel, after } => (channel, after),
    };
    match subscribe(&channel, after, state, principal, forwarders.len()).await {
        Err(error) => Some(error_answer(error.code, &error.message, Some(&channel))),
        Ok((topic, subscription, snapshot)) => {
            if let Some(previous) = forwarders.remove(&topic) {
                previous.abort();
            }
            let answer = serde_json::json!({"type": "subscribed", "channel": channel});
            if !connection.send(answer.to_string()) {
                return None;
            }
            for frame in snapshot {
                if !connection.send(frame) {
                    return None;
                }
            }
            let handle = state.spawn_handle(forward(subscription, connection.clone()));
            forwarders.insert(topic, handle);
            None
        }
    }
}

fn error_answer(code: &str, message: &str, channel: Option<&str>) -> serde_json::Value {
    let mut answer = error_body(code, message);
    answer["type"] = "error".into();
    if let Some(channel) = channel {
        answer["channel"] = channel.into();
    }
    answer
}

/// Checks and opens one channel: its topic, subscription and snapshot frames.
async fn subscribe(
    channel: &str,
    after: Option<u64>,
    state: &web::Data<AppState>,
    principal: &Principal,
    open: usize,
) -> Result<(Topic, Subscription, Vec<String>), ApiError> {
    let topic = Topic::parse(channel).ok_or_else(|| {
        ApiError::new(
            actix_web::http::StatusCode::BAD_REQUEST,
            "invalid_channel",
            "a channel is market:{symbol} or account:{id}",
        )
    })?;
    if let Topic::Account(account) = topic {
        principal.require_funds(account.as_str())?;
    }
    if open >= state.limits.ws_subscriptions_max {
        return Err(ApiError::new(
            actix_web::http::StatusCode::TOO_MANY_REQUESTS,
            "too_many_subscriptions",
            format!(
                "a connection follows at most {} channels",
                state.limits.ws_subscriptions_max
            ),
        ));
    }
    let (subscription, snapshot) = super::open(state, topic, after).await?;
    let frames = snapshot
        .iter()
        .map(|(event, data)| ws_text(topic, event, None, data))
        .collect();
    Ok((topic, subscription, frames))
}

fn ws_text(topic: Topic, event: &str, id: Option<u64>, data: &str) -> String {
    let id = id.map_or_else(|| "null".to_owned(), |id| id.to_string());
    format!(r#"{{"type":"message","channel":"{topic}","event":"{event}","id":{id},"data":{data}}}"#)
}

/// Queues `subscription`'s messages on the connection until it ends.
async fn forward(mut subscription: Subscription, connection: Arc<Connection>) {
    loop {
        match subscription.next().await {
            Ok(message) => {
                if !connection.send(frame_of(&message)) {
                    return;
                }
            }
            Err(end) => {
                connection.close_with(end_code(&end), &end.to_string(), CloseCode::Again);
                return;
            }
        }
    }
}

fn frame_of(message: &StreamMessage) -> String {
    ws_text(message.topic, message.event, message.id, &message.data)
}
