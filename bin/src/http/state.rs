//! What every handler shares: the trading application (once recovered), the actor tree, the
//! tokens, the metrics and the node's identity.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::runtime::Handle;
use tokio::sync::Semaphore;
use tracing::Instrument;
use tradefloor_actors::Registry;
use tradefloor_actors::trading::Exchange;
use tradefloor_actors::trading::audit::AuditLog;
use tradefloor_cluster::runtime::ClusterNode;

use super::auth::Tokens;
use super::error::ApiError;
use crate::config::HttpLimits;

/// The node as the cluster routes name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeIdentity {
    /// Its id.
    pub node_id: String,
    /// Its HTTP address.
    pub http_addr: String,
    /// Its cluster address.
    pub cluster_addr: String,
    /// Shards per region.
    pub shard_count: u32,
}

/// The state behind every route.
pub struct AppState {
    /// Who this node is.
    pub identity: NodeIdentity,
    /// The bearer tokens.
    pub tokens: Tokens,
    /// The HTTP limits.
    pub limits: HttpLimits,
    /// The node's actor tree.
    pub registry: Registry,
    /// The Prometheus exposition, if metrics are installed.
    pub metrics: Option<PrometheusHandle>,
    /// Permits for requests in flight ([`HttpLimits::requests_in_flight_max`]).
    pub in_flight: Arc<Semaphore>,
    /// Permits for SSE connections following the log ([`HttpLimits::log_streams_max`]).
    pub log_streams: Arc<Semaphore>,
    /// Who sent every command, and who was denied.
    pub audit: AuditLog,
    /// The trading application, set once it has recovered and taken back at shutdown.
    exchange: RwLock<Option<Arc<Exchange>>>,
    /// This node's cluster membership, when the node is part of a cluster.
    cluster: RwLock<Option<Arc<ClusterNode>>>,
    /// Whether the node takes commands (recovered and not shutting down).
    ready: AtomicBool,
    /// The runtime the actors run on: handlers run on the HTTP workers' own runtimes and hand
    /// their calls over to it, so database sockets stay on the runtime that opened them.
    runtime: Handle,
}

impl AppState {
    /// A state without the application yet (it is [`set_exchange`](Self::set_exchange)d
    /// once recovered).
    pub fn new(
        identity: NodeIdentity,
        tokens: Tokens,
        limits: HttpLimits,
        registry: Registry,
        metrics: Option<PrometheusHandle>,
        audit: AuditLog,
        runtime: Handle,
    ) -> Self {
        Self {
            identity,
            tokens,
            audit,
            in_flight: Arc::new(Semaphore::new(limits.requests_in_flight_max)),
            log_streams: Arc::new(Semaphore::new(limits.log_streams_max)),
            limits,
            registry,
            metrics,
            exchange: RwLock::new(None),
            cluster: RwLock::new(None),
            ready: AtomicBool::new(false),
            runtime,
        }
    }

    /// Installs the recovered application and marks the node ready.
    pub fn set_exchange(&self, exchange: Arc<Exchange>) {
        let mut slot = self
            .exchange
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        assert!(slot.is_none(), "the application is installed once");
        *slot = Some(exchange);
        self.ready.store(true, Ordering::Release);
    }

    /// Installs the node's cluster membership (before the application, so a ready node is
    /// a member).
    pub fn set_cluster(&self, cluster: Arc<ClusterNode>) {
        *self.cluster.write().unwrap_or_else(PoisonError::into_inner) = Some(cluster);
    }

    /// The node's cluster membership, if it is part of a cluster.
    pub fn cluster(&self) -> Option<Arc<ClusterNode>> {
        self.cluster
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Takes the cluster membership back (shutdown).
    pub fn take_cluster(&self) -> Option<Arc<ClusterNode>> {
        self.cluster
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// Takes the application back (shutdown): the node is no longer ready.
    pub fn take_exchange(&self) -> Option<Arc<Exchange>> {
        self.set_unready();
        self.exchange
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// Stops taking commands (shutdown); reads of health still answer.
    pub fn set_unready(&self) {
        self.ready.store(false, Ordering::Release);
    }

    /// Whether the node takes commands.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// The application, or 503 `not_ready` (recovering, stopping, or its book feed and read
    /// models stopped).
    pub fn exchange(&self) -> Result<Arc<Exchange>, ApiError> {
        if !self.is_ready() {
            return Err(ApiError::not_ready());
        }
        self.exchange_if_started()
            .filter(|exchange| exchange.services_running())
            .ok_or_else(ApiError::not_ready)
    }

    /// The application even while shutting down (for the actor tree and metrics).
    pub fn exchange_if_started(&self) -> Option<Arc<Exchange>> {
        self.exchange
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Runs `task` on the actors' runtime, in the background (a stream's forwarder).
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        drop(self.spawn_handle(task));
    }

    /// [`AppState::spawn`], with the task's handle (to abort it).
    pub fn spawn_handle(
        &self,
        task: impl Future<Output = ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        self.runtime.spawn(task)
    }

    /// Runs `call` with the application on the actors' runtime and waits for its answer.
    pub async fn call<F, Fut, T>(&self, call: F) -> Result<T, ApiError>
    where
        F: FnOnce(Arc<Exchange>) -> Fut,
        Fut: Future<Output = Result<T, ApiError>> + Send + 'static,
        T: Send + 'static,
    {
        let exchange = self.exchange()?;
        // The request's span (command id, actor path) follows the call onto the actors'
        // runtime, so every line logged about the command carries them.
        let future = call(exchange).instrument(tracing::Span::current());
        match self.runtime.spawn(future).await {
            Ok(answer) => answer,
            Err(error) => {
                tracing::error!(%error, "a request's task failed");
                Err(ApiError::new(
                    actix_web::http::StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the request's task failed",
                ))
            }
        }
    }
}

/// The span of one command: every line logged while handling it names the command and the
/// actor it goes to.
pub fn command_span(command_id: &str, actor: &str) -> tracing::Span {
    tracing::info_span!("command", command_id, actor)
}
