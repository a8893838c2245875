//! Remoting over ractor_cluster.
//!
//! Each node runs a ractor_cluster `NodeServer` on its cluster address, authenticated by the
//! cluster's shared secret (ractor_cluster's cookie challenge: a peer with another secret is
//! disconnected during the handshake, and we log it), and one **gateway** actor that joins
//! the process group `tradefloor.gateway.{node_id}`. ractor_cluster synchronizes process
//! groups between connected nodes, so a node reaches node `n` by an RPC to the remote
//! member of `n`'s group. The gateway serves each call on its own task, bounded by
//! [`RemoteConfig::serving_max`].
//!
//! The calling side ([`ClusterTransport`]) goes through one circuit breaker and one
//! in-flight bound per remote node. ractor_cluster drops messages when a connection breaks;
//! the caller then gets [`Error::Stopped`] and routes again with the same command (and so the
//! same command id), which entities deduplicate.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ractor::rpc::CallResult;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::node::{NodeConnectionMode, NodeServerSessionInformation};
use ractor_cluster::{NodeEventSubscription, NodeServer, NodeServerMessage, RactorClusterMessage};
use tokio::sync::Semaphore;
use tradefloor_actors::hosting::saga_host::BoxFuture;
use tradefloor_actors::routing::remote::{Call, Remoting, Reply, Transport};
use tradefloor_actors::{BreakerConfig, BreakerSnapshot, CircuitBreaker, Error as ActorError};
use tradefloor_persistence::codec;

use crate::error::Error;

/// The process-group scope of Tradefloor's gateways.
const SCOPE: &str = "tradefloor";

/// The process group of node `node_id`'s gateway.
fn gateway_group(node_id: &str) -> String {
    format!("tradefloor.gateway.{node_id}")
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
    /// The breaker in front of each remote node.
    pub breaker: BreakerConfig,
}

impl Default for RemoteConfig {
    fn default() -> Self {
        Self {
            calls_in_flight_max: 4_096,
            serving_max: 8_192,
            breaker: BreakerConfig {
                call_timeout: Duration::from_secs(30),
                ..BreakerConfig::default()
            },
        }
    }
}

/// What the gateway answers to: one call, as a frame of the binary codec
/// ([`codec::encode_frame`], bounded by [`codec::FRAME_LIMIT`]), answered as one.
#[derive(RactorClusterMessage)]
pub enum GatewayMessage {
    /// Serve a [`Call`] and answer its [`Reply`].
    #[rpc]
    Call(Vec<u8>, RpcReplyPort<Vec<u8>>),
}

/// The gateway actor: serves other nodes' calls with this node's [`Remoting`].
struct Gateway;

struct GatewayState {
    remoting: Arc<Remoting>,
    serving: Arc<Semaphore>,
    serving_max: usize,
}

impl Actor for Gateway {
    type Msg = GatewayMessage;
    type State = GatewayState;
    type Arguments = (Arc<Remoting>, usize);

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        (remoting, serving_max): Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        ractor::pg::join_scoped(
            SCOPE.to_owned(),
            gateway_group(remoting.node_id()),
            vec![myself.get_cell()],
        );
        Ok(GatewayState {
            remoting,
            serving: Arc::new(Semaphore::new(serving_max)),
            serving_max,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let GatewayMessage::Call(bytes, reply) = message;
        let Ok(permit) = state.serving.clone().try_acquire_owned() else {
            let refused: Reply = Err(ActorError::Overloaded {
                actor: format!("{}/gateway", state.remoting.node_id()),
                capacity: state.serving_max,
            });
            let _ = reply.send(encode(&refused, state.remoting.node_id()));
            return Ok(());
        };
        let remoting = state.remoting.clone();
        tokio::spawn(async move {
            let answer: Reply = match codec::decode_frame::<Call>(&bytes) {
                Ok(call) => remoting.serve(call).await,
                Err(error) => Err(ActorError::Failed {
                    actor: format!("{}/gateway", remoting.node_id()),
                    reason: format!("undecodable call: {error}"),
                }),
            };
            // The caller may have given up (deadline, broken connection): nothing to do.
            let _ = reply.send(encode(&answer, remoting.node_id()));
            drop(permit);
        });
        Ok(())
    }
}

/// The frame of `reply`; a reply that cannot be framed (larger than the frame limit) is
/// answered as the error saying so.
fn encode(reply: &Reply, node_id: &str) -> Vec<u8> {
    codec::encode_frame(reply).unwrap_or_else(|reason| {
        let failed: Reply = Err(ActorError::Failed {
            actor: format!("{node_id}/gateway"),
            reason: format!("cannot encode the answer: {reason}"),
        });
        codec::encode_frame(&failed).expect("an error with a short reason frames")
    })
}

/// One remote node as the transport sees it.
struct Peer {
    breaker: CircuitBreaker,
    in_flight: Arc<Semaphore>,
}

/// Calls to other nodes over ractor_cluster, through a breaker and an in-flight bound per
/// node (see the [module docs](self)).
pub struct ClusterTransport {
    config: RemoteConfig,
    peers: Mutex<HashMap<String, Arc<Peer>>>,
}

impl ClusterTransport {
    /// A transport with no peer yet (each gets its breaker at the first call).
    pub fn new(config: RemoteConfig) -> Self {
        Self {
            config,
            peers: Mutex::new(HashMap::new()),
        }
    }

    fn peer(&self, node: &str) -> Arc<Peer> {
        let mut peers = self.peers.lock().expect("no panics under the lock");
        peers
            .entry(node.to_owned())
            .or_insert_with(|| {
                Arc::new(Peer {
                    breaker: CircuitBreaker::new(
                        format!("cluster/node/{node}"),
                        self.config.breaker,
                    ),
                    in_flight: Arc::new(Semaphore::new(self.config.calls_in_flight_max)),
                })
            })
            .clone()
    }
}

/// The gateway of `node`, if this node is connected to it.
fn gateway_of(node: &str) -> Option<ActorRef<GatewayMessage>> {
    ractor::pg::get_scoped_members(&SCOPE.to_owned(), &gateway_group(node))
        .into_iter()
        .find(|cell| !cell.get_id().is_local())
        .map(ActorRef::from)
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
            let gateway = gateway_of(&node).ok_or_else(unreachable)?;
            let bytes = codec::encode_frame(&call).map_err(|reason| ActorError::Failed {
                actor: format!("node {node}"),
                reason: format!("cannot encode the call: {reason}"),
            })?;
            let attempt = async {
                match gateway
                    .call(|reply| GatewayMessage::Call(bytes, reply), Some(deadline))
                    .await
                {
                    Ok(CallResult::Success(answer)) => Ok(answer),
                    Ok(CallResult::Timeout) => Err(ActorError::Timeout {
                        actor: format!("node {node}"),
                        after: deadline,
                    }),
                    // The connection broke or the gateway went: the call may or may not have
                    // run; the caller routes again with the same command id.
                    Ok(CallResult::SenderError) | Err(_) => Err(unreachable()),
                }
            };
            let answer = peer.breaker.call(attempt).await??;
            codec::decode_frame::<Reply>(&answer).map_err(|reason| ActorError::Failed {
                actor: format!("node {node}"),
                reason: format!("undecodable answer: {reason}"),
            })
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

/// Logs sessions that closed before they authenticated: a peer with another secret (or
/// not a Tradefloor node at all).
struct SessionLog {
    /// The sessions that authenticated, shared with the [`Endpoint`].
    authenticated: Arc<Mutex<HashSet<u64>>>,
}

impl NodeEventSubscription for SessionLog {
    fn node_session_opened(&self, session: NodeServerSessionInformation) {
        tracing::debug!(peer = %session.peer_addr, "cluster connection opened");
    }

    fn node_session_disconnected(&self, session: NodeServerSessionInformation) {
        let was_authenticated = self
            .authenticated
            .lock()
            .expect("no panics under the lock")
            .remove(&session.node_id);
        if was_authenticated {
            tracing::warn!(peer = %session.peer_addr, "cluster connection closed");
        } else {
            tracing::warn!(
                peer = %session.peer_addr,
                "cluster connection closed before it authenticated (a different cluster secret, or a duplicate connection)"
            );
        }
    }

    fn node_session_authenicated(&self, session: NodeServerSessionInformation) {
        self.authenticated
            .lock()
            .expect("no panics under the lock")
            .insert(session.node_id);
        tracing::info!(peer = %session.peer_addr, "cluster connection authenticated");
    }
}

/// This node's endpoint in the cluster: the ractor_cluster server and the gateway.
pub struct Endpoint {
    server: ActorRef<NodeServerMessage>,
    gateway: ActorRef<GatewayMessage>,
    /// The ractor_cluster sessions that authenticated (by session id).
    authenticated: Arc<Mutex<HashSet<u64>>>,
}

impl Endpoint {
    /// Listens on `listen` for other nodes (authenticating them with `secret`) and serves
    /// their calls with `remoting`.
    pub async fn start(
        listen: SocketAddr,
        secret: &str,
        remoting: Arc<Remoting>,
        config: &RemoteConfig,
    ) -> Result<Self, Error> {
        let node_id = remoting.node_id().to_owned();
        let server = NodeServer::new(
            listen.port(),
            secret.to_owned(),
            node_id.clone(),
            listen.ip().to_string(),
            None,
            Some(NodeConnectionMode::Isolated),
        )
        .with_listen_addr(listen.ip());
        let (server, _) = Actor::spawn(None, server, ())
            .await
            .map_err(|error| Error::Remoting(format!("cluster server: {error}")))?;
        let authenticated = Arc::new(Mutex::new(HashSet::new()));
        server
            .cast(NodeServerMessage::SubscribeToEvents {
                id: "tradefloor-session-log".to_owned(),
                subscription: Box::new(SessionLog {
                    authenticated: authenticated.clone(),
                }),
            })
            .map_err(|error| Error::Remoting(error.to_string()))?;
        let (gateway, _) = Actor::spawn(None, Gateway, (remoting, config.serving_max))
            .await
            .map_err(|error| Error::Remoting(format!("gateway: {error}")))?;
        Ok(Self {
            server,
            gateway,
            authenticated,
        })
    }

    /// The peer names (node ids) this node has an authenticated connection to.
    pub async fn connected(&self) -> Result<HashSet<String>, Error> {
        let sessions = ractor::call!(self.server, NodeServerMessage::GetSessions)
            .map_err(|error| Error::Remoting(error.to_string()))?;
        let authenticated = self
            .authenticated
            .lock()
            .expect("no panics under the lock")
            .clone();
        let mut connected = HashSet::new();
        for session in sessions
            .values()
            .filter(|session| authenticated.contains(&session.node_id))
        {
            // ractor_cluster names a peer `{node name}@{host}`.
            if let Some(name) = &session.peer_name {
                let node = name.name.split('@').next().unwrap_or_default();
                connected.insert(node.to_owned());
            }
        }
        Ok(connected)
    }

    /// Dials another node's cluster address (host:port) in the background, giving up after
    /// `timeout`: an unreachable host must not hold up the caller (a heartbeat). The
    /// handshake authenticates the connection; [`connected`](Self::connected) shows it.
    pub fn dial(&self, address: &str, timeout: Duration) {
        let server = self.server.clone();
        let address = address.to_owned();
        tokio::spawn(async move {
            let attempt = ractor_cluster::client_connect(&server, address.as_str());
            match tokio::time::timeout(timeout, attempt).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::debug!(%address, %error, "not connected"),
                Err(_) => tracing::debug!(%address, ?timeout, "connection attempt timed out"),
            }
        });
    }

    /// Stops the gateway and the server (closing every connection).
    pub fn stop(&self) {
        self.gateway.stop(None);
        self.server.stop(None);
    }
}
