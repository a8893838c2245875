//! `bench --stream-subscribers N`: N clients follow the market's SSE stream while the orders
//! flow, counting what they receive and how long each trade took from the book's decision
//! (the trade's `at`) to the client.
//!
//! A subscriber reads frames without decoding them as JSON (a bench of 1 000 clients on the
//! node's own machine must cost less than what it measures): it counts every event and reads a
//! trade's `"at":` field. The delay is measured against the wall clock of this machine, which
//! is the node's when they run together (as `bin/scripts/bench-node.sh` runs them).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::task::JoinSet;

use crate::bench::Latency;
use crate::client::Client;

/// The longest delay the histogram tells apart, in microseconds (longer ones count as it).
const DELAY_MAX_MICROS: u64 = 60_000_000;
/// How long the subscribers go on reading after the load stopped (messages in flight).
const DRAIN: Duration = Duration::from_millis(500);

/// What one subscriber saw.
struct Seen {
    connected: bool,
    events: u64,
    trades: u64,
    delays: Histogram<u64>,
}

impl Seen {
    fn new() -> Self {
        Self {
            connected: false,
            events: 0,
            trades: 0,
            delays: Histogram::new_with_bounds(1, DELAY_MAX_MICROS, 3)
                .expect("valid histogram bounds"),
        }
    }
}

/// The subscribers of a run.
pub struct Fanout {
    tasks: JoinSet<Seen>,
    stop: Arc<AtomicBool>,
    started: std::time::Instant,
    subscribers: u32,
}

/// What the subscribers received.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FanoutReport {
    /// Subscribers asked for.
    pub subscribers: u32,
    /// Subscribers whose stream opened.
    pub connected: u32,
    /// Events received by all of them (every kind).
    pub events: u64,
    /// Trades received by all of them.
    pub trades: u64,
    /// `events` per second of the run.
    pub events_per_second: f64,
    /// From the trade's time on the book to its arrival at a subscriber.
    pub delay_micros: Latency,
}

impl Fanout {
    /// Opens `subscribers` streams of `symbol`'s market.
    pub fn start(client: &Client, symbol: &str, subscribers: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = JoinSet::new();
        let path = format!("/v1/markets/{symbol}/stream");
        for _ in 0..subscribers {
            tasks.spawn(subscribe(client.clone(), path.clone(), stop.clone()));
        }
        Self {
            tasks,
            stop,
            started: std::time::Instant::now(),
            subscribers,
        }
    }

    /// Stops the subscribers (after a short drain) and sums what they saw.
    pub async fn finish(mut self) -> FanoutReport {
        tokio::time::sleep(DRAIN).await;
        self.stop.store(true, Ordering::Release);
        let elapsed = self.started.elapsed().as_secs_f64().max(f64::MIN_POSITIVE);
        let mut total = Seen::new();
        let mut connected = 0;
        while let Some(seen) = self.tasks.join_next().await {
            let Ok(seen) = seen else { continue };
            connected += u32::from(seen.connected);
            total.events += seen.events;
            total.trades += seen.trades;
            total
                .delays
                .add(&seen.delays)
                .expect("histograms of one shape add");
        }
        FanoutReport {
            subscribers: self.subscribers,
            connected,
            events: total.events,
            trades: total.trades,
            events_per_second: total.events as f64 / elapsed,
            delay_micros: Latency::of(&total.delays),
        }
    }
}

/// One subscriber: reads its stream until told to stop or the stream ends.
async fn subscribe(client: Client, path: String, stop: Arc<AtomicBool>) -> Seen {
    let mut seen = Seen::new();
    let Ok(mut stream) = client.stream_raw(&path).await else {
        return seen;
    };
    seen.connected = true;
    let mut buffer = Vec::new();
    while !stop.load(Ordering::Acquire) {
        let chunk = tokio::select! {
            chunk = stream.chunk() => chunk,
            () = tokio::time::sleep(Duration::from_millis(100)) => continue,
        };
        let Ok(Some(chunk)) = chunk else { break };
        buffer.extend_from_slice(&chunk);
        let now = now_micros();
        let mut start = 0;
        while let Some(end) = find(&buffer[start..], b"\n\n") {
            count(&buffer[start..start + end], now, &mut seen);
            start += end + 2;
        }
        buffer.drain(..start);
    }
    seen
}

/// Counts one frame; a trade's delay from its `"at":`.
fn count(frame: &[u8], now: u64, seen: &mut Seen) {
    if frame.starts_with(b":") {
        return;
    }
    seen.events += 1;
    if find(frame, b"event: trade\n").is_none() {
        return;
    }
    seen.trades += 1;
    if let Some(at) = find(frame, b"\"at\":").map(|index| &frame[index + 5..]) {
        let digits = at.iter().take_while(|byte| byte.is_ascii_digit()).count();
        let at = std::str::from_utf8(&at[..digits])
            .ok()
            .and_then(|text| text.parse::<u64>().ok());
        if let Some(at) = at {
            seen.delays.saturating_record(now.saturating_sub(at).max(1));
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_micros()).unwrap_or(u64::MAX)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_counted_and_a_trade_timed() {
        let mut seen = Seen::new();
        count(b": keep-alive", 10, &mut seen);
        count(b"event: top\ndata: {\"bid\":null}", 10, &mut seen);
        count(
            b"id: 44\nevent: trade\ndata: {\"price\":100,\"at\":1000}",
            1_250,
            &mut seen,
        );
        assert_eq!((seen.events, seen.trades), (2, 1));
        assert_eq!(seen.delays.max(), 250);
    }
}
