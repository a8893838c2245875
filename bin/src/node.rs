//! `tradefloor node`: opens the journal, serves HTTP at once (live, not ready), recovers the
//! trading application, then reports ready; on SIGINT or SIGTERM it stops taking requests,
//! lets those in flight finish and persist, and stops the actors in order.

use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use tokio::signal::unix::{SignalKind, signal};
use tradefloor_actors::Registry;
use tradefloor_actors::routing::remote::{self, Call, Remoting};
use tradefloor_actors::trading::Exchange;
use tradefloor_actors::trading::audit::AuditLog;
use tradefloor_actors::trading::sink::RunningSink;
use tradefloor_cluster::Node;
use tradefloor_cluster::remote::{ClusterTransport, Endpoint};
use tradefloor_cluster::runtime::{ClusterNode, Exit, Joining};
use tradefloor_persistence::{ClaimMode, Database, Journal, JournalClaim};

use crate::config::NodeConfig;
use crate::error::Error;
use crate::http::auth::Tokens;
use crate::http::{self, AppState, NodeIdentity};

/// How often the metrics sampler reads the actors.
pub const METRICS_SAMPLE_INTERVAL: Duration = Duration::from_secs(1);
/// How long shutdown waits for requests' calls to let go of the application.
pub const SHUTDOWN_RELEASE_WAIT: Duration = Duration::from_secs(30);

/// Runs a node until it is told to stop.
pub async fn run(config: NodeConfig) -> Result<(), Error> {
    if config.tokens.is_empty() {
        tracing::warn!(
            http = %config.http,
            "NO TOKENS CONFIGURED: every caller is an admin; serving loopback only"
        );
    }
    let metrics = match crate::metrics::install() {
        Ok(handle) => {
            tokio::spawn(crate::metrics::upkeep(handle.clone()));
            Some(handle)
        }
        Err(error) => {
            tracing::warn!(%error, "metrics disabled");
            None
        }
    };
    let journal = open_journal(&config).await?;
    // Held until the node stops: a second standalone node on this journal refuses to start.
    let claim_mode = match config.cluster.secret {
        Some(_) => ClaimMode::Shared,
        None => ClaimMode::Exclusive,
    };
    let _claim = JournalClaim::take(journal.database(), &config.node_id, claim_mode).await?;
    let registry = Registry::default();
    let listener = std::net::TcpListener::bind(config.http_addr()?)?;
    let address = listener.local_addr()?;
    let trading = config.trading.trading_config();
    let state = web::Data::new(AppState::new(
        NodeIdentity {
            node_id: config.node_id.clone(),
            http_addr: address.to_string(),
            cluster_addr: config.cluster_addr.clone(),
            shard_count: trading.entities.shard_count,
        },
        Tokens::new(config.tokens.clone()),
        config.http_limits.clone(),
        registry.clone(),
        metrics,
        AuditLog::start(
            journal.clone(),
            &config.node_id,
            &config.http_limits.audit_config(),
        )
        .await?,
        tokio::runtime::Handle::current(),
    ));
    let tls = config.tls.http()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let server = http::serve(listener, tls, state.clone())?;
    let handle = server.handle();
    let serving = tokio::spawn(server);
    // Tests and scripts read the address from this line (the port may have been 0).
    println!(
        "tradefloor node {} listening on {scheme}://{address}",
        config.node_id
    );
    tracing::info!(node_id = %config.node_id, %address, "serving; recovering the application");

    let (exchange, cluster) = match &config.cluster.secret {
        Some(secret) => {
            let http_addr = address.to_string();
            let (exchange, cluster) = join_cluster(
                &config,
                secret,
                http_addr,
                registry.clone(),
                journal.clone(),
                trading,
            )
            .await?;
            serve_node_calls(&cluster, state.clone());
            state.set_cluster(cluster.clone());
            (exchange, Some(cluster))
        }
        None => (
            Arc::new(Exchange::start_in(registry.clone(), journal.clone(), trading).await?),
            None,
        ),
    };
    let sink = start_sink(&config, &journal, &registry).await?;
    if config.rules.enabled {
        exchange.start_rules(config.rules.rule_set()).await?;
    }
    // Ready (and serving the application) once its configured services run: the rules
    // monitor refills its windows at start.
    state.set_exchange(exchange.clone());
    let retention = &config.retention;
    let archiving = (retention.horizon_seconds > 0).then(|| {
        exchange.archiver().every(
            Duration::from_secs(retention.horizon_seconds),
            Duration::from_secs(retention.every_seconds),
        )
    });
    let resumed = exchange.resume_strategies().await?;
    if resumed > 0 {
        tracing::info!(resumed, "strategies resumed");
    }
    let sampler = tokio::spawn(crate::metrics::sample(
        registry,
        exchange.clone(),
        cluster.clone(),
        METRICS_SAMPLE_INTERVAL,
    ));
    tracing::info!(node_id = %config.node_id, "ready");

    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut failure = None;
    let evicted = async {
        match &cluster {
            Some(cluster) => cluster.exited().await,
            None => std::future::pending().await,
        }
    };
    let mut leave = true;
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = interrupt.recv() => tracing::info!("SIGINT: shutting down"),
        exit = evicted => {
            leave = false;
            match exit {
                Exit::Left => tracing::info!("left the cluster: shutting down"),
                Exit::Evicted(reason) => {
                    tracing::error!(%reason, "no longer a cluster member: shutting down");
                    failure = Some(Error::NodeFailed(reason));
                }
            }
        }
        ended = serving => tracing::error!(?ended, "the HTTP server stopped on its own"),
        () = exchange.services_stopped() => {
            // Without its book feed and read models the node would answer stale reads and
            // leave maker fills unsettled until a restart: stop, and let the orchestrator
            // restart it (it recovers from the journal).
            tracing::error!("the book feed and read models gave up: shutting down");
            failure = Some(Error::NodeFailed(
                "the book feed and read models exceeded their restart intensity".to_owned(),
            ));
        }
    }
    drop(exchange);
    if let Some(cluster) = cluster {
        if leave {
            // Hand the shards to the others while still serving: calls for them go on to
            // their new owners.
            let timeout = Duration::from_millis(config.cluster.leave_timeout_ms);
            if let Err(error) = cluster.leave(timeout).await {
                tracing::warn!(%error, "left the cluster without a complete hand-off");
            }
        }
        cluster.stop();
        drop(state.take_cluster());
    }
    state.set_unready();
    http::stop(handle).await;
    if let Some(sink) = sink {
        sink.stop().await;
    }
    sampler.abort();
    if let Some(archiving) = archiving {
        archiving.abort();
    }
    // An aborted task drops its clone of the application when it is joined.
    let _ = sampler.await;
    if let Some(exchange) = state.take_exchange() {
        // Strategies first: they trade through the application, which is taken back next.
        exchange.pause_strategies().await;
        exchange.stop_rules();
        let exchange = release(exchange).await?;
        exchange.shutdown().await?;
    }
    tracing::info!("stopped");
    failure.map_or(Ok(()), Err)
}

/// Starts the log's NATS sink under a supervisor of its own (`/sink`), if configured.
async fn start_sink(
    config: &NodeConfig,
    journal: &Journal,
    registry: &Registry,
) -> Result<Option<RunningSink>, Error> {
    let Some(nats) = &config.sink.nats else {
        return Ok(None);
    };
    let sink = RunningSink::start(journal, nats.sink_config(&config.trading), registry).await?;
    tracing::info!(url = %nats.url, stream = %nats.stream, "publishing the log to NATS JetStream");
    Ok(Some(sink))
}

/// Starts the application as a cluster member: remoting (listening for the other nodes),
/// the clustered application, then the membership and shard loops.
async fn join_cluster(
    config: &NodeConfig,
    secret: &str,
    http_addr: String,
    registry: Registry,
    journal: Journal,
    trading: tradefloor_actors::trading::TradingConfig,
) -> Result<(Arc<Exchange>, Arc<ClusterNode>), Error> {
    let mut remote_config = config.cluster.remote_config();
    remote_config.guard.tls = config.tls.cluster()?;
    let transport = Arc::new(ClusterTransport::new(
        config.node_id.clone(),
        remote_config.clone(),
    ));
    let remoting = Arc::new(Remoting::new(
        config.node_id.clone(),
        trading.entities.shard_count,
        transport.clone(),
        config.cluster.remoting_config(),
    ));
    let listen = config.cluster_listen_addr()?;
    let endpoint =
        Endpoint::start(listen, secret, remoting.clone(), &transport, &remote_config).await?;
    tracing::info!(%listen, advertised = %config.cluster_advertised(), "cluster endpoint listening");
    let id_slot = tradefloor_cluster::id_slots::claim_id_slot(
        journal.database(),
        &config.node_id,
        tradefloor_actors::trading::ID_SLOTS,
    )
    .await?;
    tracing::info!(id_slot, "generated ids in this node's slot");
    let exchange = Exchange::start_clustered(
        registry,
        journal.clone(),
        trading,
        remoting.clone(),
        id_slot,
    )
    .await?;
    let cluster = ClusterNode::join(Joining {
        node: Node {
            node_id: config.node_id.clone(),
            http_addr,
            cluster_addr: config.cluster_advertised(),
        },
        seeds: config.seeds.clone(),
        config: config.cluster.runtime_config(),
        journal,
        exchange: exchange.clone(),
        remoting,
        endpoint,
    })
    .await?;
    Ok((exchange, Arc::new(cluster)))
}

/// Serves the other members' calls for this node's own part of cluster-wide views (its
/// actor tree, its metrics).
fn serve_node_calls(cluster: &ClusterNode, state: web::Data<AppState>) {
    use crate::http::routes::operations::{NODE_SERVICE, OP_ACTORS, OP_METRICS, node_tree};
    cluster.remoting().register_service(
        NODE_SERVICE,
        Arc::new(move |call: Call| {
            let state = state.clone();
            Box::pin(async move {
                let refused = |reason: String| tradefloor_actors::Error::Failed {
                    actor: NODE_SERVICE.to_owned(),
                    reason,
                };
                match call.operation.as_str() {
                    OP_ACTORS => {
                        let depth: Option<usize> = remote::decode(NODE_SERVICE, &call.body)?;
                        // JSON text: the tree's view leaves out empty fields, which the
                        // binary codec cannot.
                        let tree = serde_json::to_string(&node_tree(&state, depth))
                            .map_err(|error| refused(error.to_string()))?;
                        remote::encode(NODE_SERVICE, &tree)
                    }
                    OP_METRICS => {
                        let text = state.metrics.as_ref().map(|handle| handle.render());
                        remote::encode(NODE_SERVICE, &text.unwrap_or_default())
                    }
                    other => Err(refused(format!("no operation {other:?}"))),
                }
            })
        }),
    );
}

/// Opens (creating if needed) and migrates the journal the configuration names.
async fn open_journal(config: &NodeConfig) -> Result<Journal, Error> {
    if config.journal.is_none() {
        std::fs::create_dir_all(&config.data_dir)?;
    }
    let url = config.journal_url();
    let journal_config = config.journal_config();
    let database = Database::connect(&url, &journal_config).await?;
    tracing::info!(backend = database.backend_name(), "journal opened");
    database.migrate().await?;
    match crate::config::read_models_url(&url) {
        Some(read_models_url) => {
            let read_models = Database::connect(&read_models_url, &journal_config).await?;
            tracing::info!(url = %read_models_url, "read models in their own SQLite file");
            Ok(Journal::open_with_read_models(database, read_models, journal_config).await?)
        }
        None => Ok(Journal::open(database, journal_config).await?),
    }
}

/// Waits until no request's call holds the application any more, so it can stop.
async fn release(mut exchange: Arc<Exchange>) -> Result<Exchange, Error> {
    let deadline = tokio::time::Instant::now() + SHUTDOWN_RELEASE_WAIT;
    loop {
        match Arc::try_unwrap(exchange) {
            Ok(exchange) => return Ok(exchange),
            Err(shared) if tokio::time::Instant::now() < deadline => {
                exchange = shared;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(_) => {
                return Err(Error::Config(
                    "requests still held the application at shutdown".to_owned(),
                ));
            }
        }
    }
}
