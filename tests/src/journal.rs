//! Checks of a cluster's shared PostgreSQL journal after the fact: one writer per entity
//! (every stream's sequences are exactly 1..=n, every shard fence at most the shard
//! table's epoch) and conservation of every asset (through HTTP).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sqlx::Connection;

use crate::{Http, totals};

/// A connection to the test database `database` (a URL from
/// [`postgres_database`](crate::postgres_database)).
pub async fn connect(database: &str) -> sqlx::PgConnection {
    sqlx::PgConnection::connect(database)
        .await
        .expect("the test database answers")
}

/// Every stream's sequences are exactly `1..=n` (no gap, no duplicate), and every shard
/// fence (`shard-{s}` in `fences`) is the epoch of shard `s` in `cluster_shards` or lower:
/// no writer ever claimed an epoch the shard table did not give out.
pub async fn assert_one_writer(database: &str) {
    let mut connection = connect(database).await;
    let streams: Vec<(String, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT stream, COUNT(*), COUNT(DISTINCT sequence), MIN(sequence), MAX(sequence) \
         FROM events GROUP BY stream ORDER BY stream",
    )
    .fetch_all(&mut connection)
    .await
    .expect("read the events' sequences");
    assert!(!streams.is_empty(), "the journal has events");
    let mut broken = Vec::new();
    for (stream, count, distinct, min, max) in &streams {
        if count != distinct || *min != 1 || max != count {
            broken.push(format!(
                "{stream}: {count} events, {distinct} distinct sequences, {min}..={max}"
            ));
        }
    }
    assert!(
        broken.is_empty(),
        "streams whose sequences are not exactly 1..=n: {broken:#?}"
    );

    let fences: Vec<(String, i64, Option<i64>)> = sqlx::query_as(
        "SELECT f.fence, f.epoch, s.epoch FROM fences f \
         LEFT JOIN cluster_shards s ON f.fence = 'shard-' || s.shard::text \
         WHERE f.fence LIKE 'shard-%' ORDER BY f.fence",
    )
    .fetch_all(&mut connection)
    .await
    .expect("read the fences and the shard table");
    let mut broken = Vec::new();
    for (fence, epoch, shard_epoch) in &fences {
        match shard_epoch {
            Some(shard_epoch) if epoch <= shard_epoch => {}
            Some(shard_epoch) => broken.push(format!(
                "{fence}: fence epoch {epoch} > shard table epoch {shard_epoch}"
            )),
            None => broken.push(format!("{fence}: no such shard in cluster_shards")),
        }
    }
    assert!(
        broken.is_empty(),
        "fences ahead of the shard table: {broken:#?}"
    );
    eprintln!(
        "one writer: {} streams, {} shard fences checked",
        streams.len(),
        fences.len()
    );
}

/// Waits (sagas settle trades after the orders are answered) until Σ total per asset over
/// `accounts`, read through `http`, equals `deposited`, then checks it does.
pub async fn assert_conservation(
    http: &Http,
    accounts: &[&str],
    deposited: &BTreeMap<String, u64>,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = totals(http, accounts).await;
        if now == *deposited || Instant::now() >= deadline {
            assert_eq!(&now, deposited, "every asset is conserved");
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
