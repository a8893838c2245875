//! A Server-Sent Events client for tests: opens a stream and reads it event by event, each
//! read bounded by [`MESSAGE_TIMEOUT`] (a stalled stream fails a test, never hangs it).

use std::time::Duration;

use serde_json::Value;

/// The longest a test waits for one message (a stalled stream fails, never hangs).
pub const MESSAGE_TIMEOUT: Duration = Duration::from_secs(20);

/// One SSE event.
#[derive(Debug)]
pub struct Event {
    /// Its `id`, if it has one.
    pub id: Option<u64>,
    /// Its `event` name.
    pub event: String,
    /// Its `data`, parsed.
    pub data: Value,
}

/// An SSE connection read event by event.
pub struct Sse {
    response: reqwest::Response,
    buffer: String,
}

impl Sse {
    /// Opens `path`; the status and the error body if it is not 200.
    pub async fn open(
        url: &str,
        path: &str,
        token: Option<&str>,
        last_id: Option<&str>,
    ) -> Result<Sse, (u16, Value)> {
        let mut request = reqwest::Client::new()
            .get(format!("{url}{path}"))
            .header("Accept", "text/event-stream");
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(id) = last_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request.send().await.expect("the node answers");
        let status = response.status().as_u16();
        if status != 200 {
            return Err((status, response.json().await.unwrap_or(Value::Null)));
        }
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            content_type.starts_with("text/event-stream"),
            "{content_type}"
        );
        Ok(Sse {
            response,
            buffer: String::new(),
        })
    }

    /// The next event (keep-alive comments skipped); `None` once the stream ended.
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let frame: String = self.buffer.drain(..end + 2).collect();
                if let Some(event) = parse(&frame) {
                    return Some(event);
                }
                continue;
            }
            let chunk = tokio::time::timeout(MESSAGE_TIMEOUT, self.response.chunk())
                .await
                .expect("a stream message within the timeout")
                .expect("the stream reads");
            self.buffer
                .push_str(std::str::from_utf8(&chunk?).expect("SSE is UTF-8"));
        }
    }

    /// The next event named `name`, skipping others.
    pub async fn next_named(&mut self, name: &str) -> Event {
        loop {
            let event = self.next().await.expect("the stream goes on");
            if event.event == name {
                return event;
            }
        }
    }
}

fn parse(frame: &str) -> Option<Event> {
    let (mut id, mut event, mut data) = (None, None, None);
    for line in frame.lines() {
        if let Some(value) = line.strip_prefix("id: ") {
            id = Some(value.parse().expect("ids are integers"));
        } else if let Some(value) = line.strip_prefix("event: ") {
            event = Some(value.to_owned());
        } else if let Some(value) = line.strip_prefix("data: ") {
            data = Some(serde_json::from_str(value).expect("data is JSON"));
        }
    }
    Some(Event {
        id,
        event: event?,
        data: data?,
    })
}
