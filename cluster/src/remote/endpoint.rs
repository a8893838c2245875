//! This node's endpoint in the cluster: the ractor_cluster server behind the cluster port's
//! [guard](super::guard), the gateway and the inbox, and the log of sessions (which also gives
//! up the calls of a connection that broke).

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ractor::{Actor, ActorRef};
use ractor_cluster::node::{NodeConnectionMode, NodeServerSessionInformation};
use ractor_cluster::{
    IncomingEncryptionMode, NodeEventSubscription, NodeServer, NodeServerMessage,
};
use tradefloor_actors::routing::remote::Remoting;

use super::gateway::{Gateway, GatewayMessage};
use super::guard::{self, GuardConfig};
use super::inbox::{Inbox, InboxMessage, Waiting};
use super::{ClusterTransport, RemoteConfig};
use crate::error::Error;

/// The node id in a peer's name, which ractor_cluster makes `{node id}@{host}`.
fn node_of(peer_name: &str) -> &str {
    peer_name.split('@').next().unwrap_or_default()
}

/// Logs sessions that closed before they authenticated: a peer with another secret (or
/// not a Tradefloor node at all).
struct SessionLog {
    /// The sessions that authenticated, shared with the [`Endpoint`].
    authenticated: Arc<Mutex<HashSet<u64>>>,
    /// The calls waiting for answers: those to a node whose connection closed are given up.
    waiting: Arc<Waiting>,
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
            let node = session.peer_name.as_ref().map(|name| node_of(&name.name));
            let given_up = node.map_or(0, |node| self.waiting.fail_node(node));
            tracing::warn!(peer = %session.peer_addr, ?node, given_up, "cluster connection closed");
        } else {
            tracing::warn!(
                peer = %session.peer_addr,
                "cluster connection closed before it authenticated (a different cluster secret, or a duplicate connection)"
            );
        }
    }

    fn node_session_authenticated(&self, session: NodeServerSessionInformation) {
        self.authenticated
            .lock()
            .expect("no panics under the lock")
            .insert(session.node_id);
        tracing::info!(peer = %session.peer_addr, "cluster connection authenticated");
    }
}

/// This node's endpoint in the cluster: the ractor_cluster server, the gateway and the inbox.
pub struct Endpoint {
    server: ActorRef<NodeServerMessage>,
    gateway: ActorRef<GatewayMessage>,
    inbox: ActorRef<InboxMessage>,
    /// The ractor_cluster sessions that authenticated (by session id).
    authenticated: Arc<Mutex<HashSet<u64>>>,
    /// The cluster port's accept loop.
    accepting: tokio::task::JoinHandle<()>,
    guard: GuardConfig,
}

impl Endpoint {
    /// Listens on `listen` for other nodes (authenticating them with `secret`), serves their
    /// calls with `remoting` and takes the answers to `transport`'s calls.
    pub async fn start(
        listen: SocketAddr,
        secret: &str,
        remoting: Arc<Remoting>,
        transport: &ClusterTransport,
        config: &RemoteConfig,
    ) -> Result<Self, Error> {
        let node_id = remoting.node_id().to_owned();
        let port = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|error| Error::Remoting(format!("cluster port {listen}: {error}")))?;
        // ractor_cluster always opens a listener of its own, on a loopback port nobody is
        // told of; every connection goes through the guard on `listen` instead, so that
        // listener is sealed: a TLS acceptor without a certificate fails every handshake
        // before a byte reaches ractor_cluster.
        let server = NodeServer::new(
            0,
            secret.to_owned(),
            node_id.clone(),
            listen.ip().to_string(),
            Some(IncomingEncryptionMode::Tls(crate::tls::sealed())),
            Some(NodeConnectionMode::Isolated),
        )
        .with_listen_addr(Ipv4Addr::LOCALHOST.into())
        .with_max_inbound_frame_size(config.guard.frame_bytes_max);
        let (server, _) = Actor::spawn(None, server, ())
            .await
            .map_err(|error| Error::Remoting(format!("cluster server: {error}")))?;
        let accepting = tokio::spawn(guard::accept(port, server.clone(), config.guard.clone()));
        let authenticated = Arc::new(Mutex::new(HashSet::new()));
        server
            .cast(NodeServerMessage::SubscribeToEvents {
                id: "tradefloor-session-log".to_owned(),
                subscription: Box::new(SessionLog {
                    authenticated: authenticated.clone(),
                    waiting: transport.waiting(),
                }),
            })
            .map_err(|error| Error::Remoting(error.to_string()))?;
        let (inbox, _) = Actor::spawn(
            None,
            Inbox,
            (transport.node_id().to_owned(), transport.waiting()),
        )
        .await
        .map_err(|error| Error::Remoting(format!("inbox: {error}")))?;
        let (gateway, _) = Actor::spawn(None, Gateway, (remoting, config.clone()))
            .await
            .map_err(|error| Error::Remoting(format!("gateway: {error}")))?;
        Ok(Self {
            server,
            gateway,
            inbox,
            authenticated,
            accepting,
            guard: config.guard.clone(),
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
            if let Some(name) = &session.peer_name {
                connected.insert(node_of(&name.name).to_owned());
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
        let config = self.guard.clone();
        tokio::spawn(async move {
            let attempt = guard::dial(&server, address.as_str(), &config);
            match tokio::time::timeout(timeout, attempt).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::debug!(%address, %error, "not connected"),
                Err(_) => tracing::debug!(%address, ?timeout, "connection attempt timed out"),
            }
        });
    }

    /// Stops the gateway, the inbox and the server (closing every connection).
    pub fn stop(&self) {
        self.accepting.abort();
        self.gateway.stop(None);
        self.inbox.stop(None);
        self.server.stop(None);
    }
}
