//! The node's configuration: defaults, then a TOML file, then `TRADEFLOOR_*` environment
//! variables, then command-line flags, each overriding the one before (through the `config`
//! crate). Every limit is a named field with its default here.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use tradefloor_actors::hosting::dead_letter_table::DeadLetterPolicy;
use tradefloor_actors::trading::TradingConfig;
use tradefloor_actors::trading::sink::NatsSinkConfig;
use tradefloor_persistence::JournalConfig;

use crate::cli::NodeArgs;
use crate::error::Error;

/// Variables with the `TRADEFLOOR_` prefix that belong to `ctl` and `bench`, not the node.
const CLIENT_VARIABLES: [&str; 3] = ["TRADEFLOOR_NODE", "TRADEFLOOR_TOKEN", "TRADEFLOOR_CA"];

/// Everything a node is told at start.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// This node's id, unique in the cluster.
    pub node_id: String,
    /// The HTTP address to listen on.
    pub http: String,
    /// The cluster address to listen on.
    pub cluster_addr: String,
    /// Cluster addresses to join through.
    pub seeds: Vec<String>,
    /// `postgres://…` or `sqlite:<file>`; `None`: SQLite in `data_dir`.
    pub journal: Option<String>,
    /// Where the embedded SQLite journal lives.
    pub data_dir: PathBuf,
    /// `text` for a terminal, `json` for a log collector.
    pub log_format: LogFormat,
    /// Which logs to keep, in `tracing_subscriber`'s `EnvFilter` syntax (`RUST_LOG` wins).
    pub log_filter: String,
    /// Bearer tokens and their roles. None: the node serves loopback only.
    pub tokens: Vec<TokenConfig>,
    /// Limits of the HTTP endpoint.
    pub http_limits: HttpLimits,
    /// Limits of the trading application.
    pub trading: TradingLimits,
    /// Limits of the journal.
    pub journal_limits: JournalLimits,
    /// Clustering: on when a secret is set.
    pub cluster: ClusterSettings,
    /// TLS for the HTTP and cluster ports; off unless certificate files are set.
    pub tls: TlsSettings,
    /// Where the log is published besides the journal; off unless a sink is set.
    pub sink: SinkSettings,
    /// Pattern rules over the log; off unless enabled.
    pub rules: RulesSettings,
    /// Retention: the archive of old events (`docs/retention.md`).
    pub retention: RetentionSettings,
}

/// `[retention]`: events older than a horizon, once a snapshot covers them, moved to
/// compressed archive files (`docs/retention.md`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionSettings {
    /// Where archive files go; `None`: `{data_dir}/archive`. Every node of a cluster must see
    /// the same directory (shared storage).
    pub archive_dir: Option<PathBuf>,
    /// Archive what is older than this, every `every_seconds`; 0: only when an operator asks
    /// (`ctl archive`).
    pub horizon_seconds: u64,
    /// How often the node archives, once a horizon is set.
    pub every_seconds: u64,
    /// Most events per zstd frame (a read of one archived event decompresses its frame).
    pub frame_events_max: usize,
    /// Most events per file (one file, one transaction moving its events).
    pub file_events_max: usize,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        let defaults = JournalConfig::default();
        Self {
            archive_dir: None,
            horizon_seconds: 0,
            every_seconds: 3_600,
            frame_events_max: defaults.archive_frame_events_max,
            file_events_max: defaults.archive_file_events_max,
        }
    }
}

/// `[rules]`: the pattern rules' monitor (`docs/rules.md`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RulesSettings {
    /// Run the monitor (a standalone node only).
    pub enabled: bool,
    /// Start with the five shipped rules (before those of `rules`).
    pub shipped: bool,
    /// Rules of one's own: `[[rules.rules]]` with `name`, `kind` and its fields.
    pub rules: Vec<tradefloor_domain::rules::Rule>,
    /// Account → owner, for the wash-trade rule.
    pub owners: std::collections::BTreeMap<String, String>,
}

impl RulesSettings {
    /// The rule set these settings describe.
    pub fn rule_set(&self) -> tradefloor_domain::rules::RuleSet {
        let mut rules = if self.shipped {
            tradefloor_domain::rules::RuleSet::shipped().rules
        } else {
            Vec::new()
        };
        rules.extend(self.rules.iter().cloned());
        tradefloor_domain::rules::RuleSet {
            rules,
            owners: self.owners.clone(),
        }
    }
}

/// The log's sinks.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SinkSettings {
    /// NATS JetStream (`[sink.nats]`).
    pub nats: Option<NatsSinkSettings>,
}

/// `[sink.nats]`: every event of the log, once, to a JetStream stream.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsSinkSettings {
    /// The server, e.g. `nats://127.0.0.1:4222`.
    pub url: String,
    /// The JetStream stream (created if missing).
    pub stream: String,
    /// Subjects are `{subject_prefix}.{event name}.{entity}`.
    pub subject_prefix: String,
    /// Most events per published batch (one offset commit each).
    pub batch_events_max: usize,
    /// How long JetStream drops a repeated message id.
    pub duplicate_window_seconds: u64,
    /// The pause before connecting again after a failure.
    pub retry_interval_ms: u64,
}

impl Default for NatsSinkSettings {
    fn default() -> Self {
        let defaults = NatsSinkConfig::default();
        Self {
            url: defaults.url,
            stream: defaults.stream,
            subject_prefix: defaults.subject_prefix,
            batch_events_max: defaults.batch_events_max,
            duplicate_window_seconds: defaults.duplicate_window.as_secs(),
            retry_interval_ms: millis(defaults.retry_interval),
        }
    }
}

impl NatsSinkSettings {
    /// The sink's configuration, reading the log as often as the read models do.
    pub fn sink_config(&self, trading: &TradingLimits) -> NatsSinkConfig {
        NatsSinkConfig {
            url: self.url.clone(),
            stream: self.stream.clone(),
            subject_prefix: self.subject_prefix.clone(),
            batch_events_max: self.batch_events_max,
            duplicate_window: Duration::from_secs(self.duplicate_window_seconds),
            retry_interval: Duration::from_millis(self.retry_interval_ms),
            poll_interval: Duration::from_millis(trading.projection_poll_interval_ms),
            batch_interval_min: Duration::from_millis(trading.log_batch_interval_min_ms),
            ..NatsSinkConfig::default()
        }
    }
}

/// TLS from PEM files. The HTTP port serves TLS when `http_cert` and `http_key` are set; the
/// cluster port speaks mutual TLS when `cluster_cert`, `cluster_key` and `cluster_ca` are
/// set (every node's certificate issued by that CA and naming the host it is dialled by).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSettings {
    /// The HTTP port's certificate chain.
    pub http_cert: Option<PathBuf>,
    /// The HTTP port's private key.
    pub http_key: Option<PathBuf>,
    /// This node's certificate chain on the cluster port (server and client).
    pub cluster_cert: Option<PathBuf>,
    /// Its private key.
    pub cluster_key: Option<PathBuf>,
    /// The cluster's CA: peers' certificates must chain to it.
    pub cluster_ca: Option<PathBuf>,
}

impl TlsSettings {
    /// The HTTP port's TLS configuration, if set; a missing or bad file is refused.
    pub fn http(&self) -> Result<Option<std::sync::Arc<rustls::ServerConfig>>, Error> {
        let (Some(cert), Some(key)) = (&self.http_cert, &self.http_key) else {
            return Ok(None);
        };
        let identity = tradefloor_cluster::tls::Identity {
            cert: cert.clone(),
            key: key.clone(),
        };
        let config = tradefloor_cluster::tls::server_config(&identity, None)
            .map_err(|error| Error::Config(format!("tls.http: {error}")))?;
        Ok(Some(config))
    }

    /// The cluster port's mutual TLS, if set; a missing or bad file is refused.
    pub fn cluster(&self) -> Result<Option<tradefloor_cluster::tls::ClusterTls>, Error> {
        let (Some(cert), Some(key), Some(ca)) =
            (&self.cluster_cert, &self.cluster_key, &self.cluster_ca)
        else {
            return Ok(None);
        };
        let identity = tradefloor_cluster::tls::Identity {
            cert: cert.clone(),
            key: key.clone(),
        };
        let tls = tradefloor_cluster::tls::ClusterTls::load(identity, ca.clone())
            .map_err(|error| Error::Config(format!("tls.cluster: {error}")))?;
        Ok(Some(tls))
    }

    /// Refuses half a configuration: a certificate without its key, or mutual TLS without
    /// its CA, would otherwise silently serve plain text.
    fn validate(&self) -> Result<(), Error> {
        if self.http_cert.is_some() != self.http_key.is_some() {
            return Err(Error::Config(
                "tls.http_cert and tls.http_key are set together or not at all".to_owned(),
            ));
        }
        let cluster = [&self.cluster_cert, &self.cluster_key, &self.cluster_ca];
        let set = cluster.iter().filter(|path| path.is_some()).count();
        if set != 0 && set != cluster.len() {
            return Err(Error::Config(
                "tls.cluster_cert, tls.cluster_key and tls.cluster_ca are set together or not \
                 at all"
                    .to_owned(),
            ));
        }
        self.http()?;
        self.cluster()?;
        Ok(())
    }
}

/// How the node takes part in a cluster (DESIGN §4). Without a secret the node is a cluster
/// of its own and the other settings are unused.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSettings {
    /// The cluster's shared secret (at least 16 characters): nodes with another secret are
    /// refused at the handshake. Setting it makes the node a cluster member.
    pub secret: Option<String>,
    /// The cluster address the other nodes dial (default: `cluster_addr`), e.g. a DNS name
    /// or a proxy in front of this node.
    pub advertise: Option<String>,
    /// How often the node heartbeats (and the leaders renew their leases).
    pub heartbeat_interval_ms: u64,
    /// How long a silent node lives on before it is declared down.
    pub failure_timeout_ms: u64,
    /// A leader lease's term.
    pub lease_duration_ms: u64,
    /// How often the coordinator plans and every node reconciles its shards.
    pub reconcile_interval_ms: u64,
    /// Shard hand-offs in flight at once over the cluster.
    pub moves_max: usize,
    /// Calls in flight from this node to one other node before `Overloaded`.
    pub calls_in_flight_max: usize,
    /// Calls from other nodes served at once before `Overloaded`.
    pub serving_max: usize,
    /// Calls waiting on this node for a shard in hand-off before `Overloaded`.
    pub handoff_waiting_max: usize,
    /// How long a leaving node waits for its shards to be handed off.
    pub leave_timeout_ms: u64,
    /// How long a connection to the cluster port may take to authenticate.
    pub handshake_timeout_ms: u64,
    /// Connections to the cluster port that have not authenticated yet, at most.
    pub unauthenticated_connections_max: usize,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        let cluster = tradefloor_cluster::runtime::RuntimeConfig::default();
        let remote = tradefloor_cluster::remote::RemoteConfig::default();
        let millis = |duration: Duration| u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        Self {
            secret: None,
            advertise: None,
            heartbeat_interval_ms: millis(cluster.cluster.heartbeat_interval),
            failure_timeout_ms: millis(cluster.cluster.failure_timeout),
            lease_duration_ms: millis(cluster.cluster.lease_duration),
            reconcile_interval_ms: millis(cluster.reconcile_interval),
            moves_max: cluster.moves_max,
            calls_in_flight_max: remote.calls_in_flight_max,
            serving_max: remote.serving_max,
            handoff_waiting_max: tradefloor_actors::routing::remote::RemotingConfig::default()
                .waiting_max,
            leave_timeout_ms: 20_000,
            handshake_timeout_ms: millis(remote.guard.handshake_timeout),
            unauthenticated_connections_max: remote.guard.unauthenticated_max,
        }
    }
}

impl ClusterSettings {
    /// The cluster loops' limits.
    pub fn runtime_config(&self) -> tradefloor_cluster::runtime::RuntimeConfig {
        tradefloor_cluster::runtime::RuntimeConfig {
            cluster: tradefloor_cluster::ClusterConfig {
                heartbeat_interval: Duration::from_millis(self.heartbeat_interval_ms),
                failure_timeout: Duration::from_millis(self.failure_timeout_ms),
                lease_duration: Duration::from_millis(self.lease_duration_ms),
            },
            reconcile_interval: Duration::from_millis(self.reconcile_interval_ms),
            moves_max: self.moves_max,
        }
    }

    /// Remoting's limits.
    pub fn remote_config(&self) -> tradefloor_cluster::remote::RemoteConfig {
        tradefloor_cluster::remote::RemoteConfig {
            calls_in_flight_max: self.calls_in_flight_max,
            serving_max: self.serving_max,
            guard: tradefloor_cluster::remote::GuardConfig {
                handshake_timeout: Duration::from_millis(self.handshake_timeout_ms),
                unauthenticated_max: self.unauthenticated_connections_max,
                ..tradefloor_cluster::remote::GuardConfig::default()
            },
            ..tradefloor_cluster::remote::RemoteConfig::default()
        }
    }

    /// Routing's limits.
    pub fn remoting_config(&self) -> tradefloor_actors::routing::remote::RemotingConfig {
        tradefloor_actors::routing::remote::RemotingConfig {
            waiting_max: self.handoff_waiting_max,
            ..tradefloor_actors::routing::remote::RemotingConfig::default()
        }
    }
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            node_id: "n1".to_owned(),
            http: "127.0.0.1:8080".to_owned(),
            cluster_addr: "127.0.0.1:9080".to_owned(),
            seeds: Vec::new(),
            journal: None,
            data_dir: PathBuf::from("./data"),
            log_format: LogFormat::Text,
            log_filter: "info".to_owned(),
            tokens: Vec::new(),
            http_limits: HttpLimits::default(),
            trading: TradingLimits::default(),
            journal_limits: JournalLimits::default(),
            cluster: ClusterSettings::default(),
            tls: TlsSettings::default(),
            sink: SinkSettings::default(),
            rules: RulesSettings::default(),
            retention: RetentionSettings::default(),
        }
    }
}

/// How logs are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// A role a token grants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, including market listing and the cluster routes.
    Admin,
    /// The funding system: deposits into and withdrawals from any account, and reading
    /// accounts; no orders, no admin routes.
    Funding,
    /// Orders, cancels, withdrawals and reads on the accounts listed with the token; no
    /// deposits (money comes in through the funding system).
    Trader,
    /// An external market-data feed: publishes quotes of reference symbols
    /// (`POST /v1/markets/{symbol}/quotes`) and reads public market data; nothing else.
    Feed,
}

/// One bearer token. Its `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// The secret the client sends as `Authorization: Bearer <token>`.
    pub token: String,
    /// What it may do.
    pub role: Role,
    /// The accounts a trader acts on (none for admins and funding, which act on every one).
    #[serde(default)]
    pub accounts: Vec<String>,
    /// Requests a second this token may make (a second's worth at once); past it, 429 with
    /// `Retry-After`. None: no limit but the node's.
    #[serde(default)]
    pub requests_per_second: Option<u32>,
    /// Who holds it, as the audit log names the caller (default: `<role>-<position>`, e.g.
    /// `trader-3` for the third token).
    #[serde(default)]
    pub name: Option<String>,
}

/// Longest token name.
pub const TOKEN_NAME_CHARS_MAX: usize = 64;

impl fmt::Debug for TokenConfig {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("TokenConfig")
            .field("token", &"<redacted>")
            .field("role", &self.role)
            .field("accounts", &self.accounts)
            .field("requests_per_second", &self.requests_per_second)
            .field("name", &self.name)
            .finish()
    }
}

/// Bounds of the HTTP endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpLimits {
    /// Largest request body, in bytes (413 above).
    pub body_bytes_max: usize,
    /// Requests handled at once; more are shed with 429 at once. It bounds the queueing
    /// delay: a node placing ~800 orders/s answers 1 024 queued requests within ~1.3 s.
    pub requests_in_flight_max: usize,
    /// How long a request may take before it is answered 503 `timeout`, in milliseconds.
    pub request_deadline_ms: u64,
    /// How long a client may take to send its request head, in milliseconds (408 after).
    pub client_request_timeout_ms: u64,
    /// Open connections per worker.
    pub connections_per_worker_max: usize,
    /// Idle keep-alive, in seconds.
    pub keep_alive_seconds: u64,
    /// The `Retry-After` sent with 429 and 503, in seconds.
    pub retry_after_seconds: u64,
    /// HTTP worker threads (default: one per core).
    pub workers: Option<usize>,
    /// How long shutdown waits for in-flight requests, in seconds.
    pub shutdown_timeout_seconds: u64,
    /// Audit rows waiting to be written; past it they are dropped (and counted).
    pub audit_queue_max: usize,
    /// Audit rows written in one transaction, at most.
    pub audit_batch_max: usize,
    /// Audit rows are written at most this often, in milliseconds.
    pub audit_flush_interval_ms: u64,
    /// Messages buffered per stream connection (SSE or WebSocket) for a client that reads
    /// slowly; a client further behind is disconnected with the reason.
    pub stream_buffer_messages: usize,
    /// A stream connection with nothing to say sends a keep-alive this often, in seconds
    /// (an SSE comment; a WebSocket ping, answered with a pong within twice this or closed).
    pub stream_keepalive_seconds: u64,
    /// Topics one WebSocket connection may follow at once.
    pub ws_subscriptions_max: usize,
    /// Largest WebSocket message a client may send, in bytes.
    pub ws_message_bytes_max: usize,
    /// SSE connections following the log (`GET /v1/events` as `text/event-stream`) open at
    /// once; past it a new one is refused with 503 `overloaded`.
    pub log_streams_max: usize,
}

impl HttpLimits {
    /// The audit log's bounds.
    pub fn audit_config(&self) -> tradefloor_actors::trading::audit::AuditConfig {
        tradefloor_actors::trading::audit::AuditConfig {
            queue_max: self.audit_queue_max,
            batch_max: self.audit_batch_max,
            flush_interval: Duration::from_millis(self.audit_flush_interval_ms),
        }
    }
}

impl Default for HttpLimits {
    fn default() -> Self {
        let audit = tradefloor_actors::trading::audit::AuditConfig::default();
        Self {
            body_bytes_max: 64 * 1024,
            requests_in_flight_max: 1_024,
            request_deadline_ms: 10_000,
            client_request_timeout_ms: 5_000,
            connections_per_worker_max: 10_000,
            keep_alive_seconds: 30,
            retry_after_seconds: 1,
            workers: None,
            shutdown_timeout_seconds: 30,
            stream_buffer_messages: 1_024,
            stream_keepalive_seconds: 15,
            ws_subscriptions_max: 32,
            ws_message_bytes_max: 4_096,
            log_streams_max: 64,
            audit_queue_max: audit.queue_max,
            audit_batch_max: audit.batch_max,
            audit_flush_interval_ms: u64::try_from(audit.flush_interval.as_millis())
                .unwrap_or(u64::MAX),
        }
    }
}

impl HttpLimits {
    /// The request deadline.
    pub fn request_deadline(&self) -> Duration {
        Duration::from_millis(self.request_deadline_ms)
    }
}

/// The trading application's limits a node operator tunes (the rest keep their defaults).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TradingLimits {
    /// Shards per region (fixed at cluster creation).
    pub shard_count: u32,
    /// Commands queued per entity before callers get `overloaded`.
    pub entity_mailbox_capacity: usize,
    /// Messages queued per shard before callers get `overloaded`.
    pub shard_mailbox_capacity: usize,
    /// How long a call to an account or a book waits, in milliseconds.
    pub ask_deadline_ms: u64,
    /// How long placing an order waits for the book's answer, in milliseconds.
    pub placement_wait_ms: u64,
    /// Idle entities are passivated after this many seconds.
    pub passivate_after_seconds: u64,
    /// An account or a book saves a snapshot after this many events since its last one, so
    /// recovery reads at most that many (0: never; recovery replays the whole stream).
    pub snapshot_every_events: u64,
    /// Most events a read model applies in one transaction.
    pub projection_batch_events_max: usize,
    /// How long a caught-up read model waits before reading the log again, in milliseconds.
    pub projection_poll_interval_ms: u64,
    /// Attempts a read model makes at an event it fails on before parking it as a dead letter.
    pub dead_letter_attempts_max: u32,
    /// The wait after a read model's first failed attempt at an event, in milliseconds; it
    /// doubles with each further one, up to `dead_letter_backoff_max_ms`.
    pub dead_letter_backoff_min_ms: u64,
    /// The longest wait between two attempts at an event, in milliseconds.
    pub dead_letter_backoff_max_ms: u64,
    /// The shortest time between two batches a consumer of the log (read model, book feed,
    /// risk monitor) takes from the log bus, in milliseconds: fewer, larger transactions under
    /// load, at the cost of trailing the log by up to this much.
    pub log_batch_interval_min_ms: u64,
    /// Messages a stream topic's channel holds for its slowest subscriber.
    pub stream_topic_buffer_messages: usize,
    /// Stream subscriptions open on the node at once (SSE connections and WebSocket topics).
    pub stream_subscriptions_max: usize,
    /// The furthest back, in log offsets behind the head, a stream may resume.
    pub stream_resume_events_max: u64,
    /// The risk monitor flags an account whose total of any asset exceeds this (minor units);
    /// unset: no flags.
    pub risk_position_limit: Option<u64>,
    /// Strategies defined on the node at most.
    pub strategies_max: usize,
    /// Bars between two checkpoints of a running strategy.
    pub strategy_checkpoint_bars: u64,
}

impl Default for TradingLimits {
    fn default() -> Self {
        let defaults = TradingConfig::default();
        Self {
            shard_count: defaults.entities.shard_count,
            entity_mailbox_capacity: defaults.entities.entity_mailbox_capacity,
            shard_mailbox_capacity: defaults.entities.shard_mailbox_capacity,
            ask_deadline_ms: millis(defaults.ask_deadline),
            placement_wait_ms: millis(defaults.placement_wait),
            passivate_after_seconds: defaults.entities.passivate_after.as_secs(),
            snapshot_every_events: defaults.entities.snapshot_every_events,
            projection_batch_events_max: defaults.projections.batch_events_max,
            projection_poll_interval_ms: millis(defaults.projections.poll_interval),
            log_batch_interval_min_ms: millis(defaults.projections.batch_interval_min),
            dead_letter_attempts_max: defaults.projections.dead_letters.attempts_max,
            dead_letter_backoff_min_ms: millis(defaults.projections.dead_letters.backoff_min),
            dead_letter_backoff_max_ms: millis(defaults.projections.dead_letters.backoff_max),
            stream_topic_buffer_messages: defaults.streams.topic_buffer_messages,
            stream_subscriptions_max: defaults.streams.subscriptions_max,
            stream_resume_events_max: defaults.streams.resume_events_max,
            risk_position_limit: defaults.risk.position_limit,
            strategies_max: defaults.strategies.strategies_max,
            strategy_checkpoint_bars: defaults.strategies.checkpoint_bars,
        }
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl TradingLimits {
    /// The application's configuration with these limits.
    pub fn trading_config(&self) -> TradingConfig {
        let mut config = TradingConfig::default();
        config.entities.shard_count = self.shard_count;
        config.entities.entity_mailbox_capacity = self.entity_mailbox_capacity;
        config.entities.shard_mailbox_capacity = self.shard_mailbox_capacity;
        config.entities.passivate_after = Duration::from_secs(self.passivate_after_seconds);
        config.entities.snapshot_every_events = self.snapshot_every_events;
        config.ask_deadline = Duration::from_millis(self.ask_deadline_ms);
        config.placement_wait = Duration::from_millis(self.placement_wait_ms);
        config.projections.batch_events_max = self.projection_batch_events_max;
        config.projections.poll_interval = Duration::from_millis(self.projection_poll_interval_ms);
        config.projections.dead_letters = DeadLetterPolicy {
            attempts_max: self.dead_letter_attempts_max,
            backoff_min: Duration::from_millis(self.dead_letter_backoff_min_ms),
            backoff_max: Duration::from_millis(self.dead_letter_backoff_max_ms),
        };
        let batch_interval_min = Duration::from_millis(self.log_batch_interval_min_ms);
        config.projections.batch_interval_min = batch_interval_min;
        config.feed.batch_interval_min = batch_interval_min;
        config.risk.batch_interval_min = batch_interval_min;
        config.streams.topic_buffer_messages = self.stream_topic_buffer_messages;
        config.streams.subscriptions_max = self.stream_subscriptions_max;
        config.streams.resume_events_max = self.stream_resume_events_max;
        config.risk.position_limit = self.risk_position_limit;
        config.strategies.strategies_max = self.strategies_max;
        config.strategies.checkpoint_bars = self.strategy_checkpoint_bars.max(1);
        config
    }
}

/// The journal's limits a node operator tunes.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JournalLimits {
    /// Most events in one group commit.
    pub batch_events_max: usize,
    /// Appends queued for the writer before callers wait.
    pub queue_appends_max: usize,
    /// Database connections.
    pub pool_connections_max: u32,
    /// SQLite: fsync every commit (survives power loss) rather than only a process crash.
    pub sqlite_synchronous_full: bool,
    /// SQLite: the nice value of the journal's writer thread (Linux; below 0 needs
    /// `CAP_SYS_NICE`, else the default is kept).
    pub journal_writer_nice: i32,
    /// SQLite: the nice value of the read models' writer thread.
    pub read_models_writer_nice: i32,
    /// Committed batches the log bus keeps for its slowest subscriber (a read model further
    /// behind catches up from the database).
    pub bus_batches_max: usize,
}

impl Default for JournalLimits {
    fn default() -> Self {
        let defaults = JournalConfig::default();
        Self {
            batch_events_max: defaults.batch_events_max,
            queue_appends_max: defaults.queue_appends_max,
            pool_connections_max: defaults.pool_connections_max,
            sqlite_synchronous_full: defaults.sqlite_synchronous_full,
            journal_writer_nice: defaults.journal_writer_nice,
            read_models_writer_nice: defaults.read_models_writer_nice,
            bus_batches_max: defaults.bus_batches_max,
        }
    }
}

impl JournalLimits {
    /// The journal's configuration with these limits.
    pub fn journal_config(&self) -> JournalConfig {
        JournalConfig {
            batch_events_max: self.batch_events_max,
            append_events_max: JournalConfig::default()
                .append_events_max
                .min(self.batch_events_max),
            queue_appends_max: self.queue_appends_max,
            pool_connections_max: self.pool_connections_max,
            sqlite_synchronous_full: self.sqlite_synchronous_full,
            journal_writer_nice: self.journal_writer_nice,
            read_models_writer_nice: self.read_models_writer_nice,
            bus_batches_max: self.bus_batches_max,
            ..JournalConfig::default()
        }
    }
}

impl NodeConfig {
    /// Reads the file named by `--config` (if any), the environment and the flags.
    pub fn load(args: &NodeArgs) -> Result<Self, Error> {
        let variables = std::env::vars()
            .filter(|(name, _)| {
                name.starts_with("TRADEFLOOR_") && !CLIENT_VARIABLES.contains(&name.as_str())
            })
            .collect();
        Self::load_from(args, variables)
    }

    /// [`NodeConfig::load`] with the environment given (tests).
    pub fn load_from(
        args: &NodeArgs,
        variables: config::Map<String, String>,
    ) -> Result<Self, Error> {
        let mut builder = config::Config::builder();
        if let Some(path) = &args.config {
            builder = builder.add_source(config::File::from(path.as_path()).required(true));
        }
        let environment = config::Environment::with_prefix("TRADEFLOOR")
            .prefix_separator("_")
            .separator("__")
            .list_separator(",")
            .with_list_parse_key("seeds")
            .try_parsing(true)
            .source(Some(variables));
        let data_dir = args
            .data_dir
            .as_ref()
            .map(|path| path.to_string_lossy().into_owned());
        let built = builder
            .add_source(environment)
            .set_override_option("node_id", args.node_id.clone())?
            .set_override_option("http", args.http.clone())?
            .set_override_option("cluster_addr", args.cluster_addr.clone())?
            .set_override_option("seeds", args.seeds.clone())?
            .set_override_option("cluster.advertise", args.cluster_advertise.clone())?
            .set_override_option("journal", args.journal.clone())?
            .set_override_option("data_dir", data_dir)?
            .set_override_option("log_format", args.log_format.clone())?
            .build()?;
        let config: NodeConfig = built.try_deserialize()?;
        config.validate()?;
        Ok(config)
    }

    /// Checks the settings fit together, or says which does not.
    pub fn validate(&self) -> Result<(), Error> {
        let invalid = |reason: String| Err(Error::Config(reason));
        if tradefloor_domain::AccountId::new(&self.node_id).is_err() {
            return invalid(format!(
                "node_id {:?} must be 1 to 40 letters, digits or '-_.:'",
                self.node_id
            ));
        }
        if let Some(secret) = &self.cluster.secret
            && secret.len() < 16
        {
            return invalid("cluster.secret is shorter than 16 characters".to_owned());
        }
        self.tls.validate()?;
        if self.tls.cluster_cert.is_some() && self.cluster.secret.is_none() {
            return invalid(
                "tls.cluster_* is set but cluster.secret is not: TLS secures a cluster port, \
                 which only a cluster member opens"
                    .to_owned(),
            );
        }
        if !self.seeds.is_empty() && self.cluster.secret.is_none() {
            return invalid(
                "seeds are set but cluster.secret is not: a node joins a cluster only with the \
                 cluster's secret (set it, or drop the seeds to run standalone)"
                    .to_owned(),
            );
        }
        if self.cluster.secret.is_some() {
            self.cluster_listen_addr()?;
            self.cluster
                .runtime_config()
                .cluster
                .validate()
                .map_err(|error| Error::Config(format!("cluster: {error}")))?;
            if self.cluster.moves_max == 0 || self.cluster.calls_in_flight_max == 0 {
                return invalid(
                    "cluster.moves_max and calls_in_flight_max must be positive".to_owned(),
                );
            }
            if self.cluster.handshake_timeout_ms == 0
                || self.cluster.unauthenticated_connections_max == 0
            {
                return invalid(
                    "cluster.handshake_timeout_ms and unauthenticated_connections_max must be \
                     positive"
                        .to_owned(),
                );
            }
        }
        if self.http_limits.stream_buffer_messages == 0
            || self.http_limits.stream_keepalive_seconds == 0
            || self.http_limits.ws_subscriptions_max == 0
        {
            return invalid(
                "http_limits.stream_buffer_messages, stream_keepalive_seconds and \
                 ws_subscriptions_max must be positive"
                    .to_owned(),
            );
        }
        self.trading
            .trading_config()
            .streams
            .validate()
            .map_err(|reason| Error::Config(format!("trading.stream_*: {reason}")))?;
        let http = self.http_addr()?;
        if self.tokens.is_empty() && !http.ip().is_loopback() {
            return invalid(format!(
                "refusing to serve {http} without tokens: configure tokens or bind a \
                 loopback address"
            ));
        }
        for (index, token) in self.tokens.iter().enumerate() {
            if token.token.len() < 16 {
                return invalid(format!(
                    "token #{} is shorter than 16 characters",
                    index + 1
                ));
            }
            if token.role == Role::Trader && token.accounts.is_empty() {
                return invalid(format!("trader token #{} lists no accounts", index + 1));
            }
            if token.requests_per_second == Some(0) {
                return invalid(format!(
                    "token #{} allows 0 requests a second: drop requests_per_second for no limit",
                    index + 1
                ));
            }
            if let Some(name) = &token.name
                && (name.is_empty()
                    || name.chars().count() > TOKEN_NAME_CHARS_MAX
                    || name.chars().any(char::is_control))
            {
                return invalid(format!(
                    "token #{} has a name that is empty, longer than {TOKEN_NAME_CHARS_MAX} \
                     characters or holds control characters",
                    index + 1
                ));
            }
            if token.role != Role::Trader && !token.accounts.is_empty() {
                return invalid(format!(
                    "token #{} lists accounts, but only a trader's are limited to some",
                    index + 1
                ));
            }
        }
        let limits = &self.http_limits;
        if limits.body_bytes_max == 0
            || limits.requests_in_flight_max == 0
            || limits.request_deadline_ms == 0
            || limits.connections_per_worker_max == 0
            || limits.audit_queue_max == 0
            || limits.audit_batch_max == 0
        {
            return invalid("http_limits must all be positive".to_owned());
        }
        let trading = &self.trading;
        if trading.shard_count == 0
            || trading.entity_mailbox_capacity == 0
            || trading.shard_mailbox_capacity == 0
            || trading.ask_deadline_ms == 0
            || trading.projection_batch_events_max == 0
            || trading.projection_poll_interval_ms == 0
            || trading.dead_letter_attempts_max == 0
        {
            return invalid("trading limits must all be positive".to_owned());
        }
        self.journal_config()
            .validate()
            .map_err(|error| Error::Config(error.to_string()))?;
        if self.retention.horizon_seconds > 0 && self.retention.every_seconds == 0 {
            return invalid("retention.every_seconds must be positive with a horizon".to_owned());
        }
        if let Some(nats) = &self.sink.nats {
            if self.cluster.secret.is_some() {
                // Each member would publish the whole log: one node of its own runs the sink.
                return invalid("sink.nats runs on a node of its own, not in a cluster".to_owned());
            }
            nats.sink_config(&self.trading)
                .validate()
                .map_err(Error::Config)?;
        }
        if self.rules.enabled {
            if self.cluster.secret.is_some() {
                // Each member would act on every match: one node of its own runs the rules.
                return invalid("rules run on a node of its own, not in a cluster".to_owned());
            }
            self.rules
                .rule_set()
                .validate()
                .map_err(|reason| Error::Config(format!("rules: {reason}")))?;
        }
        Ok(())
    }

    /// The HTTP address, parsed.
    pub fn http_addr(&self) -> Result<SocketAddr, Error> {
        self.http.parse().map_err(|_| {
            Error::Config(format!(
                "http address {:?} is not host:port with an IP host",
                self.http
            ))
        })
    }

    /// The cluster address to listen on (an IP address and port; `0.0.0.0` for every
    /// interface).
    pub fn cluster_listen_addr(&self) -> Result<SocketAddr, Error> {
        self.cluster_addr.parse().map_err(|_| {
            Error::Config(format!(
                "cluster address {:?} is not host:port with an IP host",
                self.cluster_addr
            ))
        })
    }

    /// The cluster address other nodes dial.
    pub fn cluster_advertised(&self) -> String {
        self.cluster
            .advertise
            .clone()
            .unwrap_or_else(|| self.cluster_addr.clone())
    }

    /// The journal's configuration: its limits and the archive's.
    pub fn journal_config(&self) -> JournalConfig {
        JournalConfig {
            archive_dir: Some(self.archive_dir()),
            archive_frame_events_max: self.retention.frame_events_max,
            archive_file_events_max: self.retention.file_events_max,
            ..self.journal_limits.journal_config()
        }
    }

    /// Where archive files go (`retention.archive_dir`, by default `{data_dir}/archive`).
    pub fn archive_dir(&self) -> PathBuf {
        self.retention
            .archive_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("archive"))
    }

    /// The journal URL: the configured one, or SQLite in the data directory.
    pub fn journal_url(&self) -> String {
        match &self.journal {
            Some(url) => url.clone(),
            None => format!("sqlite:{}", sqlite_path(&self.data_dir).display()),
        }
    }
}

/// Where the read models of an SQLite journal live: a file of their own beside it
/// (`journal.sqlite` → `journal-read-models.sqlite`), so their writes never wait for the
/// journal's write lock nor hold it. `None` for PostgreSQL (one database serves both).
pub fn read_models_url(journal_url: &str) -> Option<String> {
    let path = Path::new(journal_url.strip_prefix("sqlite:")?);
    let stem = path.file_stem()?.to_string_lossy();
    let file = format!("{stem}-read-models.sqlite");
    Some(format!("sqlite:{}", path.with_file_name(file).display()))
}

/// Where the embedded journal lives in `data_dir`.
pub fn sqlite_path(data_dir: &Path) -> PathBuf {
    data_dir.join("journal.sqlite")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn variables(pairs: &[(&str, &str)]) -> config::Map<String, String> {
        pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    }

    fn file(contents: &str) -> (tempfile::TempDir, NodeArgs) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(&path, contents).unwrap();
        let args = NodeArgs {
            config: Some(path),
            ..NodeArgs::default()
        };
        (dir, args)
    }

    #[test]
    fn defaults_serve_loopback_with_sqlite_in_the_data_directory() {
        let config = NodeConfig::load_from(&NodeArgs::default(), variables(&[])).unwrap();
        assert_eq!(config.node_id, "n1");
        assert!(config.http_addr().unwrap().ip().is_loopback());
        assert_eq!(config.journal_url(), "sqlite:./data/journal.sqlite");
        assert_eq!(
            read_models_url(&config.journal_url()).as_deref(),
            Some("sqlite:./data/journal-read-models.sqlite")
        );
        assert_eq!(read_models_url("postgres://127.0.0.1/test"), None);
    }

    #[test]
    fn flags_override_the_environment_which_overrides_the_file() {
        let (_dir, mut args) = file(
            "node_id = \"from-file\"\nhttp = \"127.0.0.1:1000\"\ncluster_addr = \"127.0.0.1:2000\"\n\
             [http_limits]\nbody_bytes_max = 1000\n",
        );
        let environment = variables(&[
            ("TRADEFLOOR_HTTP", "127.0.0.1:1001"),
            ("TRADEFLOOR_CLUSTER_ADDR", "127.0.0.1:2001"),
            ("TRADEFLOOR_HTTP_LIMITS__BODY_BYTES_MAX", "2000"),
            ("TRADEFLOOR_SEEDS", "127.0.0.1:1,127.0.0.1:2"),
            ("TRADEFLOOR_CLUSTER__SECRET", "a-cluster-secret-0123"),
        ]);
        args.http = Some("127.0.0.1:1002".to_owned());
        let config = NodeConfig::load_from(&args, environment).unwrap();
        assert_eq!(config.node_id, "from-file");
        assert_eq!(config.cluster_addr, "127.0.0.1:2001");
        assert_eq!(config.http, "127.0.0.1:1002");
        assert_eq!(config.http_limits.body_bytes_max, 2000);
        assert_eq!(config.seeds, ["127.0.0.1:1", "127.0.0.1:2"]);
    }

    #[test]
    fn unknown_settings_are_refused_by_name() {
        let (_dir, args) = file("node_idd = \"typo\"\n");
        let error = NodeConfig::load_from(&args, variables(&[])).unwrap_err();
        assert!(error.to_string().contains("node_idd"), "{error}");
        let environment = variables(&[("TRADEFLOOR_HTTP_LIMITS__NOPE", "1")]);
        let error = NodeConfig::load_from(&NodeArgs::default(), environment).unwrap_err();
        assert!(error.to_string().contains("nope"), "{error}");
    }

    #[test]
    fn a_public_address_needs_tokens() {
        let args = NodeArgs {
            http: Some("0.0.0.0:8080".to_owned()),
            ..NodeArgs::default()
        };
        let error = NodeConfig::load_from(&args, variables(&[])).unwrap_err();
        assert!(error.to_string().contains("without tokens"), "{error}");
        let (_dir, mut args) =
            file("[[tokens]]\ntoken = \"0123456789abcdef0123\"\nrole = \"admin\"\n");
        args.http = Some("0.0.0.0:8080".to_owned());
        let config = NodeConfig::load_from(&args, variables(&[])).unwrap();
        assert_eq!(config.tokens.len(), 1);
    }

    #[test]
    fn weak_and_unbound_tokens_are_refused_and_never_printed() {
        let (_dir, args) = file("[[tokens]]\ntoken = \"short\"\nrole = \"admin\"\n");
        let error = NodeConfig::load_from(&args, variables(&[])).unwrap_err();
        assert!(error.to_string().contains("shorter than 16"), "{error}");
        assert!(!error.to_string().contains("short\""), "{error}");
        let (_dir, args) =
            file("[[tokens]]\ntoken = \"0123456789abcdef0123\"\nrole = \"trader\"\n");
        let error = NodeConfig::load_from(&args, variables(&[])).unwrap_err();
        assert!(error.to_string().contains("lists no accounts"), "{error}");
        let token = TokenConfig {
            token: "0123456789abcdef0123".to_owned(),
            role: Role::Admin,
            accounts: vec![],
            requests_per_second: None,
            name: None,
        };
        assert!(!format!("{token:?}").contains("0123456789abcdef"));
    }
}
