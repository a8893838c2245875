//! Remoting over ractor_cluster.
//!
//! Each node runs a ractor_cluster `NodeServer` on its cluster address, authenticated by the
//! cluster's shared secret (ractor_cluster's cookie challenge: a peer with another secret is
//! disconnected during the handshake, and we log it), a **gateway** actor that joins the
//! process group `tradefloor.gateway.{node_id}` and an **inbox** actor in
//! `tradefloor.inbox.{node_id}`. ractor_cluster synchronizes process groups between
//! connected nodes, so a node reaches node `n` through the remote members of `n`'s groups.
//!
//! Calls travel in the binary codec, several per frame when they queue: ractor_cluster
//! writes each message with a system call of its own and reads it with two, and on one
//! machine those took a third of a forwarding node's CPU. The calling side
//! ([`ClusterTransport`]) keeps one outbox per remote node; a task drains it into frames of
//! up to [`RemoteConfig::calls_per_frame_max`] calls, each cast to the node's gateway. The
//! gateway serves each call on its own task (bounded by [`RemoteConfig::serving_max`]) and
//! answers as soon as it is done: the answers that are ready go back together, one frame
//! cast to the caller's inbox, so a slow call never holds up the others of its frame.
//!
//! The calling side goes through one circuit breaker and one in-flight bound per remote
//! node. ractor_cluster drops messages when a connection breaks; the calls waiting on that
//! node are then answered [`Error::Stopped`](tradefloor_actors::Error::Stopped) at once and
//! route again with the same command (and so the same command id), which entities
//! deduplicate.

mod endpoint;
mod gateway;
mod guard;
mod inbox;
mod transport;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tradefloor_actors::BreakerConfig;
use tradefloor_actors::routing::remote::{Call, Reply};

pub use endpoint::Endpoint;
pub use gateway::GatewayMessage;
pub use guard::GuardConfig;
pub use inbox::InboxMessage;
pub use transport::ClusterTransport;

/// The process-group scope of Tradefloor's gateways and inboxes.
const SCOPE: &str = "tradefloor";

/// The process group of node `node_id`'s gateway.
fn gateway_group(node_id: &str) -> String {
    format!("tradefloor.gateway.{node_id}")
}

/// The process group of node `node_id`'s inbox (where the answers to its calls arrive).
fn inbox_group(node_id: &str) -> String {
    format!("tradefloor.inbox.{node_id}")
}

/// The member of `group` on another node, if this node is connected to it.
fn remote_member<M: ractor::Message>(group: &str) -> Option<ractor::ActorRef<M>> {
    ractor::pg::get_scoped_members(&SCOPE.to_owned(), &group.to_owned())
        .into_iter()
        .find(|cell| !cell.get_id().is_local())
        .map(ractor::ActorRef::from)
}

/// Limits of remoting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteConfig {
    /// Calls this node has in flight to one other node; past it a call is refused with
    /// `Overloaded` (the bounded mailbox of a remote node).
    pub calls_in_flight_max: usize,
    /// Calls from other nodes this node serves at once; past it they are answered
    /// `Overloaded`.
    pub serving_max: usize,
    /// Most calls (or answers) sent together in one frame.
    pub calls_per_frame_max: usize,
    /// Most bytes of calls (or answers) in one frame, about; a single call or answer larger
    /// than this is refused (it must fit the codec's frame limit with room to spare).
    pub frame_bytes_max: usize,
    /// The breaker in front of each remote node.
    pub breaker: BreakerConfig,
    /// The cluster port's bounds for connections that have not authenticated.
    pub guard: GuardConfig,
}

impl Default for RemoteConfig {
    fn default() -> Self {
        Self {
            calls_in_flight_max: 4_096,
            serving_max: 8_192,
            calls_per_frame_max: 256,
            frame_bytes_max: tradefloor_persistence::codec::FRAME_LIMIT / 2,
            breaker: BreakerConfig {
                call_timeout: Duration::from_secs(30),
                ..BreakerConfig::default()
            },
            guard: GuardConfig::default(),
        }
    }
}

/// Calls from node `from`, each with the number its answer comes back under.
#[derive(Debug, Serialize, Deserialize)]
struct CallFrame {
    from: String,
    calls: Vec<(u64, Call)>,
}

/// Answers to calls, each under its call's number.
#[derive(Debug, Serialize, Deserialize)]
struct ReplyFrame {
    replies: Vec<(u64, Reply)>,
}

/// About how many bytes `call` takes in a frame.
fn call_size(call: &Call) -> usize {
    call.body.len() + call.target.len() + call.operation.len() + call.entity_id.len() + 32
}

/// About how many bytes `reply` takes in a frame.
fn reply_size(reply: &Reply) -> usize {
    match reply {
        Ok(bytes) => bytes.len() + 16,
        Err(error) => error.to_string().len() + 64,
    }
}

/// A queue of items (calls or answers) cut into frames: each frame takes what is ready, up to
/// `count_max` items and about `bytes_max` bytes (see [`drain_frame`]).
struct Frames<T> {
    queue: tokio::sync::mpsc::Receiver<T>,
    /// The item that did not fit the last frame: the first of the next.
    carried: Option<T>,
    size: fn(&T) -> usize,
    count_max: usize,
    bytes_max: usize,
}

impl<T> Frames<T> {
    fn new(
        queue: tokio::sync::mpsc::Receiver<T>,
        size: fn(&T) -> usize,
        config: &RemoteConfig,
    ) -> Self {
        Self {
            queue,
            carried: None,
            size,
            count_max: config.calls_per_frame_max,
            bytes_max: config.frame_bytes_max,
        }
    }

    /// The next frame, once an item is queued; `None` when the queue closed.
    async fn next(&mut self) -> Option<Vec<T>> {
        let first = match self.carried.take() {
            Some(item) => item,
            None => self.queue.recv().await?,
        };
        // Let the tasks that are ready run first: what they queue meanwhile goes in this
        // frame (woken, this task would otherwise run next and send one item per frame).
        tokio::task::yield_now().await;
        let (frame, carried) = drain_frame(
            first,
            &mut self.queue,
            self.size,
            self.count_max,
            self.bytes_max,
        );
        self.carried = carried;
        Some(frame)
    }
}

/// Takes items from `first` and then `queue` while they are ready, up to `count_max` items and
/// about `bytes_max` bytes (the first always goes); an item that would pass the byte bound is
/// handed back for the next frame.
fn drain_frame<T>(
    first: T,
    queue: &mut tokio::sync::mpsc::Receiver<T>,
    size: impl Fn(&T) -> usize,
    count_max: usize,
    bytes_max: usize,
) -> (Vec<T>, Option<T>) {
    let mut bytes = size(&first);
    let mut frame = vec![first];
    while frame.len() < count_max {
        let Ok(next) = queue.try_recv() else {
            break;
        };
        bytes += size(&next);
        if bytes > bytes_max {
            return (frame, Some(next));
        }
        frame.push(next);
    }
    (frame, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_frame_takes_what_is_ready_within_its_bounds() {
        let (sender, mut queue) = tokio::sync::mpsc::channel(16);
        for size in [10, 10, 10, 50, 10] {
            sender.try_send(size).unwrap();
        }
        let first = queue.recv().await.unwrap();
        let (frame, carried) = drain_frame(first, &mut queue, |size| *size, 8, 40);
        assert_eq!((frame, carried), (vec![10, 10, 10], Some(50)));
        let (frame, carried) = drain_frame(50, &mut queue, |size| *size, 8, 40);
        assert_eq!(
            (frame, carried),
            (vec![50], Some(10)),
            "an item over the bound alone still goes, alone"
        );
        let (frame, carried) = drain_frame(10, &mut queue, |size| *size, 1, 40);
        assert_eq!((frame, carried), (vec![10], None), "the count bound");
        assert!(queue.try_recv().is_err());
    }
}
