//! The node's metrics through the `metrics` facade and its Prometheus exporter.
//!
//! Request rates and latencies are recorded by the HTTP layer as they happen, journal batch
//! sizes and commit latencies by the journal's writer; the [`sample`] loop adds gauges read
//! off the running actors: mailbox depths, entities per region, breaker states, restarts,
//! dead letters and the read models' lag.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tradefloor_actors::Registry;
use tradefloor_actors::runtime::registry::ActorTree;
use tradefloor_actors::trading::Exchange;
use tradefloor_cluster::Status;
use tradefloor_cluster::runtime::ClusterNode;

use crate::error::Error;

/// Each running strategy: bars and ticks taken, orders answered and refused, whether its
/// last signal leaned on a cached prediction, and each predictor's breaker.
async fn sample_strategies(exchange: &Exchange) {
    let strategies = exchange.running_strategies().await;
    metrics::gauge!("tradefloor_strategies_running").set(strategies.len() as f64);
    for status in strategies {
        let id = status.id.clone();
        metrics::gauge!("tradefloor_strategy_bars", "strategy" => id.clone())
            .set(status.bars as f64);
        metrics::gauge!("tradefloor_strategy_ticks", "strategy" => id.clone())
            .set(status.ticks as f64);
        metrics::gauge!("tradefloor_strategy_orders_answered", "strategy" => id.clone())
            .set(status.orders_answered as f64);
        metrics::gauge!("tradefloor_strategy_orders_failed", "strategy" => id.clone())
            .set(status.orders_failed as f64);
        metrics::gauge!("tradefloor_strategy_fallback", "strategy" => id.clone())
            .set(f64::from(u8::from(status.fallback)));
        for breaker in status.breakers {
            let open = !matches!(breaker.state, tradefloor_strategy::BreakerState::Closed);
            metrics::gauge!("tradefloor_strategy_breaker_open",
                "strategy" => id.clone(), "predictor" => breaker.predictor.clone())
            .set(f64::from(u8::from(open)));
            metrics::gauge!("tradefloor_strategy_predictor_failures",
                "strategy" => id.clone(), "predictor" => breaker.predictor)
            .set(breaker.failures_total as f64);
        }
    }
}

/// The live streams: what is followed, and how far the hub has published the log.
fn sample_streams(exchange: &Exchange) {
    let stats = exchange.streams().stats();
    metrics::gauge!("tradefloor_stream_subscriptions").set(stats.subscriptions as f64);
    metrics::gauge!("tradefloor_stream_topics").set(stats.topics as f64);
    metrics::gauge!("tradefloor_stream_offset").set(stats.offset as f64);
    metrics::gauge!("tradefloor_stream_messages_published").set(stats.published as f64);
}

/// The most events the lag gauge counts per consumer (a consumer further behind shows this):
/// the probe reads them from the journal every second, beside the load it measures.
pub const LAG_PROBE_EVENTS_MAX: usize = 1_000;

/// How often the exporter's upkeep runs: it drains the histograms' samples into their
/// summaries, which otherwise grow with every request until the next scrape.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Runs the exporter's upkeep every [`UPKEEP_INTERVAL`] until the task is dropped.
pub async fn upkeep(handle: PrometheusHandle) {
    let mut ticker = tokio::time::interval(UPKEEP_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        handle.run_upkeep();
    }
}

/// Installs the process-wide Prometheus recorder.
pub fn install() -> Result<PrometheusHandle, Error> {
    PrometheusBuilder::new()
        .install_recorder()
        .map_err(|error| Error::Config(format!("metrics: {error}")))
}

/// Samples the actors every `interval` until the task is dropped.
pub async fn sample(
    registry: Registry,
    exchange: Arc<Exchange>,
    cluster: Option<Arc<ClusterNode>>,
    interval: Duration,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if let Some(cluster) = &cluster {
            sample_cluster(cluster).await;
        }
        sample_tree(&registry);
        sample_regions(&exchange).await;
        sample_risk_group(&exchange).await;
        metrics::gauge!("tradefloor_placements_waiting").set(exchange.placements_waiting() as f64);
        sample_streams(&exchange);
        sample_strategies(&exchange).await;
        match exchange.consumer_lags(LAG_PROBE_EVENTS_MAX).await {
            Ok(lags) => {
                for (consumer, lag) in lags {
                    metrics::gauge!("tradefloor_projection_lag_events", "consumer" => consumer)
                        .set(lag as f64);
                }
            }
            Err(error) => tracing::warn!(%error, "could not read the consumers' offsets"),
        }
    }
}

/// This node's part in the cluster: its shards, the log's consumers it runs, its role, calls waiting out a hand-off, the
/// breaker in front of each other node, and the members by status (as this node reads the
/// membership table).
async fn sample_cluster(cluster: &ClusterNode) {
    metrics::gauge!("tradefloor_cluster_shards_running").set(cluster.running().len() as f64);
    metrics::gauge!("tradefloor_cluster_coordinator")
        .set(f64::from(u8::from(cluster.is_coordinator())));
    metrics::gauge!("tradefloor_cluster_units_running").set(cluster.units_running().await as f64);
    metrics::gauge!("tradefloor_cluster_handoff_waiting").set(cluster.remoting().waiting() as f64);
    for (node, breaker) in cluster.remoting().breakers() {
        let state = match breaker.state {
            tradefloor_actors::BreakerState::Closed => 0.0,
            tradefloor_actors::BreakerState::HalfOpen => 1.0,
            tradefloor_actors::BreakerState::Open => 2.0,
        };
        metrics::gauge!("tradefloor_cluster_node_breaker_state", "node" => node).set(state);
    }
    match cluster.membership().members().await {
        Ok(members) => {
            for status in [Status::Joining, Status::Up, Status::Leaving, Status::Down] {
                let count = members
                    .iter()
                    .filter(|member| member.status == status)
                    .count();
                metrics::gauge!("tradefloor_cluster_members", "status" => status.as_str())
                    .set(count as f64);
            }
        }
        Err(error) => tracing::warn!(%error, "could not read the membership table"),
    }
}

/// Mailboxes (summed per kind and parent, so 256 shards are one series), breakers, restarts.
fn sample_tree(registry: &Registry) {
    metrics::gauge!("tradefloor_dead_letters").set(registry.dead_letters().count() as f64);
    metrics::gauge!("tradefloor_actors").set(registry.len() as f64);
    let Some(tree) = registry.snapshot("/", None) else {
        return;
    };
    let mut mailboxes: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
    visit(&tree, &mut |node| {
        let kind = node.kind.clone().unwrap_or_default();
        if let Some(mailbox) = &node.mailbox {
            let owner = match kind.as_str() {
                "shard" => parent(&node.path).to_owned(),
                _ => node.path.clone(),
            };
            let entry = mailboxes.entry((kind.clone(), owner)).or_default();
            entry.0 += (mailbox.len + mailbox.priority_len) as u64;
            entry.1 += (mailbox.capacity + mailbox.priority_capacity) as u64;
        }
        if let Some(breaker) = &node.breaker {
            let state = match breaker.state {
                tradefloor_actors::BreakerState::Closed => 0.0,
                tradefloor_actors::BreakerState::HalfOpen => 1.0,
                tradefloor_actors::BreakerState::Open => 2.0,
            };
            metrics::gauge!("tradefloor_breaker_state", "breaker" => breaker.name.clone())
                .set(state);
            metrics::gauge!("tradefloor_breaker_opened", "breaker" => breaker.name.clone())
                .set(breaker.opened_count as f64);
        }
        if let Some(restarts) = node.restarts.filter(|restarts| *restarts > 0) {
            metrics::gauge!("tradefloor_actor_restarts", "kind" => kind, "path" => node.path.clone())
                .set(f64::from(restarts));
        }
    });
    for ((kind, owner), (length, capacity)) in mailboxes {
        metrics::gauge!("tradefloor_mailbox_length", "kind" => kind.clone(), "actor" => owner.clone())
            .set(length as f64);
        metrics::gauge!("tradefloor_mailbox_capacity", "kind" => kind, "actor" => owner)
            .set(capacity as f64);
    }
}

/// Entities in memory, queued, persisting and recovering, per region.
async fn sample_regions(exchange: &Exchange) {
    let mut regions: BTreeMap<String, [u64; 4]> = BTreeMap::new();
    for (region, stats) in exchange.shard_stats().await {
        let entry = regions.entry(region).or_default();
        entry[0] += stats.entities as u64;
        entry[1] += stats.queued as u64;
        entry[2] += stats.persisting as u64;
        entry[3] += stats.recovering as u64;
    }
    for (region, [entities, queued, persisting, recovering]) in regions {
        metrics::gauge!("tradefloor_entities", "region" => region.clone()).set(entities as f64);
        metrics::gauge!("tradefloor_entity_commands_queued", "region" => region.clone())
            .set(queued as f64);
        metrics::gauge!("tradefloor_entities_persisting", "region" => region.clone())
            .set(persisting as f64);
        metrics::gauge!("tradefloor_entities_recovering", "region" => region)
            .set(recovering as f64);
    }
}

/// The risk monitor consumer group: members, partitions not held by their target (a hand-off
/// under way), and what each member handled and committed.
async fn sample_risk_group(exchange: &Exchange) {
    let group = exchange.risk_stats();
    metrics::gauge!("tradefloor_consumer_members", "group" => group.group.clone())
        .set(group.members.len() as f64);
    let moving = group
        .targets
        .iter()
        .zip(&group.holders)
        .filter(|(target, holder)| target != holder)
        .count();
    metrics::gauge!("tradefloor_consumer_partitions_moving", "group" => group.group.clone())
        .set(moving as f64);
    match exchange.risk_member_stats().await {
        Ok(members) => {
            for member in members {
                let labels = [("group", member.group), ("member", member.member)];
                metrics::gauge!("tradefloor_consumer_partitions_held", &labels)
                    .set(member.partitions.len() as f64);
                metrics::gauge!("tradefloor_consumer_events_handled", &labels)
                    .set(member.handled as f64);
                metrics::gauge!("tradefloor_consumer_commits", &labels).set(member.commits as f64);
            }
        }
        Err(error) => tracing::warn!(%error, "could not read the risk members' stats"),
    }
}

fn visit(tree: &ActorTree, action: &mut impl FnMut(&ActorTree)) {
    action(tree);
    for child in &tree.children {
        visit(child, action);
    }
}

fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or(path, |(parent, _)| parent)
}
