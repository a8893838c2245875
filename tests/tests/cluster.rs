//! A cluster of real nodes on one PostgreSQL database (DESIGN §4): commands sent to any node
//! reach their entity; shards spread over the members and move to a new one; a node killed
//! under load fails over without losing an acknowledged command; a node restarted with the
//! same id rejoins; a node cut off from the others is fenced; shard moves and rebalances
//! under load lose nothing. Every test checks afterwards that each entity had one writer.
//!
//! Each test skips (and says so) without `DATABASE_URL`. Nothing here asserts a duration:
//! the failover and rebalance times are printed (`failover: … ms`, `rebalance: …`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::json;
use tradefloor_tests::cluster::{CLUSTER_TIMEOUT, Cluster, Layout, SECRET, shard_of};
use tradefloor_tests::journal::{assert_conservation, assert_one_writer};
use tradefloor_tests::load::{Ledger, Load};
use tradefloor_tests::{
    Http, Method, Node, account, deposit, eventually, limit_order, list_market, place,
};

/// USD and BTC each trading account gets.
const USD_EACH: u64 = 10_000;
const BTC_EACH: u64 = 10;

/// `count` accounts `{prefix}-{k}`, spread over the owners in `layout` as evenly as the
/// layout allows (one on each owner in turn).
fn accounts_on_every_node(
    layout: &Layout,
    ids: &[&str],
    prefix: &str,
    count: usize,
) -> Vec<String> {
    let per_node: Vec<Vec<String>> = ids
        .iter()
        .map(|id| layout.entities_on(id, prefix, count.div_ceil(ids.len())))
        .collect();
    (0..count)
        .map(|k| per_node[k % ids.len()][k / ids.len()].clone())
        .collect()
}

/// Deposits [`USD_EACH`] and [`BTC_EACH`] into every account, through the clients in turn;
/// the totals deposited.
async fn fund(through: &[Http], accounts: &[String]) -> BTreeMap<String, u64> {
    for (k, name) in accounts.iter().enumerate() {
        deposit(&through[k % through.len()], name, "USD", USD_EACH).await;
        deposit(&through[(k + 1) % through.len()], name, "BTC", BTC_EACH).await;
    }
    let count = accounts.len() as u64;
    BTreeMap::from([
        ("BTC".to_owned(), BTC_EACH * count),
        ("USD".to_owned(), USD_EACH * count),
    ])
}

/// Pairs the accounts: the second of each pair rests an ask of 2 @ 100 through one client,
/// the first lifts it through the next; every lift must fill. The balances every account
/// must end with.
async fn cross(through: &[Http], accounts: &[String]) -> BTreeMap<String, (u64, u64)> {
    let mut expected = BTreeMap::new();
    for (pair, chunk) in accounts.chunks(2).enumerate() {
        let [buyer, seller] = chunk else {
            expected.insert(chunk[0].clone(), (USD_EACH, BTC_EACH));
            continue;
        };
        let ask = place(
            &through[pair % through.len()],
            &limit_order(seller, "sell", 100, 2),
        )
        .await;
        assert_eq!(ask["status"], "open", "{ask}");
        let lift = place(
            &through[(pair + 1) % through.len()],
            &limit_order(buyer, "buy", 100, 2),
        )
        .await;
        assert_eq!(lift["status"], "filled", "{lift}");
        expected.insert(buyer.clone(), (USD_EACH - 200, BTC_EACH + 2));
        expected.insert(seller.clone(), (USD_EACH + 200, BTC_EACH - 2));
    }
    expected
}

/// Waits until every account, read through every client, has its expected `(USD, BTC)`
/// totals and nothing held (the sagas settle after the orders are answered).
async fn balances_agree(through: &[Http], expected: &BTreeMap<String, (u64, u64)>) {
    let deadline = Instant::now() + Duration::from_secs(120);
    for (node, http) in through.iter().enumerate() {
        for (name, (usd, btc)) in expected {
            loop {
                let body = account(http, name).await;
                let balances = &body["balances"];
                let seen = (
                    balances["USD"]["total"].as_u64(),
                    balances["BTC"]["total"].as_u64(),
                    balances["USD"]["held"].as_u64().unwrap_or(0)
                        + balances["BTC"]["held"].as_u64().unwrap_or(0),
                );
                if seen == (Some(*usd), Some(*btc), 0) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{name} through node {}: {body}, expected USD {usd} BTC {btc}",
                    node + 1
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

fn names(accounts: &[String]) -> Vec<&str> {
    accounts.iter().map(String::as_str).collect()
}

/// Prints how many shards each member owns.
fn print_spread(what: &str, layout: &Layout, ids: &[&str]) {
    let spread: Vec<String> = ids
        .iter()
        .map(|id| format!("{id}: {}", layout.owned_by(id)))
        .collect();
    eprintln!("{what}: {}", spread.join(", "));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_through_every_node_reach_their_entity() {
    let Some(mut cluster) = Cluster::start("cluster_commands", 3).await else {
        return;
    };
    let layout = cluster.settled().await;
    print_spread("shards", &layout, &["n1", "n2", "n3"]);
    for id in ["n1", "n2", "n3"] {
        let owned = layout.owned_by(id);
        assert!(
            (80..=90).contains(&owned),
            "{id} owns {owned} of 256 shards"
        );
    }

    list_market(&cluster.http(1)).await;
    let through: Vec<Http> = (1..=3).map(|number| cluster.http(number)).collect();
    let accounts = accounts_on_every_node(&layout, &["n1", "n2", "n3"], "trader", 30);
    let deposited = fund(&through, &accounts).await;
    let expected = cross(&through, &accounts).await;
    balances_agree(&through, &expected).await;
    for http in &through {
        assert_conservation(http, &names(&accounts), &deposited).await;
    }
    assert_one_writer(&cluster.database).await;
    cluster_wide_views(&cluster).await;
}

/// The actor tree through any node shows every member's actors; each node's metrics show
/// its part in the cluster.
async fn cluster_wide_views(cluster: &Cluster) {
    // The trade tape is a read model running on some node: every node serves it.
    for number in 1..=3 {
        let http = cluster.http(number);
        eventually(
            "the trade tape through every node",
            Duration::from_secs(60),
            || {
                let http = http.clone();
                async move {
                    let (status, trades) = http.get("/v1/markets/BTC-USD/trades").await;
                    (status == 200 && trades["trades"].as_array().is_some_and(|t| !t.is_empty()))
                        .then_some(())
                }
            },
        )
        .await;
    }
    let (status, tree) = cluster.http(2).get("/v1/actors?depth=2").await;
    assert_eq!(status, 200, "{tree}");
    let nodes: Vec<&str> = tree["children"]
        .as_array()
        .expect("the root lists the nodes")
        .iter()
        .map(|node| node["path"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(nodes, ["/n1", "/n2", "/n3"], "{tree}");
    for node in tree["children"].as_array().unwrap() {
        assert_eq!(node["status"], "running", "{node}");
        assert!(
            !node["children"].as_array().unwrap().is_empty(),
            "{node} shows its actors"
        );
    }
    let (status, one) = cluster.http(1).get("/v1/actors?node=n3&depth=1").await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["children"][0]["path"], "/n3", "{one}");
    let (status, unknown) = cluster.http(1).get("/v1/actors?node=n9").await;
    assert_eq!(status, 404, "{unknown}");

    // Every member's metrics through one node, each sample labelled with its node.
    let url = format!("{}/metrics?node=all", cluster.node(1).url);
    let all = eventually("every member's metrics", Duration::from_secs(30), || {
        let url = url.clone();
        async move {
            let text = reqwest::get(&url).await.ok()?.text().await.ok()?;
            ["n1", "n2", "n3"]
                .iter()
                .all(|node| {
                    text.contains(&format!(
                        "tradefloor_cluster_members{{node=\"{node}\",status=\"up\"}} 3"
                    ))
                })
                .then_some(text)
        }
    })
    .await;
    assert_eq!(
        all.matches("# TYPE tradefloor_cluster_members ").count(),
        1,
        "{all}"
    );
    let one = reqwest::get(format!("{}/metrics?node=n3", cluster.node(1).url))
        .await
        .expect("metrics of n3 through n1");
    assert_eq!(one.status(), 200);

    for number in 1..=3 {
        let url = format!("{}/metrics", cluster.node(number).url);
        let text = eventually("cluster metrics sampled", Duration::from_secs(30), || {
            let url = url.clone();
            async move {
                let text = reqwest::get(&url).await.ok()?.text().await.ok()?;
                text.contains("tradefloor_cluster_members{status=\"up\"} 3")
                    .then_some(text)
            }
        })
        .await;
        // Every node runs its share of the log's consumers (read models, feed, risk).
        let units: f64 = text
            .lines()
            .find_map(|line| line.strip_prefix("tradefloor_cluster_units_running "))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or(0.0);
        assert!(units >= 1.0, "{url} runs no consumer of the log");
        for series in [
            "tradefloor_cluster_shards_running",
            "tradefloor_cluster_coordinator",
            "tradefloor_cluster_units_running",
            "tradefloor_cluster_handoff_waiting",
        ] {
            assert!(text.contains(series), "{series} missing from {url}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fourth_node_takes_its_share() {
    let Some(mut cluster) = Cluster::start("cluster_fourth_node", 3).await else {
        return;
    };
    let before = cluster.settled().await;
    list_market(&cluster.http(1)).await;
    let accounts = accounts_on_every_node(&before, &["n1", "n2", "n3"], "early", 6);
    let through: Vec<Http> = (1..=3).map(|number| cluster.http(number)).collect();
    let mut deposited = fund(&through, &accounts).await;

    let n4 = cluster.add_node().await;
    let ready = Instant::now();
    let after = cluster.settled().await;
    eprintln!(
        "rebalance: {} shards moved in {} ms",
        after.moved_since(&before),
        after.seen_at.saturating_duration_since(ready).as_millis()
    );
    print_spread("shards", &after, &["n1", "n2", "n3", "n4"]);
    let owned = after.owned_by("n4");
    assert!((60..=70).contains(&owned), "n4 owns {owned} of 256 shards");

    // Trading through n4, on accounts whose shards each member owns.
    let via_n4 = [cluster.http(n4)];
    let late = accounts_on_every_node(&after, &["n1", "n2", "n3", "n4"], "late", 8);
    for (asset, amount) in fund(&via_n4, &late).await {
        *deposited.entry(asset).or_insert(0) += amount;
    }
    let mut expected = cross(&via_n4, &late).await;
    expected.extend(
        accounts
            .iter()
            .map(|name| (name.clone(), (USD_EACH, BTC_EACH))),
    );
    let all: Vec<String> = accounts.iter().chain(&late).cloned().collect();
    let through: Vec<Http> = (1..=4).map(|number| cluster.http(number)).collect();
    balances_agree(&through, &expected).await;
    assert_conservation(&cluster.http(n4), &names(&all), &deposited).await;
    assert_one_writer(&cluster.database).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_fails_over() {
    let Some(mut cluster) = Cluster::start("cluster_kill_9", 3).await else {
        return;
    };
    let layout = cluster.settled().await;
    let accounts = accounts_on_every_node(&layout, &["n1", "n2", "n3"], "load", 24);
    let ledger = Ledger::new();
    let load = Load::start(&ledger, vec![cluster.http(2), cluster.http(3)], accounts);
    // Let the load reach every shard's owner first.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let probe = layout.entities_on("n1", "probe", 1).remove(0);
    let n2 = cluster.http(2);
    cluster.kill(1).await;
    let killed = Instant::now();
    let deadline = killed + CLUSTER_TIMEOUT;
    while !ledger.deposit(&n2, &probe, 1).await {
        assert!(
            Instant::now() < deadline,
            "{probe} (shard {}, owned by the killed n1) never answers again",
            shard_of(&probe)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("failover: {} ms", killed.elapsed().as_millis());

    tokio::time::sleep(Duration::from_secs(3)).await;
    let ledger = load.stop().await;
    let after = cluster.settled_among(&[2, 3]).await;
    print_spread("shards after the failover", &after, &["n2", "n3"]);
    ledger.assert_all_present(&n2).await;
    assert_one_writer(&cluster.database).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_with_same_id_rejoins() {
    let Some(mut cluster) = Cluster::start("cluster_restart", 3).await else {
        return;
    };
    let layout = cluster.settled().await;
    let ledger = Ledger::new();
    let accounts = accounts_on_every_node(&layout, &["n1", "n2", "n3"], "kept", 9);
    for (k, name) in accounts.iter().enumerate() {
        let http = cluster.http(k % 3 + 1);
        assert!(
            ledger.deposit(&http, name, 100).await,
            "deposit into {name}"
        );
    }

    assert_eq!(cluster.stop(3).await, Some(0), "a clean exit on SIGTERM");
    let without = cluster.settled_among(&[1, 2]).await;
    print_spread("shards without n3", &without, &["n1", "n2"]);
    ledger.assert_all_present(&cluster.http(1)).await;

    cluster.restart(3).await;
    let after = cluster.settled().await;
    print_spread("shards after n3 rejoined", &after, &["n1", "n2", "n3"]);
    assert_eq!(after.statuses.get("n3").map(String::as_str), Some("up"));
    assert!(after.owned_by("n3") > 0, "n3 owns shards again");
    ledger.assert_all_present(&cluster.http(3)).await;
    assert_one_writer(&cluster.database).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_fences_the_cut_off_node() {
    let Some(mut cluster) = Cluster::start_with_proxies("cluster_partition", 3, &[1]).await else {
        return;
    };
    let layout = cluster.settled().await;
    let ledger = Ledger::new();
    let accounts = accounts_on_every_node(&layout, &["n1", "n2", "n3"], "before", 6);
    for (k, name) in accounts.iter().enumerate() {
        let http = cluster.http(k % 3 + 1);
        assert!(
            ledger.deposit(&http, name, 100).await,
            "deposit into {name}"
        );
    }
    // An account outside the ledger: a refused deposit may or may not count in it.
    let victim = layout.entities_on("n1", "victim", 1).remove(0);
    deposit(&cluster.http(1), &victim, "USD", 100).await;

    cluster.proxy(1).cut().await;
    let cut = Instant::now();
    let apart = cluster.settled_among(&[2, 3]).await;
    eprintln!(
        "partition: n2 and n3 own every shard {} ms after the cut",
        cut.elapsed().as_millis()
    );
    print_spread("shards during the partition", &apart, &["n2", "n3"]);

    // n1 was the owner of the victim's shard: it must not acknowledge a write to it now.
    let fenced_deposit = json!({"asset": "USD", "amount": 7, "command_id": "fenced-deposit"});
    match cluster
        .http(1)
        .try_call(
            Method::POST,
            &format!("/v1/accounts/{victim}/deposits"),
            Some(&fenced_deposit),
        )
        .await
    {
        Ok(reply) => {
            eprintln!("the cut-off n1 answered {}: {}", reply.status, reply.body);
            assert!(
                !(200..300).contains(&reply.status),
                "the cut-off n1 acknowledged a deposit into {victim}: {} {}",
                reply.status,
                reply.body
            );
        }
        Err(error) => eprintln!("the cut-off n1 did not answer: {error}"),
    }
    // The others serve the victim meanwhile.
    deposit(&cluster.http(2), &victim, "USD", 10).await;

    cluster.proxy(1).heal().await;
    // n1 either exited (fenced) or comes back up; a node that stays apart is restarted, and
    // says so.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if !cluster.node_mut(1).is_running() {
            eprintln!("n1 exited during the partition; restarting it");
            cluster.restart(1).await;
            break;
        }
        if let Ok(seen) = cluster.layout_via(2).await
            && seen.statuses.get("n1").map(String::as_str) == Some("up")
        {
            eprintln!("n1 rejoined after the heal");
            break;
        }
        if Instant::now() >= deadline {
            eprintln!(
                "WARNING: n1 neither exited nor rejoined 120 s after the heal; restarting it"
            );
            cluster.stop(1).await;
            cluster.restart(1).await;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let healed = cluster.settled().await;
    print_spread("shards after the heal", &healed, &["n1", "n2", "n3"]);

    let victim_total = account(&cluster.http(1), &victim).await["balances"]["USD"]["total"]
        .as_u64()
        .expect("the victim's USD total");
    // The refused deposit may count at most once, and only if it was not acknowledged.
    assert!(
        victim_total == 110 || victim_total == 117,
        "the victim's total is {victim_total}"
    );
    eprintln!("the victim's total after the heal: {victim_total}");
    ledger.assert_all_present(&cluster.http(3)).await;
    let deposited = BTreeMap::from([(
        "USD".to_owned(),
        ledger.acknowledged_by_account().values().sum::<u64>() + victim_total,
    )]);
    let mut all = accounts.clone();
    all.push(victim.clone());
    assert_conservation(&cluster.http(2), &names(&all), &deposited).await;
    assert_one_writer(&cluster.database).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_rebalance_and_move_under_load_lose_nothing() {
    let Some(mut cluster) = Cluster::start("cluster_move", 3).await else {
        return;
    };
    let layout = cluster.settled().await;
    let accounts = accounts_on_every_node(&layout, &["n1", "n2", "n3"], "moved", 24);
    // Every shard of n1 with load on it moves to n2: n2 then owns several more shards than
    // the others, so the rebalance has something to do.
    let mut shards: Vec<u32> = accounts
        .iter()
        .filter(|name| layout.owner_of(name) == "n1")
        .map(|name| shard_of(name))
        .collect();
    shards.sort_unstable();
    shards.dedup();
    let ledger = Ledger::new();
    let load = Load::start(&ledger, vec![cluster.http(2), cluster.http(3)], accounts);
    tokio::time::sleep(Duration::from_secs(3)).await;

    let moving = Instant::now();
    for shard in &shards {
        let reply = cluster.move_shard(3, *shard, "n2").await;
        assert!(
            (200..300).contains(&reply.status),
            "move shard {shard} to n2: {} {}",
            reply.status,
            reply.body
        );
    }
    let deadline = Instant::now() + CLUSTER_TIMEOUT;
    let moved = loop {
        let layout = cluster.settled().await;
        let pending: Vec<u32> = shards
            .iter()
            .copied()
            .filter(|shard| layout.owners[shard] != "n2")
            .collect();
        if pending.is_empty() {
            break layout;
        }
        assert!(
            Instant::now() < deadline,
            "shards {pending:?} are not on n2 yet"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!(
        "move: shards {shards:?} (under load) on n2 in {} ms",
        moved.seen_at.saturating_duration_since(moving).as_millis()
    );
    print_spread("shards after the move", &moved, &["n1", "n2", "n3"]);

    let plan = cluster.rebalance(1, true).await;
    assert_eq!(plan.status, 200, "{}", plan.body);
    assert_eq!(plan.body["dry_run"], true, "{}", plan.body);
    assert!(plan.body["moves"].is_array(), "{}", plan.body);
    eprintln!("rebalance plan: {}", plan.body["moves"]);
    let planned = cluster.settled().await;
    eprintln!(
        "a dry run moved {} shards (none expected)",
        planned.moved_since(&moved)
    );

    let rebalancing = Instant::now();
    let run = cluster.rebalance(2, false).await;
    assert!(
        (200..300).contains(&run.status),
        "rebalance: {} {}",
        run.status,
        run.body
    );
    // The moves the run answered with are all made (its reply may come before they are).
    let moves: Vec<(u32, String)> = run.body["moves"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|step| {
            let shard = u32::try_from(step["shard"].as_u64()?).ok()?;
            Some((shard, step["to"].as_str()?.to_owned()))
        })
        .collect();
    let deadline = Instant::now() + CLUSTER_TIMEOUT;
    let rebalanced = loop {
        let layout = cluster.settled().await;
        let pending = moves
            .iter()
            .filter(|(shard, to)| layout.owners[shard] != *to)
            .count();
        if pending == 0 {
            break layout;
        }
        assert!(
            Instant::now() < deadline,
            "{pending} of the rebalance's moves {} are not made",
            run.body["moves"]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!(
        "rebalance: {} shards moved in {} ms (planned {}, answered {})",
        rebalanced.moved_since(&planned),
        rebalanced
            .seen_at
            .saturating_duration_since(rebalancing)
            .as_millis(),
        plan.body["moves"].as_array().map_or(0, Vec::len),
        moves.len()
    );
    print_spread(
        "shards after the rebalance",
        &rebalanced,
        &["n1", "n2", "n3"],
    );

    tokio::time::sleep(Duration::from_secs(2)).await;
    let ledger = load.stop().await;
    ledger.assert_all_present(&cluster.http(1)).await;
    assert_one_writer(&cluster.database).await;
}

/// Waits for `outsider` (launched with captured logs) to exit non-zero and to have said
/// `words`.
async fn refused_saying(mut outsider: Node, words: &str) {
    let status = outsider.exited(CLUSTER_TIMEOUT).await;
    assert!(
        status.is_some_and(|code| code != 0),
        "the outsider exited with {status:?}: {}",
        outsider.logs()
    );
    // Its last words reach the captured log a moment after the exit.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !outsider.logs().contains(words) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(outsider.logs().contains(words), "{}", outsider.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_another_secret_is_refused() {
    let Some(mut cluster) = Cluster::start("cluster_secret", 2).await else {
        return;
    };
    let before = cluster.settled().await;
    let outsider = Node::launch(cluster.outsider_options("n9", "not-the-cluster-secret")).await;
    refused_saying(outsider, "is this node's cluster secret the cluster's?").await;
    let (status, members) = cluster.http(1).get("/v1/cluster/members").await;
    assert_eq!(status, 200, "{members}");
    let ids: Vec<&str> = members["members"]
        .as_array()
        .expect("a member list")
        .iter()
        .filter_map(|member| member["node_id"].as_str())
        .collect();
    assert_eq!(ids, ["n1", "n2"], "the outsider never joined the table");
    let after = cluster.settled().await;
    assert_eq!(
        after.moved_since(&before),
        0,
        "no shard moved for the outsider"
    );
}

/// A connection to `address` that sent `bytes`.
async fn sent(address: &str, bytes: &[u8]) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("the cluster port accepts");
    // The node may close the connection before the last byte is written: not a failure.
    let _ = stream.write_all(bytes).await;
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_cluster_port_closes_the_connection_and_changes_nothing() {
    let Some(mut cluster) = Cluster::start("cluster_port_guard", 1).await else {
        return;
    };
    let port = cluster.member(1).cluster_addr.clone();
    let prompt = Duration::from_secs(3);
    // A length prefix of 2^62 bytes (what aborted the node), and one of 1 GiB.
    for prefix in [0x4000_0000_0000_0000_u64, 1 << 30] {
        let mut stream = sent(&port, &prefix.to_be_bytes()).await;
        assert!(
            tradefloor_tests::closed_within(&mut stream, prompt)
                .await
                .is_some(),
            "a length prefix of {prefix} bytes is refused at once"
        );
    }
    // Small frames of garbage: ractor_cluster would discard them one by one, forever.
    let frames: Vec<u8> = (0..5_u8)
        .flat_map(|k| [&10_u64.to_be_bytes()[..], &[k; 10][..]].concat())
        .collect();
    let mut stream = sent(&port, &frames).await;
    assert!(
        tradefloor_tests::closed_within(&mut stream, prompt)
            .await
            .is_some(),
        "garbage frames"
    );
    // More unauthenticated connections than the cap (64): the ones past it are closed at
    // once, while the others wait out the handshake deadline (5 s).
    let mut idle = Vec::new();
    for _ in 0..64 {
        idle.push(sent(&port, &[]).await);
    }
    let mut over = sent(&port, &[]).await;
    assert!(
        tradefloor_tests::closed_within(&mut over, prompt)
            .await
            .is_some(),
        "a connection past the cap is closed at once"
    );
    // A slow handshake: one byte a second, never a whole frame header's worth of sense.
    let mut slow = sent(&port, &[0]).await;
    let trickle = async {
        use tokio::io::AsyncWriteExt;
        let started = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if slow.write_all(&[0]).await.is_err() || started.elapsed() > Duration::from_secs(10) {
                return;
            }
        }
    };
    trickle.await;
    assert!(
        tradefloor_tests::closed_within(&mut slow, Duration::from_secs(1))
            .await
            .is_some(),
        "a handshake that takes 10 s was cut off"
    );
    for mut stream in idle {
        assert!(
            tradefloor_tests::closed_within(&mut stream, Duration::from_secs(5))
                .await
                .is_some(),
            "an idle connection outlived the handshake deadline"
        );
    }
    // ractor_cluster's own listener (on a loopback port nobody is told of) is sealed: a
    // frame header announcing 1 MiB (within ractor_cluster's own bound, so it would wait for
    // the payload) is refused at once there too.
    let http_port: u16 = cluster
        .node(1)
        .url
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let guarded_port: u16 = port.rsplit(':').next().unwrap().parse().unwrap();
    let others: Vec<u16> = tradefloor_tests::listening_ports(cluster.node(1).pid())
        .into_iter()
        .filter(|listening| ![http_port, guarded_port].contains(listening))
        .collect();
    assert!(!others.is_empty(), "ractor_cluster's own listener is found");
    for other in others {
        let address = format!("127.0.0.1:{other}");
        let mut stream = sent(&address, &(1_u64 << 20).to_be_bytes()).await;
        assert!(
            tradefloor_tests::closed_within(&mut stream, prompt)
                .await
                .is_some(),
            "port {other} closed the connection"
        );
    }
    assert!(cluster.node_mut(1).is_running(), "the node is alive");
    // The node serves on: a second node joins through the same port, and orders go through.
    let second = cluster.add_node().await;
    let layout = cluster.settled().await;
    assert!(
        layout.owned_by(cluster.id(second)) > 0,
        "the second node took its share"
    );
    for number in [1, second] {
        deposit(
            &cluster.http(number),
            &format!("guard-{number}"),
            "USD",
            1_000,
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_another_shard_count_is_refused_at_join() {
    let Some(mut cluster) = Cluster::start("cluster_shard_count", 1).await else {
        return;
    };
    let before = cluster.settled().await;
    let mut options = cluster.outsider_options("n9", SECRET);
    options.env.push((
        "TRADEFLOOR_TRADING__SHARD_COUNT".to_owned(),
        "128".to_owned(),
    ));
    let outsider = Node::launch(options).await;
    refused_saying(
        outsider,
        "trading.shard_count is 128 but the cluster's is 256",
    )
    .await;
    let (status, members) = cluster.http(1).get("/v1/cluster/members").await;
    assert_eq!(status, 200, "{members}");
    assert_eq!(
        members["members"].as_array().map(Vec::len),
        Some(1),
        "{members}"
    );
    assert_eq!(cluster.settled().await.moved_since(&before), 0);
    deposit(&cluster.http(1), "shards-a", "USD", 10).await;
}
