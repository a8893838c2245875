//! `GET /v1/events` as Server-Sent Events: the log after an offset, filtered as the pages are,
//! one SSE event per log event (`id` = its global offset, `event` = its name, `data` = the
//! JSON envelope), following the log's head as it grows.
//!
//! The connection reads pages of the log at the client's pace: a forwarder writes each page
//! (up to 1 000 events) as one chunk into a buffer of [`PAGES_BUFFERED`] and waits while it
//! is full, so a slow client costs the node a few pages and one task, never a growing queue
//! (the log itself is durable; nothing is dropped). A client that
//! reconnects sends the last id it read (`Last-Event-ID`) and gets every event after it. At
//! most `http_limits.log_streams_max` such connections are open at once.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use actix_web::web::Bytes;
use actix_web::{HttpResponse, web};
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tradefloor_actors::trading::events::{EventLog, LOG_PAGE_EVENTS_MAX, LogQuery};

use super::super::streams::{Frames, error_body, sse_frame, sse_text};
use crate::http::error::ApiError;
use crate::http::state::AppState;

/// How long one page waits for new events before the forwarder looks again at the
/// connection and the node (a client gone, a node shutting down).
const PAGE_WAIT: Duration = Duration::from_secs(1);
/// Pages (each one chunk of up to [`LOG_PAGE_EVENTS_MAX`] events) a connection buffers for
/// its client: the bound on what a slow reader holds in the node.
const PAGES_BUFFERED: usize = 4;

/// Opens the stream of `query`'s events, starting after `query.after`.
pub fn open(
    state: &web::Data<AppState>,
    log: EventLog,
    query: LogQuery,
) -> Result<HttpResponse, ApiError> {
    let permit = state.log_streams.clone().try_acquire_owned().map_err(|_| {
        ApiError::retry(
            actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            format!(
                "{} log streams are open, the most this node serves",
                state.limits.log_streams_max
            ),
            state.limits.retry_after_seconds,
        )
    })?;
    let (sender, receiver) = mpsc::channel(PAGES_BUFFERED);
    let ending = Arc::new(Mutex::new(None));
    let forwarder = Forwarder {
        log,
        query,
        sender,
        ending: ending.clone(),
        keepalive: Duration::from_secs(state.limits.stream_keepalive_seconds),
        _permit: permit,
    };
    state.spawn(forwarder.run(state.clone()));
    metrics::counter!("tradefloor_stream_connections_total", "kind" => "log").increment(1);
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(Frames::new(receiver, ending)))
}

/// Reads the log's pages into one connection's buffer.
struct Forwarder {
    log: EventLog,
    query: LogQuery,
    sender: mpsc::Sender<Bytes>,
    /// The `error` event the stream ends with, if it ends for a reason the client should know.
    ending: Arc<Mutex<Option<Bytes>>>,
    keepalive: Duration,
    /// Held while the connection is open.
    _permit: OwnedSemaphorePermit,
}

impl Forwarder {
    /// Until the client goes, the node shuts down or the log cannot be read.
    async fn run(mut self, state: web::Data<AppState>) {
        let mut quiet_since = tokio::time::Instant::now();
        self.query.wait = PAGE_WAIT;
        self.query.limit = LOG_PAGE_EVENTS_MAX;
        loop {
            if !state.is_ready() {
                return self.end("shutting_down", "the node is shutting down");
            }
            let page = tokio::select! {
                page = self.log.log_page(&self.query) => page,
                () = self.sender.closed() => return,
            };
            let page = match page {
                Ok(page) => page,
                Err(error) => return self.end("unavailable", &error.to_string()),
            };
            if !page.events.is_empty() {
                // One chunk per page; waits while the buffer is full: the client sets the pace.
                let mut chunk = Vec::new();
                for event in &page.events {
                    let offset = event["offset"].as_u64();
                    let name = event["name"].as_str().unwrap_or("event");
                    chunk.extend_from_slice(&sse_frame(offset, name, event));
                }
                if self.sender.send(Bytes::from(chunk)).await.is_err() {
                    return;
                }
            }
            self.query.after = page.next_after;
            if !page.events.is_empty() {
                quiet_since = tokio::time::Instant::now();
            } else if quiet_since.elapsed() >= self.keepalive {
                quiet_since = tokio::time::Instant::now();
                if self
                    .sender
                    .send(Bytes::from_static(b": keep-alive\n\n"))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }

    fn end(&self, code: &str, message: &str) {
        let frame = sse_text(None, "error", &error_body(code, message).to_string());
        *self.ending.lock().unwrap_or_else(PoisonError::into_inner) = Some(frame);
    }
}
