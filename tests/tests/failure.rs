//! A node whose book feed and read models fail for good stops with a non-zero status (so an
//! orchestrator restarts it) instead of serving without them; restarted, it recovers.

use std::time::Duration;

use sqlx::Connection;
use tradefloor_tests::{Node, NodeOptions, account, deposit, postgres_database};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_read_models_give_up_stops_non_zero_and_recovers_on_restart() {
    let Some(url) = postgres_database("read_models_give_up").await else {
        return;
    };
    let mut node = Node::start(NodeOptions::with_journal(&url)).await;
    let http = node.http(None);
    deposit(&http, "alice", "USD", 100).await;

    // A read model that fails at every batch: its table is gone.
    let mut connection = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query("DROP TABLE trading_balances")
        .execute(&mut connection)
        .await
        .unwrap();
    deposit(&http, "alice", "USD", 1).await;
    assert_eq!(
        node.exited(Duration::from_secs(120)).await,
        Some(1),
        "the node exits non-zero once the read models' supervisor gives up"
    );

    // The node recreates its read-model tables at start and rebuilds nothing lost: the
    // journal has both deposits.
    node.restart().await;
    let http = node.http(None);
    assert_eq!(
        account(&http, "alice").await["balances"]["USD"]["total"],
        101
    );
    assert_eq!(node.stop().await, Some(0));
}
