//! A cluster of `tradefloor node` processes (ids `n1`..`nN`) on one fresh PostgreSQL
//! database: each listens for cluster traffic on its own free loopback port, has every
//! other member as a seed and the shared secret. Nodes are numbered from 1, like their ids:
//! [`Cluster::node`]`(1)` is `n1`.
//!
//! [`Cluster::settled`] waits until every running node is ready and `up`, no stopped node is
//! `up`, every shard is owned by a running node with no hand-off under way, every running
//! node owns a shard, and all of it stays so for [`SETTLED_WINDOW`].

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::Row;

use crate::proxy::Proxy;
use crate::{Http, Method, Node, NodeOptions, binary, postgres_database};

/// The environment variable of the cluster's shared secret (the node's configuration).
pub const SECRET_VAR: &str = "TRADEFLOOR_CLUSTER__SECRET";
/// The shared secret of the test clusters.
pub const SECRET: &str = "tradefloor-cluster-tests-secret";
/// Shards per region (the node's default).
pub const SHARD_COUNT: u32 = 256;
/// How long a cluster may take to form, fail over or rebalance (nodes share busy cores).
pub const CLUSTER_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a layout must stay the same to count as settled.
pub const SETTLED_WINDOW: Duration = Duration::from_secs(2);

/// The shard of an entity id: FNV-1a 64 of its bytes mod [`SHARD_COUNT`] (as
/// `tradefloor_actors::hosting::region::shard_of`).
pub fn shard_of(entity_id: &str) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in entity_id.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash % u64::from(SHARD_COUNT)) as u32
}

/// The ports [`free_addr`] hands out: below the kernel's ephemeral range (32768.. on Linux),
/// so that no connection's source port and no `bind(0)` listener (ractor_cluster opens one in
/// every node) can take an address between the moment it is chosen and the moment its node
/// binds it. CI caught a node refusing to start with "Address already in use" that way.
const PLANNED_PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A free loopback address (`127.0.0.1:<port>`), free when asked, from [`PLANNED_PORTS`];
/// never the same twice in a test process.
pub fn free_addr() -> String {
    use std::sync::atomic::{AtomicU16, Ordering};
    // Test processes run one after another, but start each somewhere else in the range so that
    // a port a killed node of the previous process may still hold (TIME_WAIT aside) is skipped.
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let span = PLANNED_PORTS.end - PLANNED_PORTS.start;
    let _ = NEXT.compare_exchange(
        0,
        (std::process::id() % u32::from(span)) as u16 + 1,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..span {
        let offset = NEXT.fetch_add(1, Ordering::SeqCst) % span;
        let address = format!("127.0.0.1:{}", PLANNED_PORTS.start + offset);
        if std::net::TcpListener::bind(&address).is_ok() {
            return address;
        }
    }
    panic!("no free port in {PLANNED_PORTS:?}");
}

/// The owner of every shard, from a `/v1/cluster/shards` body that lists all
/// [`SHARD_COUNT`] of them.
pub fn shard_owners(shards: &Value) -> Result<BTreeMap<u32, String>, String> {
    if shards["shard_count"].as_u64() != Some(u64::from(SHARD_COUNT)) {
        return Err(format!("shard_count is {}", shards["shard_count"]));
    }
    let mut owners = BTreeMap::new();
    for shard in shards["shards"].as_array().into_iter().flatten() {
        let (Some(number), Some(owner)) = (shard["shard"].as_u64(), shard["owner"].as_str()) else {
            return Err(format!("a shard without number or owner: {shard}"));
        };
        let number = u32::try_from(number).map_err(|_| format!("shard {number}"))?;
        owners.insert(number, owner.to_owned());
    }
    if owners.len() != SHARD_COUNT as usize {
        return Err(format!("{} shards listed", owners.len()));
    }
    Ok(owners)
}

/// One member of a [`Cluster`].
pub struct Member {
    /// Its node id, `n<i>`.
    pub id: String,
    /// Its process.
    pub node: Node,
    /// The address it listens on for cluster traffic.
    pub cluster_addr: String,
    /// The address the others reach it at (its proxy's, when behind one).
    pub advertised: String,
    /// The proxy in front of its cluster address, if any.
    pub proxy: Option<Proxy>,
}

/// Who owns what, as one node's `/v1/cluster/members` and `/v1/cluster/shards` showed it.
#[derive(Clone, Debug)]
pub struct Layout {
    /// Owner of every shard.
    pub owners: BTreeMap<u32, String>,
    /// Status of every member listed.
    pub statuses: BTreeMap<String, String>,
    /// The raw `/v1/cluster/shards` body.
    pub shards: Value,
    /// When it was first seen (a settled layout: the first of the observations that agreed).
    pub seen_at: Instant,
}

impl Layout {
    /// How many shards `node_id` owns.
    pub fn owned_by(&self, node_id: &str) -> usize {
        self.owners
            .values()
            .filter(|owner| *owner == node_id)
            .count()
    }

    /// The owner of `entity_id`'s shard.
    pub fn owner_of(&self, entity_id: &str) -> &str {
        &self.owners[&shard_of(entity_id)]
    }

    /// `count` entity ids `{prefix}-{k}` whose shards `node_id` owns.
    pub fn entities_on(&self, node_id: &str, prefix: &str, count: usize) -> Vec<String> {
        (0..)
            .map(|k| format!("{prefix}-{k}"))
            .filter(|id| self.owner_of(id) == node_id)
            .take(count)
            .collect()
    }

    /// How many shards have another owner in `other`.
    pub fn moved_since(&self, other: &Layout) -> usize {
        self.owners
            .iter()
            .filter(|(shard, owner)| other.owners.get(shard) != Some(owner))
            .count()
    }
}

/// Nodes `n1`..`nN` as one cluster on one database.
pub struct Cluster {
    /// The test database's URL.
    pub database: String,
    members: Vec<Member>,
    /// One cluster at a time in a test process: the failure detector's timeouts (2 s) must not
    /// measure how starved of CPU a dozen nodes on two cores are.
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

/// Whose turn it is to run a cluster (see [`Cluster`]).
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

impl Cluster {
    /// A cluster of `nodes` nodes on a fresh database named after `test`, every node ready;
    /// `None` (the test is skipped, and says so) without `DATABASE_URL`.
    pub async fn start(test: &str, nodes: usize) -> Option<Cluster> {
        Self::start_with_proxies(test, nodes, &[]).await
    }

    /// As [`Cluster::start`], with the nodes numbered in `proxied` behind a [`Proxy`] each
    /// (they advertise the proxy's address as their cluster address, and have no seeds so
    /// that every cluster connection of theirs is one the others dialled through the proxy).
    pub async fn start_with_proxies(
        test: &str,
        nodes: usize,
        proxied: &[usize],
    ) -> Option<Cluster> {
        let database = postgres_database(test).await?;
        let turn = TURN.lock().await;
        // Build the binary once, off the runtime's workers, before the nodes start.
        tokio::task::spawn_blocking(binary)
            .await
            .expect("the binary is built");
        let mut planned = Vec::new();
        for number in 1..=nodes {
            let cluster_addr = free_addr();
            let proxy = if proxied.contains(&number) {
                Some(Proxy::start(cluster_addr.clone()).await)
            } else {
                None
            };
            let advertised = proxy
                .as_ref()
                .map_or_else(|| cluster_addr.clone(), |proxy| proxy.addr().to_string());
            planned.push((format!("n{number}"), cluster_addr, advertised, proxy));
        }
        let mut launches = Vec::new();
        for (id, cluster_addr, advertised, proxy) in &planned {
            // A node behind a proxy gets no seeds: it would dial them at its start, a
            // connection its proxy cannot cut. It joins through the membership table, and the
            // others dial it (the larger id dials) through its proxy.
            let seeds: Vec<&str> = planned
                .iter()
                .filter(|(other, ..)| other != id && proxy.is_none())
                .map(|(_, _, advertised, _)| advertised.as_str())
                .collect();
            let options = member_options(&database, id, cluster_addr, advertised, &seeds);
            launches.push(tokio::spawn(Node::launch(options)));
        }
        let mut members = Vec::new();
        for ((id, cluster_addr, advertised, proxy), launch) in planned.into_iter().zip(launches) {
            members.push(Member {
                id,
                node: launch.await.expect("the node starts"),
                cluster_addr,
                advertised,
                proxy,
            });
        }
        for member in &members {
            member.node.wait_ready_within(CLUSTER_TIMEOUT).await;
        }
        Some(Cluster {
            database,
            members,
            _turn: turn,
        })
    }

    /// Starts one more node (`n<len+1>`) with every member as a seed and waits until it is
    /// ready; its number.
    pub async fn add_node(&mut self) -> usize {
        let number = self.members.len() + 1;
        let id = format!("n{number}");
        let cluster_addr = free_addr();
        let seeds: Vec<&str> = self
            .members
            .iter()
            .map(|member| member.advertised.as_str())
            .collect();
        let options = member_options(&self.database, &id, &cluster_addr, &cluster_addr, &seeds);
        let node = Node::launch(options).await;
        node.wait_ready_within(CLUSTER_TIMEOUT).await;
        self.members.push(Member {
            id,
            node,
            advertised: cluster_addr.clone(),
            cluster_addr,
            proxy: None,
        });
        number
    }

    /// The options of a would-be member `id` holding `secret` instead of the cluster's, with
    /// every member as a seed and its logs captured.
    pub fn outsider_options(&self, id: &str, secret: &str) -> NodeOptions {
        let cluster_addr = free_addr();
        let seeds: Vec<&str> = self
            .members
            .iter()
            .map(|member| member.advertised.as_str())
            .collect();
        let mut options = member_options(&self.database, id, &cluster_addr, &cluster_addr, &seeds);
        options.env.retain(|(name, _)| name != SECRET_VAR);
        options.env.push((SECRET_VAR.to_owned(), secret.to_owned()));
        options.capture_logs = true;
        options
    }

    /// How many nodes the cluster has had (running or not).
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the cluster has no nodes.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Member `number` (1-based).
    pub fn member(&self, number: usize) -> &Member {
        &self.members[number - 1]
    }

    /// Member `number`'s process.
    pub fn node(&self, number: usize) -> &Node {
        &self.member(number).node
    }

    /// Member `number`'s process, to stop, kill or restart it.
    pub fn node_mut(&mut self, number: usize) -> &mut Node {
        &mut self.members[number - 1].node
    }

    /// Member `number`'s id, `n<number>`.
    pub fn id(&self, number: usize) -> &str {
        &self.member(number).id
    }

    /// A client of member `number` (no token: the nodes serve loopback without tokens).
    pub fn http(&self, number: usize) -> Http {
        self.node(number).http(None)
    }

    /// The proxy in front of member `number`'s cluster address.
    pub fn proxy(&self, number: usize) -> &Proxy {
        self.member(number)
            .proxy
            .as_ref()
            .expect("the member is behind a proxy")
    }

    /// The numbers of the members whose processes run.
    pub fn running(&mut self) -> Vec<usize> {
        (1..=self.members.len())
            .filter(|number| self.members[number - 1].node.is_running())
            .collect()
    }

    /// SIGKILLs member `number`.
    pub async fn kill(&mut self, number: usize) {
        self.node_mut(number).kill().await;
    }

    /// SIGTERMs member `number` and waits for it to exit; its exit code.
    pub async fn stop(&mut self, number: usize) -> Option<i32> {
        self.node_mut(number).stop().await
    }

    /// Starts member `number` again with the same id, addresses and data directory, and
    /// waits until it is ready.
    pub async fn restart(&mut self, number: usize) {
        let node = self.node_mut(number);
        node.spawn().await;
        node.wait_ready_within(CLUSTER_TIMEOUT).await;
    }

    /// Waits until the running members are ready and `up`, the others are not `up`, every
    /// shard is owned by a running member with no hand-off under way (as every running
    /// member and the shard table show it), every running member owns a shard, and all of it
    /// stays so for [`SETTLED_WINDOW`]; the layout.
    pub async fn settled(&mut self) -> Layout {
        let live = self.running();
        self.settled_among(&live).await
    }

    /// As [`Cluster::settled`] with only the members numbered in `live` counted as live and
    /// asked (others, running or not, must not be `up`).
    ///
    /// Settled also means every live member owns a shard (a member that just joined is `up`
    /// before the coordinator gives it any) and the layout stays the same over
    /// [`SETTLED_WINDOW`] (a rebalance may move shards in several rounds).
    pub async fn settled_among(&self, live: &[usize]) -> Layout {
        let deadline = Instant::now() + CLUSTER_TIMEOUT;
        let mut first: Option<Layout> = None;
        loop {
            let reason = match self.settled_now(live).await {
                Ok(layout) => match first.take() {
                    Some(earlier) if earlier.owners == layout.owners => {
                        if layout.seen_at >= earlier.seen_at + SETTLED_WINDOW {
                            return earlier;
                        }
                        first = Some(earlier);
                        "settled, not yet for long".to_owned()
                    }
                    _ => {
                        first = Some(layout);
                        "settled once".to_owned()
                    }
                },
                Err(reason) => {
                    first = None;
                    reason
                }
            };
            assert!(
                Instant::now() < deadline,
                "the cluster did not settle among {live:?} within {CLUSTER_TIMEOUT:?}: {reason}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn settled_now(&self, live: &[usize]) -> Result<Layout, String> {
        let live_ids: BTreeSet<&str> = live.iter().map(|number| self.id(*number)).collect();
        let mut layout = None;
        for number in live {
            let http = self.http(*number);
            let id = self.id(*number);
            match http.try_get("/health/ready").await {
                Ok((200, _)) => {}
                other => return Err(format!("{id} is not ready: {other:?}")),
            }
            let seen = self.layout_via(*number).await?;
            for member in &self.members {
                let status = seen.statuses.get(&member.id).map(String::as_str);
                let live = live_ids.contains(member.id.as_str());
                if live != (status == Some("up")) {
                    return Err(format!("{id} sees {} as {status:?}", member.id));
                }
            }
            if let Some((shard, owner)) = seen
                .owners
                .iter()
                .find(|(_, owner)| !live_ids.contains(owner.as_str()))
            {
                return Err(format!("{id} sees shard {shard} owned by {owner}"));
            }
            if let Some(shard) = seen.shards["shards"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|shard| handing_off(shard))
            {
                return Err(format!("{id} sees a hand-off: {shard}"));
            }
            layout = Some(seen);
        }
        if let Some(layout) = &layout
            && let Some(idle) = live_ids.iter().find(|id| layout.owned_by(id) == 0)
        {
            return Err(format!("{idle} owns no shard yet"));
        }
        let handoffs = self.handoffs_in_shard_table().await?;
        if handoffs > 0 {
            return Err(format!("{handoffs} hand-offs in cluster_shards"));
        }
        layout.ok_or_else(|| "no live member to ask".to_owned())
    }

    /// The layout as member `number` shows it, or why it cannot.
    pub async fn layout_via(&self, number: usize) -> Result<Layout, String> {
        let http = self.http(number);
        let id = self.id(number);
        let members = match http.try_get("/v1/cluster/members").await {
            Ok((200, body)) => body,
            other => return Err(format!("{id}: /v1/cluster/members: {other:?}")),
        };
        let shards = match http.try_get("/v1/cluster/shards").await {
            Ok((200, body)) => body,
            other => return Err(format!("{id}: /v1/cluster/shards: {other:?}")),
        };
        let statuses = members["members"]
            .as_array()
            .ok_or_else(|| format!("{id}: no members in {members}"))?
            .iter()
            .map(|member| {
                (
                    member["node_id"].as_str().unwrap_or_default().to_owned(),
                    member["status"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        let owners = shard_owners(&shards).map_err(|reason| format!("{id}: {reason}"))?;
        Ok(Layout {
            owners,
            statuses,
            shards,
            seen_at: Instant::now(),
        })
    }

    async fn handoffs_in_shard_table(&self) -> Result<i64, String> {
        let mut connection = crate::journal::connect(&self.database).await;
        let row = sqlx::query(
            "SELECT COUNT(*) AS shards, \
             COUNT(*) FILTER (WHERE handoff <> 'active' OR target IS NOT NULL) AS handoffs \
             FROM cluster_shards",
        )
        .fetch_one(&mut connection)
        .await
        .map_err(|error| format!("cluster_shards: {error}"))?;
        let shards: i64 = row.get("shards");
        if shards != i64::from(SHARD_COUNT) {
            return Err(format!("cluster_shards has {shards} rows"));
        }
        Ok(row.get("handoffs"))
    }

    /// `POST /v1/cluster/shards/{shard}/move` `{"to": to}` through member `via`: the reply.
    pub async fn move_shard(&self, via: usize, shard: u32, to: &str) -> crate::Reply {
        self.http(via)
            .call(
                Method::POST,
                &format!("/v1/cluster/shards/{shard}/move"),
                Some(&serde_json::json!({"to": to})),
            )
            .await
    }

    /// `POST /v1/cluster/rebalance?dry_run=…` through member `via`: the reply.
    pub async fn rebalance(&self, via: usize, dry_run: bool) -> crate::Reply {
        self.http(via)
            .call(
                Method::POST,
                &format!("/v1/cluster/rebalance?dry_run={dry_run}"),
                None,
            )
            .await
    }
}

/// Whether a `/v1/cluster/shards` entry shows a hand-off under way.
fn handing_off(shard: &Value) -> bool {
    let handoff = match shard.get("handoff") {
        None | Some(Value::Null) => false,
        Some(Value::String(state)) => !state.is_empty() && state != "active",
        Some(Value::Bool(under_way)) => *under_way,
        Some(_) => true,
    };
    handoff || shard.get("target").is_some_and(|target| !target.is_null())
}

/// The options of cluster member `id`.
fn member_options(
    database: &str,
    id: &str,
    cluster_addr: &str,
    advertised: &str,
    seeds: &[&str],
) -> NodeOptions {
    let mut options = NodeOptions::with_journal(database);
    options.args.extend([
        "--node-id".to_owned(),
        id.to_owned(),
        "--cluster-addr".to_owned(),
        cluster_addr.to_owned(),
    ]);
    if advertised != cluster_addr {
        options
            .args
            .extend(["--cluster-advertise".to_owned(), advertised.to_owned()]);
    }
    if !seeds.is_empty() {
        options.args.extend(["--seeds".to_owned(), seeds.join(",")]);
    }
    options.env.push((SECRET_VAR.to_owned(), SECRET.to_owned()));
    options
}
