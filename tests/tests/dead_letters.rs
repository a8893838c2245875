//! Dead letters against a real node on its SQLite files: a read model that fails on an
//! event (a trigger in its table refuses it, as a broken schema would) tries it again with
//! backoff, parks it and goes on, and the node stays ready; an account's later events are
//! parked behind its first (its balances apply in order), across a restart too; a retry
//! before the fix fails again and changes nothing; after the fix (the trigger dropped) a
//! retry applies the letters in order and the read model equals the accounts; a letter
//! given up is deleted. Through `GET /v1/dead-letters`, `ctl dead-letters`, and the metrics;
//! for admins only.

use std::time::Duration;

use serde_json::{Value, json};
use tradefloor_persistence::{Database, JournalConfig, SqlValue};
use tradefloor_tests::{
    Http, Method, Node, NodeOptions, deposit, eventually, limit_order, list_market, place,
    tradefloor,
};

const ADMIN_TOKEN: &str = "admin-secret-token-d3a91c7e20";
const TRADER_TOKEN: &str = "alice-trader-token-8b26f0e4a1";
/// The longest a read model may take to try an event three times and park it.
const PARKED_WITHIN: Duration = Duration::from_secs(30);

fn config() -> String {
    format!(
        "[[tokens]]\ntoken = \"{ADMIN_TOKEN}\"\nrole = \"admin\"\n\n\
         [[tokens]]\ntoken = \"{TRADER_TOKEN}\"\nrole = \"trader\"\naccounts = [\"alice\"]\n\n\
         [trading]\ndead_letter_attempts_max = 3\ndead_letter_backoff_min_ms = 20\n\
         dead_letter_backoff_max_ms = 100\n"
    )
}

/// The node's read models' database (a file beside its journal), opened beside it (SQLite in
/// WAL mode takes a second writer).
async fn database(node: &Node) -> Database {
    let file = node.data_dir.join("journal-read-models.sqlite");
    let url = format!("sqlite:{}", file.display());
    Database::connect(&url, &JournalConfig::default())
        .await
        .expect("the journal opens")
}

/// The letters on the node, by id.
async fn letters(http: &Http) -> Vec<Value> {
    let (status, page) = http.get("/v1/dead-letters").await;
    assert_eq!(status, 200, "{page}");
    page["letters"].as_array().expect("letters").clone()
}

/// Waits until the node's letters satisfy `check`; returns them.
async fn letters_when(http: &Http, what: &str, check: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    eventually(what, PARKED_WITHIN, || async {
        let letters = letters(http).await;
        check(&letters).then_some(letters)
    })
    .await
}

/// `account`'s `USD` total in the balances read model, if it has a row.
async fn read_model_usd(database: &Database, account: &str) -> Option<i64> {
    let rows = database
        .fetch(
            "SELECT total FROM trading_balances WHERE account_id = $1 AND asset = 'USD'",
            &[SqlValue::from(account)],
        )
        .await
        .expect("the read model reads");
    rows.first().and_then(|row| row[0].integer())
}

fn ids(letters: &[Value]) -> Vec<String> {
    letters
        .iter()
        .map(|letter| letter["id"].as_str().expect("an id").to_owned())
        .collect()
}

/// The trade quantities on the tape.
async fn tape(http: &Http) -> Vec<u64> {
    let (status, body) = http.get("/v1/markets/BTC-USD/trades").await;
    assert_eq!(status, 200, "{body}");
    let mut quantities: Vec<u64> = body["trades"]
        .as_array()
        .expect("trades")
        .iter()
        .map(|trade| trade["quantity"].as_u64().expect("a quantity"))
        .collect();
    quantities.sort_unstable();
    quantities
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_events_are_parked_while_the_node_goes_on_and_retried_after_a_fix() {
    let mut node = Node::start(NodeOptions::with_config(config())).await;
    let admin = node.http(Some(ADMIN_TOKEN));
    list_market(&admin).await;
    deposit(&admin, "alice", "USD", 100_000).await;
    deposit(&admin, "bob", "BTC", 100).await;
    let journal = database(&node).await;
    for trigger in [
        "CREATE TRIGGER poison_mallory BEFORE INSERT ON trading_balances \
         WHEN NEW.account_id = 'mallory' BEGIN SELECT RAISE(ABORT, 'mallory is poisoned'); END",
        "CREATE TRIGGER poison_trades BEFORE INSERT ON trading_trades \
         WHEN NEW.quantity IN (3, 7) BEGIN SELECT RAISE(ABORT, 'this trade is poisoned'); END",
    ] {
        journal.execute(trigger).await.expect("the trigger is made");
    }

    // Mallory's first deposit fails the balances read model, her second is held behind it;
    // bob's between them, and the trades of 7 and 3 fail the trades read model.
    deposit(&admin, "mallory", "USD", 100).await;
    deposit(&admin, "bob", "USD", 50).await;
    deposit(&admin, "mallory", "USD", 20).await;
    for quantity in [7, 2, 3] {
        place(&admin, &limit_order("bob", "sell", 100, quantity)).await;
        place(&admin, &limit_order("alice", "buy", 100, quantity)).await;
    }
    let parked = letters_when(&admin, "four letters", |letters| letters.len() == 4).await;
    let [first, held, seven, three] = [0, 1, 2, 3].map(|index| parked[index].clone());
    assert!(
        first["id"]
            .as_str()
            .unwrap()
            .starts_with("trading.balances:"),
        "{parked:?}"
    );
    assert_eq!(
        (first["attempts"].as_u64(), first["held_by"].as_u64()),
        (Some(3), None)
    );
    assert!(
        first["error"]
            .as_str()
            .unwrap()
            .contains("mallory is poisoned"),
        "{first}"
    );
    assert_eq!(first["order_key"], "account|mallory");
    assert_eq!(
        first["event"]["event"]["deposited"]["amount"], 100,
        "{first}"
    );
    assert_eq!(
        (held["attempts"].as_u64(), held["held_by"].clone()),
        (Some(0), first["offset"].clone())
    );
    assert!(
        seven["id"].as_str().unwrap().starts_with("trading.trades:"),
        "{seven}"
    );
    assert!(
        seven["error"]
            .as_str()
            .unwrap()
            .contains("this trade is poisoned"),
        "{seven}"
    );
    assert_eq!(seven["event"]["event"]["traded"]["quantity"], 7, "{seven}");
    assert_eq!(three["event"]["event"]["traded"]["quantity"], 3, "{three}");

    // The node went on: ready, bob's balance and the trade of 2 are in the read models.
    assert_eq!(admin.get("/health/ready").await.0, 200);
    assert_eq!(tape(&admin).await, [2]);
    let bob_usd = |body: Value| body["balances"]["USD"]["total"].as_i64();
    let settled = eventually("bob's USD in the read model", PARKED_WITHIN, || async {
        let entity = bob_usd(admin.get("/v1/accounts/bob").await.1);
        (entity == Some(50 + 12 * 100) && read_model_usd(&journal, "bob").await == entity)
            .then_some(())
    })
    .await;
    let () = settled;
    assert_eq!(read_model_usd(&journal, "mallory").await, None);
    let (_, metrics) = admin.get("/metrics").await;
    let metrics = metrics.as_str().map(str::to_owned).unwrap_or_default();
    assert!(
        metrics.contains("tradefloor_parked_events{consumer=\"trading.balances\"} 2"),
        "{metrics}"
    );

    // The operator sees them from a terminal too.
    let output = tradefloor(&node, &["ctl", "--token", ADMIN_TOKEN, "dead-letters"]).await;
    let text = String::from_utf8(output.stdout).expect("UTF-8");
    assert!(output.status.success(), "{text}");
    for id in ids(&parked) {
        assert!(text.contains(&id), "{id} in {text}");
    }

    // Restarted, the account is still held: a new deposit of hers waits behind the first.
    assert_eq!(node.stop().await, Some(0));
    node.restart().await;
    let admin = node.http(Some(ADMIN_TOKEN));
    deposit(&admin, "mallory", "USD", 5).await;
    letters_when(&admin, "the new deposit held", |letters| letters.len() == 5).await;

    // A retry before the fix fails again: one more attempt, nothing applied.
    let first_id = first["id"].as_str().unwrap().to_owned();
    let retry = |id: &str| format!("/v1/dead-letters/{id}/retry");
    let reply = admin.call(Method::POST, &retry(&first_id), None).await;
    assert_eq!(
        (reply.status, reply.body["letters"].as_u64()),
        (202, Some(3)),
        "{}",
        reply.body
    );
    let failed_again = letters_when(&admin, "the retry to fail", |letters| {
        letters.len() == 5 && letters[0]["attempts"] == 4 && letters[0]["retry_requested"] == false
    })
    .await;
    assert!(
        failed_again
            .iter()
            .all(|letter| letter["retry_requested"] == false)
    );
    assert_eq!(read_model_usd(&journal, "mallory").await, None);

    // Fixed: her letters apply in order, the read model equals the account.
    journal
        .execute("DROP TRIGGER poison_mallory")
        .await
        .expect("dropped");
    journal
        .execute("DROP TRIGGER poison_trades")
        .await
        .expect("dropped");
    let reply = admin.call(Method::POST, &retry(&first_id), None).await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    letters_when(&admin, "her letters applied", |letters| letters.len() == 2).await;
    assert_eq!(read_model_usd(&journal, "mallory").await, Some(125));
    let output = tradefloor(
        &node,
        &[
            "ctl",
            "--token",
            ADMIN_TOKEN,
            "dead-letters",
            "retry",
            seven["id"].as_str().unwrap(),
        ],
    )
    .await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    letters_when(&admin, "the trade of 7 applied", |letters| {
        letters.len() == 1
    })
    .await;
    assert_eq!(tape(&admin).await, [2, 7]);

    // The trade of 3 is given up: its letter goes, the tape never shows it.
    let three_id = three["id"].as_str().unwrap();
    let letter = format!("/v1/dead-letters/{three_id}");
    assert_eq!(admin.get(&letter).await.0, 200);
    let reply = admin.call(Method::DELETE, &letter, None).await;
    assert_eq!(reply.status, 204, "{}", reply.body);
    assert_eq!(admin.get(&letter).await.0, 404);
    assert_eq!(admin.call(Method::DELETE, &letter, None).await.status, 404);
    assert_eq!(
        admin
            .call(Method::POST, &retry(three_id), None)
            .await
            .status,
        404
    );
    assert_eq!(tape(&admin).await, [2, 7]);

    // Admins only; bad ids say so.
    let trader = node.http(Some(TRADER_TOKEN));
    assert_eq!(trader.get("/v1/dead-letters").await.0, 403);
    assert_eq!(
        trader
            .call(Method::POST, &retry(&first_id), None)
            .await
            .status,
        403
    );
    for bad in ["nocolon", "trading.trades:x", "a%20b:1"] {
        assert_eq!(
            admin.get(&format!("/v1/dead-letters/{bad}")).await.0,
            400,
            "{bad}"
        );
    }
    assert_eq!(admin.get("/v1/dead-letters?limit=0").await.0, 400);
    let (status, page) = admin.get("/v1/dead-letters").await;
    assert_eq!(status, 200);
    assert!(page["undelivered"]["total"].is_u64(), "{page}");
    assert_eq!(page["counts"], json!({}), "{page}");
    assert_eq!(node.stop().await, Some(0));
}
