//! Misconfigurations a new operator makes, each refused at start with one clear line and a
//! non-zero exit, changing nothing: seeds without a cluster secret, and a second standalone
//! node on a journal another node holds (SQLite and PostgreSQL).

use serde_json::json;
use tradefloor_tests::{Node, NodeOptions, deposit, postgres_database, start_refused};

#[tokio::test]
async fn seeds_without_a_cluster_secret_are_refused() {
    let options = NodeOptions {
        args: vec!["--seeds".to_owned(), "127.0.0.1:1".to_owned()],
        ..NodeOptions::default()
    };
    let (code, stderr) = start_refused(&options, "127.0.0.1:0").await;
    assert_ne!(code, Some(0), "refused: {stderr}");
    assert!(
        stderr.contains("seeds are set but cluster.secret is not"),
        "{stderr}"
    );
}

/// Starts `first` on a journal and then a node `n2` with `second`'s options on the same
/// journal: `n2` must refuse, naming `n1`, and `n1` must serve on, its data unchanged.
async fn a_second_standalone_node_is_refused(first: NodeOptions, second: NodeOptions) {
    let first = Node::start(first).await;
    let http = first.http(None);
    deposit(&http, "claim-a", "USD", 100).await;
    let mut second = second;
    second
        .args
        .extend(["--node-id".to_owned(), "n2".to_owned()]);
    let (code, stderr) = start_refused(&second, "127.0.0.1:0").await;
    assert_ne!(code, Some(0), "refused: {stderr}");
    assert!(
        stderr.contains("node n2 cannot use this journal as a standalone node")
            && stderr.contains("node n1 (standalone)"),
        "{stderr}"
    );
    let (status, account) = http.get("/v1/accounts/claim-a").await;
    assert_eq!(status, 200, "{account}");
    assert_eq!(account["balances"]["USD"]["total"], json!(100), "{account}");
}

#[tokio::test]
async fn a_second_standalone_node_on_one_sqlite_journal_is_refused() {
    let holder = tempfile::tempdir().expect("a temporary directory");
    let journal = format!("sqlite:{}", holder.path().join("journal.sqlite").display());
    let options = NodeOptions::with_journal(&journal);
    a_second_standalone_node_is_refused(options.clone(), options).await;
}

#[tokio::test]
async fn a_second_standalone_node_on_one_postgres_journal_is_refused() {
    let Some(database) = postgres_database("journal_claim").await else {
        return;
    };
    let options = NodeOptions::with_journal(&database);
    a_second_standalone_node_is_refused(options.clone(), options).await;
}
