//! The calling side: an outbox per remote node, drained into frames of calls cast to the
//! node's gateway, and the callers waiting for their answers (see the [module docs](super)).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};
use tradefloor_actors::hosting::saga_host::BoxFuture;
use tradefloor_actors::routing::remote::{Call, Reply, Transport};
use tradefloor_actors::{BreakerSnapshot, CircuitBreaker, Error as ActorError};
use tradefloor_persistence::codec;

use super::gateway::GatewayMessage;
use super::inbox::Waiting;
use super::{CallFrame, Frames, RemoteConfig, call_size, gateway_group, remote_member};

/// One remote node as the transport sees it.
struct Peer {
    breaker: CircuitBreaker,
    in_flight: Arc<Semaphore>,
    /// Calls to send, each with its number; bounded by `in_flight` (a caller holds a permit
    /// until its call is answered or given up).
    outbox: mpsc::Sender<(u64, Call)>,
}

/// Calls to other nodes over ractor_cluster, through a breaker and an in-flight bound per
/// node, several per frame when they queue (see the [module docs](super)).
pub struct ClusterTransport {
    node_id: String,
    config: RemoteConfig,
    peers: Mutex<HashMap<String, Arc<Peer>>>,
    next_call: AtomicU64,
    waiting: Arc<Waiting>,
}

impl ClusterTransport {
    /// The transport of node `node_id`, with no peer yet (each gets its breaker and its
    /// outbox at the first call).
    pub fn new(node_id: impl Into<String>, config: RemoteConfig) -> Self {
        Self {
            node_id: node_id.into(),
            config,
            peers: Mutex::new(HashMap::new()),
            next_call: AtomicU64::new(1),
            waiting: Arc::new(Waiting::default()),
        }
    }

    /// The calls waiting for an answer, shared with the node's inbox.
    pub(super) fn waiting(&self) -> Arc<Waiting> {
        self.waiting.clone()
    }

    /// The node this transport calls from.
    pub(super) fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Node `node`'s peer; its outbox's task starts with it (so a call must come from within
    /// the runtime, as every call does).
    fn peer(&self, node: &str) -> Arc<Peer> {
        let mut peers = self.peers.lock().expect("no panics under the lock");
        if let Some(peer) = peers.get(node) {
            return peer.clone();
        }
        let (outbox, queued) = mpsc::channel(self.config.calls_in_flight_max.max(1));
        tokio::spawn(send_calls(
            node.to_owned(),
            self.node_id.clone(),
            self.config.clone(),
            queued,
            self.waiting.clone(),
        ));
        let peer = Arc::new(Peer {
            breaker: CircuitBreaker::new(format!("cluster/node/{node}"), self.config.breaker),
            in_flight: Arc::new(Semaphore::new(self.config.calls_in_flight_max)),
            outbox,
        });
        peers.insert(node.to_owned(), peer.clone());
        peer
    }
}

/// Forgets a call when its caller stops waiting, however it stops.
struct Forget<'a> {
    waiting: &'a Waiting,
    id: u64,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.waiting.forget(self.id);
    }
}

impl Transport for ClusterTransport {
    fn call(
        &self,
        node: &str,
        call: Call,
        deadline: Duration,
    ) -> BoxFuture<Result<Reply, ActorError>> {
        let peer = self.peer(node);
        let node = node.to_owned();
        let capacity = self.config.calls_in_flight_max;
        let frame_bytes_max = self.config.frame_bytes_max;
        let id = self.next_call.fetch_add(1, Ordering::Relaxed);
        let waiting = self.waiting.clone();
        Box::pin(async move {
            let unreachable = || ActorError::Stopped {
                actor: format!("node {node}"),
            };
            let _permit =
                peer.in_flight
                    .clone()
                    .try_acquire_owned()
                    .map_err(|_| ActorError::Overloaded {
                        actor: format!("node {node}"),
                        capacity,
                    })?;
            if call_size(&call) > frame_bytes_max {
                return Err(ActorError::Failed {
                    actor: format!("node {node}"),
                    reason: format!(
                        "cannot encode the call: {} bytes exceed a frame",
                        call_size(&call)
                    ),
                });
            }
            let answered = waiting.register(id, &node);
            let _forget = Forget {
                waiting: &waiting,
                id,
            };
            // Never full: the outbox holds as many calls as there are permits.
            peer.outbox
                .try_send((id, call))
                .map_err(|_| unreachable())?;
            let attempt = async {
                match tokio::time::timeout(deadline, answered).await {
                    Ok(Ok(reply)) => Ok(reply),
                    Ok(Err(_)) => Err(unreachable()),
                    Err(_) => Err(ActorError::Timeout {
                        actor: format!("node {node}"),
                        after: deadline,
                    }),
                }
            };
            // The connection broke or the node is not connected: the call may or may not
            // have run; the caller routes again with the same command id.
            peer.breaker.call(attempt).await?
        })
    }

    fn breakers(&self) -> Vec<(String, BreakerSnapshot)> {
        let peers = self.peers.lock().expect("no panics under the lock");
        let mut breakers: Vec<_> = peers
            .iter()
            .map(|(node, peer)| (node.clone(), peer.breaker.state()))
            .collect();
        breakers.sort_by(|a, b| a.0.cmp(&b.0));
        breakers
    }
}

/// Drains the calls to node `to` into frames cast to its gateway, for as long as the
/// transport runs. A frame that cannot go (not connected, the connection broke) gives up its
/// calls at once.
async fn send_calls(
    to: String,
    from: String,
    config: RemoteConfig,
    queued: mpsc::Receiver<(u64, Call)>,
    waiting: Arc<Waiting>,
) {
    let mut frames = Frames::new(queued, |(_, call)| call_size(call), &config);
    while let Some(calls) = frames.next().await {
        metrics::histogram!("tradefloor_cluster_calls_per_frame", "side" => "sent")
            .record(calls.len() as f64);
        let ids: Vec<u64> = calls.iter().map(|(id, _)| *id).collect();
        let frame = CallFrame {
            from: from.clone(),
            calls,
        };
        let sent = codec::encode_frame(&frame).ok().and_then(|bytes| {
            let gateway = remote_member::<GatewayMessage>(&gateway_group(&to))?;
            gateway.cast(GatewayMessage::Calls(bytes)).ok()
        });
        if sent.is_none() {
            tracing::debug!(node = %to, calls = ids.len(), "calls not sent: not connected");
            for id in ids {
                waiting.forget(id);
            }
        }
    }
}
