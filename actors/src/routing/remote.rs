//! Location transparency: where each shard lives in a cluster ([`Placement`], kept up to date
//! by the cluster), how a call reaches a shard on another node (a [`Transport`]), and the one
//! routing loop every entity call goes through ([`Remoting::route`]).
//!
//! A call for shard `s` runs here when the placement says `s` is here, is sent to the owner
//! when it says another node, and waits (bounded) while `s` is moving. A call that finds the
//! shard stopped (a hand-off began) or fenced (a newer owner wrote) was not applied: it is
//! retried, with the same command and so the same command id, until the caller's deadline.
//! Entities deduplicate by command id, so a retry after a lost reply is applied once.
//!
//! A node serving a call for another node never forwards it again: if the shard is not here
//! it answers [`Error::Fenced`] and the caller routes again with its (by then newer)
//! placement, so stale tables cannot bounce a call between nodes.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;
use tradefloor_persistence::codec;

use crate::error::Error;
use crate::hosting::saga_host::BoxFuture;

/// Where a shard lives, as this node knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// This node owns it and runs it.
    Here,
    /// Another node owns it.
    Node(String),
    /// Nobody serves it right now: unassigned, or handed from one node to another.
    Moving,
}

/// Every shard's [`Location`], replaced by the cluster as ownership changes; callers waiting
/// out a hand-off are woken by each change.
pub struct Placement {
    shards: RwLock<Vec<Location>>,
    version: watch::Sender<u64>,
}

impl Placement {
    /// A placement of `shard_count` shards, all [`Location::Moving`] until the cluster says.
    pub fn new(shard_count: u32) -> Self {
        Self {
            shards: RwLock::new(vec![Location::Moving; shard_count as usize]),
            version: watch::Sender::new(0),
        }
    }

    /// The number of shards.
    pub fn shard_count(&self) -> u32 {
        let shards = self.shards.read().expect("no panics under the lock");
        u32::try_from(shards.len()).expect("shard counts fit u32")
    }

    /// Where `shard` lives.
    pub fn locate(&self, shard: u32) -> Location {
        self.shards.read().expect("no panics under the lock")[shard as usize].clone()
    }

    /// Sets where `shard` lives and wakes the callers waiting on a change.
    pub fn set(&self, shard: u32, location: Location) {
        let mut shards = self.shards.write().expect("no panics under the lock");
        if shards[shard as usize] != location {
            shards[shard as usize] = location;
            drop(shards);
            self.version.send_modify(|version| *version += 1);
        }
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }
}

/// Carries a call to another node and brings back its answer. The cluster implements it
/// (ractor_cluster with a breaker and an in-flight bound per node).
///
/// Errors: [`Error::Stopped`] when the call was not delivered (no connection to the node,
/// the connection broke before the answer); [`Error::Timeout`] when no answer came within
/// `deadline` (the call may have run); [`Error::BreakerOpen`] / [`Error::Overloaded`] from
/// the per-node breaker and bound.
pub trait Transport: Send + Sync + 'static {
    /// Sends `call` to `node` and waits up to `deadline` for its answer.
    fn call(&self, node: &str, call: Call, deadline: Duration) -> BoxFuture<Result<Reply, Error>>;

    /// The breaker in front of each node called so far, by node id (for metrics).
    fn breakers(&self) -> Vec<(String, crate::runtime::breaker::BreakerSnapshot)>;
}

/// A call to another node: which region or service, which operation, on which entity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    /// The region's path (e.g. `/trading/accounts`) or the service's name.
    pub target: String,
    /// What to do there: one of the `OP_*` names of the target.
    pub operation: String,
    /// The entity (or saga, or order) the call is about.
    pub entity_id: String,
    /// The operation's argument, e.g. the entity's command, in the binary codec.
    pub body: Vec<u8>,
    /// How long the caller still waits, in milliseconds.
    pub deadline_ms: u64,
}

/// The answer to a [`Call`]: the operation's result in the binary codec, or the error the
/// callee answered.
pub type Reply = Result<Vec<u8>, Error>;

/// Serves calls from other nodes on this node (the application installs it once started).
pub type Handler = Arc<dyn Fn(Call) -> BoxFuture<Reply> + Send + Sync>;

/// The limits of routing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemotingConfig {
    /// Calls waiting at once on this node for a shard in hand-off (or not yet started here);
    /// past it a call is refused with `Overloaded`. The bounded buffer of a hand-off.
    pub waiting_max: usize,
    /// The pause before a call that found its shard stopped or unreachable routes again,
    /// unless the placement changes sooner.
    pub retry_pause: Duration,
}

impl Default for RemotingConfig {
    fn default() -> Self {
        Self {
            waiting_max: 4_096,
            retry_pause: Duration::from_millis(25),
        }
    }
}

/// A node's part in a cluster: its placement, its transport to the others, and the handler
/// serving their calls.
pub struct Remoting {
    node_id: String,
    placement: Placement,
    transport: Arc<dyn Transport>,
    handler: OnceLock<Handler>,
    /// Handlers of other targets than the application's (e.g. the node's actor tree).
    services: RwLock<std::collections::HashMap<String, Handler>>,
    config: RemotingConfig,
    waiting: AtomicUsize,
}

impl std::fmt::Debug for Remoting {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Remoting")
            .field("node_id", &self.node_id)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Whether [`Remoting::route`] may send the call to another node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Forwarding {
    /// A call made on this node: forward it to the owner.
    Allowed,
    /// A call another node sent here: serve it here or answer `Fenced`.
    Refused,
}

impl Remoting {
    /// Node `node_id` of a cluster of `shard_count` shards, reaching the others by `transport`.
    pub fn new(
        node_id: impl Into<String>,
        shard_count: u32,
        transport: Arc<dyn Transport>,
        config: RemotingConfig,
    ) -> Self {
        Self {
            node_id: node_id.into(),
            placement: Placement::new(shard_count),
            transport,
            handler: OnceLock::new(),
            services: RwLock::new(std::collections::HashMap::new()),
            config,
            waiting: AtomicUsize::new(0),
        }
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Where the shards live, as this node knows it.
    pub fn placement(&self) -> &Placement {
        &self.placement
    }

    /// The breaker in front of each other node, by node id.
    pub fn breakers(&self) -> Vec<(String, crate::runtime::breaker::BreakerSnapshot)> {
        self.transport.breakers()
    }

    /// Calls waiting right now for a shard in hand-off.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }

    /// Installs the handler of calls from other nodes; `false` if one is installed already.
    pub fn set_handler(&self, handler: Handler) -> bool {
        self.handler.set(handler).is_ok()
    }

    /// Installs the handler of calls for `target` (other than the application's), replacing
    /// any before.
    pub fn register_service(&self, target: impl Into<String>, handler: Handler) {
        self.services
            .write()
            .expect("no panics under the lock")
            .insert(target.into(), handler);
    }

    /// Serves a call from another node: by the service registered for its target, else by
    /// the application (`Stopped` until it installed its handler).
    pub fn serve(&self, call: Call) -> BoxFuture<Reply> {
        let service = self
            .services
            .read()
            .expect("no panics under the lock")
            .get(&call.target)
            .cloned();
        if let Some(service) = service {
            return service(call);
        }
        match self.handler.get() {
            Some(handler) => handler(call),
            None => {
                let actor = format!("{}/{}", self.node_id, call.target);
                Box::pin(async move { Err(Error::Stopped { actor }) })
            }
        }
    }

    /// Runs a call for `shard` where the shard lives: `here(time left)` on this node,
    /// `forward` sent to the owner node otherwise, waiting while it moves; retried on
    /// `Stopped` and `Fenced` (nothing was applied) until `deadline`. `what` names the call in
    /// errors.
    pub(crate) async fn route<T, B, H, HF>(
        &self,
        shard: u32,
        what: &str,
        deadline: Duration,
        forwarding: Forwarding,
        mut here: H,
        forward: Forward<'_, B>,
    ) -> Result<T, Error>
    where
        T: DeserializeOwned,
        B: Serialize,
        H: FnMut(Duration) -> HF,
        HF: Future<Output = Result<T, Error>>,
    {
        // A deadline past what an Instant can hold (a caller's "forever") is a year.
        let until = Instant::now()
            .checked_add(deadline)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(365 * 24 * 3_600));
        let mut changes = self.placement.changes();
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Timeout {
                    actor: what.to_owned(),
                    after: deadline,
                });
            }
            changes.borrow_and_update();
            let attempt = match self.placement.locate(shard) {
                Location::Here => Some(here(left).await),
                Location::Node(node) if node == self.node_id => Some(here(left).await),
                Location::Node(node) => match forwarding {
                    Forwarding::Allowed => {
                        let Forward {
                            target,
                            operation,
                            entity_id,
                            body,
                        } = forward;
                        Some(
                            self.call(&node, target, operation, entity_id, body, left)
                                .await,
                        )
                    }
                    Forwarding::Refused => {
                        return Err(Error::Fenced {
                            actor: what.to_owned(),
                        });
                    }
                },
                Location::Moving => None,
            };
            match attempt {
                Some(Err(Error::Stopped { .. } | Error::Fenced { .. })) | None => {}
                Some(result) => return result,
            }
            self.wait_for_change(&mut changes, what, until).await?;
        }
    }

    /// Waits for the placement to change, or the retry pause, or `until`; `Overloaded` when
    /// [`RemotingConfig::waiting_max`] calls wait already.
    async fn wait_for_change(
        &self,
        changes: &mut watch::Receiver<u64>,
        what: &str,
        until: Instant,
    ) -> Result<(), Error> {
        let waiting = self.waiting.fetch_add(1, Ordering::AcqRel);
        let _done = Decrement(&self.waiting);
        if waiting >= self.config.waiting_max {
            return Err(Error::Overloaded {
                actor: format!("{what} (waiting for a hand-off)"),
                capacity: self.config.waiting_max,
            });
        }
        let pause = (Instant::now() + self.config.retry_pause).min(until);
        let _ = tokio::time::timeout_at(pause, changes.changed()).await;
        Ok(())
    }

    /// Sends `operation` on `entity_id` to `target` on `node`, with `body`, and decodes the
    /// answer (one attempt: no routing, no retry).
    pub async fn call<T: DeserializeOwned>(
        &self,
        node: &str,
        target: &str,
        operation: &str,
        entity_id: &str,
        body: &impl Serialize,
        deadline: Duration,
    ) -> Result<T, Error> {
        let call = Call {
            target: target.to_owned(),
            operation: operation.to_owned(),
            entity_id: entity_id.to_owned(),
            body: encode(target, body)?,
            deadline_ms: u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX),
        };
        let bytes = self.transport.call(node, call, deadline).await??;
        decode(target, &bytes)
    }
}

/// A routed call as sent to the owner node: the [`Call`] it becomes.
pub(crate) struct Forward<'a, B> {
    /// [`Call::target`].
    pub(crate) target: &'a str,
    /// [`Call::operation`].
    pub(crate) operation: &'a str,
    /// [`Call::entity_id`].
    pub(crate) entity_id: &'a str,
    /// [`Call::body`], encoded.
    pub(crate) body: &'a B,
}

impl<B> Clone for Forward<'_, B> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<B> Copy for Forward<'_, B> {}

/// Decrements a counter when dropped.
struct Decrement<'a>(&'a AtomicUsize);

impl Drop for Decrement<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Encodes a call's body or answer, in the binary codec of [`tradefloor_persistence::codec`]
/// (bounded by its frame limit).
pub fn encode(what: &str, value: &impl Serialize) -> Result<Vec<u8>, Error> {
    codec::encode_frame(value).map_err(|error| Error::Failed {
        actor: what.to_owned(),
        reason: format!("cannot encode for a remote call: {error}"),
    })
}

/// Decodes a call's body or answer (bounded by the codec's frame limit: bad bytes are an
/// error, never a panic or a huge allocation).
pub fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, Error> {
    codec::decode_frame(bytes).map_err(|error| Error::Failed {
        actor: what.to_owned(),
        reason: format!("cannot decode a remote call: {error}"),
    })
}

/// A call's deadline as the callee keeps it: what the caller said, at most `own`.
pub(crate) fn deadline_of(call: &Call, own: Duration) -> Duration {
    Duration::from_millis(call.deadline_ms).min(own)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;

    use super::*;

    /// A transport that answers every call with the node's name (the routing loop's unit
    /// tests; the real transport runs in the cluster's system tests).
    struct Echo;

    impl Transport for Echo {
        fn call(&self, node: &str, _: Call, _: Duration) -> BoxFuture<Result<Reply, Error>> {
            let node = node.to_owned();
            Box::pin(async move { Ok(encode("echo", &node)) })
        }

        fn breakers(&self) -> Vec<(String, crate::runtime::breaker::BreakerSnapshot)> {
            Vec::new()
        }
    }

    fn remoting(waiting_max: usize) -> Remoting {
        let config = RemotingConfig {
            waiting_max,
            ..RemotingConfig::default()
        };
        Remoting::new("n1", 4, Arc::new(Echo), config)
    }

    const FORWARD: Forward<'static, ()> = Forward {
        target: "/region",
        operation: "ask",
        entity_id: "e",
        body: &(),
    };

    #[tokio::test]
    async fn a_call_runs_here_or_goes_to_the_owner() {
        let remoting = remoting(8);
        remoting.placement().set(0, Location::Here);
        remoting.placement().set(1, Location::Node("n2".to_owned()));
        let here = |_| async { Ok("here".to_owned()) };
        let at = |shard| {
            remoting.route(
                shard,
                "e",
                Duration::MAX,
                Forwarding::Allowed,
                here,
                FORWARD,
            )
        };
        assert_eq!(at(0).await.unwrap(), "here");
        assert_eq!(at(1).await.unwrap(), "n2");
        // A call served for another node is not forwarded again.
        let served = remoting
            .route(
                1,
                "e",
                Duration::from_secs(1),
                Forwarding::Refused,
                here,
                FORWARD,
            )
            .await;
        assert!(matches!(served, Err(Error::Fenced { .. })), "{served:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_stopped_shard_is_retried_until_it_serves_or_the_deadline() {
        let remoting = Arc::new(remoting(8));
        remoting.placement().set(0, Location::Here);
        let attempts = AtomicU32::new(0);
        let here = |_| {
            let attempt = attempts.fetch_add(1, Ordering::AcqRel);
            async move {
                match attempt {
                    0..3 => Err(Error::Stopped {
                        actor: "s".to_owned(),
                    }),
                    _ => Ok(attempt),
                }
            }
        };
        let served = remoting
            .route(
                0,
                "e",
                Duration::from_secs(5),
                Forwarding::Allowed,
                here,
                FORWARD,
            )
            .await;
        assert_eq!(served.unwrap(), 3, "retried after each refusal");

        remoting.placement().set(1, Location::Moving);
        let started = Instant::now();
        let never = |_| async { Ok(0_u32) };
        let waited = remoting
            .route(
                1,
                "e",
                Duration::from_secs(2),
                Forwarding::Allowed,
                never,
                FORWARD,
            )
            .await;
        assert!(matches!(waited, Err(Error::Timeout { .. })), "{waited:?}");
        assert!(started.elapsed() >= Duration::from_secs(2));
        assert_eq!(remoting.waiting(), 0, "nothing waits after the call");

        // A shard arriving here mid-wait serves the waiting call.
        let arriving = remoting.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            arriving.placement().set(1, Location::Here);
        });
        let arrived = remoting
            .route(
                1,
                "e",
                Duration::from_secs(5),
                Forwarding::Allowed,
                never,
                FORWARD,
            )
            .await;
        assert_eq!(arrived.unwrap(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_for_a_hand_off_is_bounded() {
        let remoting = Arc::new(remoting(1));
        remoting.placement().set(0, Location::Moving);
        let first = {
            let remoting = remoting.clone();
            tokio::spawn(async move {
                let never = |_| async { Ok(0_u32) };
                remoting
                    .route(
                        0,
                        "e",
                        Duration::from_secs(5),
                        Forwarding::Allowed,
                        never,
                        FORWARD,
                    )
                    .await
            })
        };
        while remoting.waiting() == 0 {
            tokio::task::yield_now().await;
        }
        let never = |_| async { Ok(0_u32) };
        let second = remoting
            .route(
                0,
                "e",
                Duration::from_secs(5),
                Forwarding::Allowed,
                never,
                FORWARD,
            )
            .await;
        assert!(
            matches!(second, Err(Error::Overloaded { capacity: 1, .. })),
            "{second:?}"
        );
        remoting.placement().set(0, Location::Here);
        assert_eq!(first.await.unwrap().unwrap(), 0);
    }
}
