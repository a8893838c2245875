//! `tradefloor ctl`: the HTTP API from a terminal.
//!
//! Each command makes one call (a rebalance also polls the shards for its progress) and
//! prints the answer for people: aligned tables, the actor tree drawn like `pstree`. With
//! `--json` it prints the node's JSON as it came, pretty. An error answer ends the command
//! with the node's status, code and message (and a non-zero exit).
//!
//! The rendering functions are pure, text in from the [`api`] types and a string out, so
//! they are tested without a node.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde::de::DeserializeOwned;

use crate::api;
use crate::cli::{CtlArgs, CtlCommand};
use crate::client::{Call, Client};
use crate::error::Error;

pub mod archive;
pub mod dead_letters;
pub mod projections;
pub mod strategies;

/// How often a running rebalance's progress is read.
pub const REBALANCE_POLL_INTERVAL: Duration = Duration::from_millis(200);
/// How long `ctl rebalance` follows a rebalance before it leaves it running and says so.
pub const REBALANCE_FOLLOW_MAX: Duration = Duration::from_secs(120);

/// Runs one `ctl` command and prints its answer.
pub async fn run(args: CtlArgs) -> Result<(), Error> {
    let client = Client::new(&args.node, args.token.as_deref(), args.ca.as_deref())?;
    let json = args.json;
    let text = match args.command {
        CtlCommand::Members => show(client.members(), json, render_members).await?,
        CtlCommand::Shards => show(client.shards(), json, render_shards).await?,
        CtlCommand::Tree { node_id, depth } => {
            let query = api::ActorsQuery {
                node: node_id,
                depth,
            };
            show(client.actors(&query), json, render_tree).await?
        }
        CtlCommand::Rebalance { dry_run } => rebalance(&client, dry_run, json).await?,
        CtlCommand::Move { shard, to } => {
            show(client.move_shard(shard, &to), json, render_move).await?
        }
        CtlCommand::Leave { node_id } => leave(&client, &node_id, json).await?,
        CtlCommand::Account { account_id } => {
            show(client.account(&account_id), json, render_account).await?
        }
        CtlCommand::Deposit {
            account_id,
            asset,
            amount,
            command_id,
        } => {
            let deposit = api::TransferRequest {
                asset,
                amount,
                command_id,
                effective_at: None,
            };
            show(client.deposit(&account_id, &deposit), json, render_balances).await?
        }
        CtlCommand::Order {
            account_id,
            symbol,
            side,
            quantity,
            price,
            market,
            time_in_force,
            post_only,
            order_id,
            command_id,
        } => {
            let order = api::OrderRequest {
                order_id,
                command_id,
                account_id,
                symbol,
                side,
                order_type: if market {
                    api::OrderType::Market
                } else {
                    api::OrderType::Limit
                },
                price,
                quantity,
                time_in_force,
                post_only,
            };
            show(client.place_order(&order), json, render_order).await?
        }
        CtlCommand::Cancel { order_id } => {
            show(client.cancel_order(order_id), json, render_order).await?
        }
        CtlCommand::Book { symbol, depth } => {
            show(client.book(&symbol, depth), json, render_book).await?
        }
        CtlCommand::Watch {
            target,
            after,
            count,
        } => {
            let target = crate::watch::resolve(&client, &target).await?;
            return crate::watch::watch(&client, &target, after, count, json).await;
        }
        CtlCommand::Strategies => {
            show(client.strategies(), json, strategies::render_strategies).await?
        }
        CtlCommand::Strategy { command } => strategies::run(&client, command, json).await?,
        CtlCommand::Projections => {
            show(client.projections(), json, projections::render_projections).await?
        }
        CtlCommand::Rebuild { name } => projections::rebuild(&client, &name, json).await?,
        CtlCommand::Replay { name, offset, at } => {
            projections::replay(&client, &name, offset, at.as_deref(), json).await?
        }
        CtlCommand::Archive {
            older_than_seconds,
            status,
        } => archive::run(&client, older_than_seconds, status, json).await?,
        CtlCommand::DeadLetters { command, consumer } => {
            dead_letters::run(&client, command, consumer, json).await?
        }
    };
    print(&text)
}

/// Prints `text` and a newline. A reader that went away (`ctl tree | head`) ends the output
/// quietly, as it does for other terminal tools.
pub fn print(text: &str) -> Result<(), Error> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{text}").and_then(|()| stdout.flush()) {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        written => Ok(written?),
    }
}

/// The answer to `call`: the node's JSON, pretty, or `render`ed for people.
async fn show<T: DeserializeOwned + 'static>(
    call: Call<T>,
    json: bool,
    render: fn(&T) -> String,
) -> Result<String, Error> {
    if json {
        Ok(pretty(&call.json_value().await?))
    } else {
        Ok(render(&call.await?))
    }
}

fn pretty(value: &serde_json::Value) -> String {
    serde_json::to_string_pretty(value).expect("a JSON value always serializes")
}

/// Plans or runs a rebalance; a run is followed with a progress bar of the moves completed
/// until all are or [`REBALANCE_FOLLOW_MAX`] has passed.
async fn rebalance(client: &Client, dry_run: bool, json: bool) -> Result<String, Error> {
    if json {
        return Ok(pretty(&client.rebalance(dry_run).json_value().await?));
    }
    let plan = client.rebalance(dry_run).await?;
    if dry_run || plan.moves.is_empty() {
        return Ok(render_plan(&plan));
    }
    let planned = plan.moves.len() as u64;
    let bar = ProgressBar::new(planned).with_style(
        ProgressStyle::with_template("moving shards {bar:40} {pos}/{len} moves ({elapsed})")
            .expect("the template is valid"),
    );
    bar.set_position(u64::from(plan.completed));
    let started = Instant::now();
    loop {
        let completed = moves_completed(&plan, &client.shards().await?);
        bar.set_position(completed.max(bar.position()));
        if bar.position() >= planned {
            bar.finish();
            return Ok(format!("rebalanced: {planned} moves completed"));
        }
        if started.elapsed() >= REBALANCE_FOLLOW_MAX {
            bar.abandon();
            return Ok(format!(
                "rebalance still running: {} of {planned} moves completed after {} s \
                 (see `ctl shards`)",
                bar.position(),
                REBALANCE_FOLLOW_MAX.as_secs()
            ));
        }
        tokio::time::sleep(REBALANCE_POLL_INTERVAL).await;
    }
}

/// Asks `node_id` to leave and follows its drain until it owns no shard.
async fn leave(client: &Client, node_id: &str, json: bool) -> Result<String, Error> {
    if json {
        return Ok(pretty(&client.leave(node_id).json_value().await?));
    }
    client.leave(node_id).await?;
    let owned = |shards: &api::Shards| {
        shards
            .shards
            .iter()
            .filter(|shard| shard.owner == node_id)
            .count() as u64
    };
    let at_start = owned(&client.shards().await?);
    let bar = ProgressBar::new(at_start).with_style(
        ProgressStyle::with_template("draining {bar:40} {pos}/{len} shards handed off ({elapsed})")
            .expect("the template is valid"),
    );
    let started = Instant::now();
    loop {
        let left = owned(&client.shards().await?);
        bar.set_position(at_start.saturating_sub(left));
        if left == 0 {
            bar.finish();
            return Ok(format!(
                "{node_id} drained: {at_start} shards handed off; it stops now"
            ));
        }
        if started.elapsed() >= REBALANCE_FOLLOW_MAX {
            bar.abandon();
            return Ok(format!(
                "{node_id} still owns {left} shards after {} s (see `ctl shards`)",
                REBALANCE_FOLLOW_MAX.as_secs()
            ));
        }
        tokio::time::sleep(REBALANCE_POLL_INTERVAL).await;
    }
}

/// A shard move as begun.
pub fn render_move(moved: &api::ShardMove) -> String {
    format!(
        "shard {} moving from {} to {} (see `ctl shards`)",
        moved.shard, moved.from, moved.to
    )
}

/// How many of the plan's moves are done: shards now owned by their destination.
pub fn moves_completed(plan: &api::Rebalance, shards: &api::Shards) -> u64 {
    // A shard counts once its new owner serves it (no hand-off under way).
    let owners: BTreeMap<u32, &str> = shards
        .shards
        .iter()
        .filter(|shard| shard.handoff == "active")
        .map(|shard| (shard.shard, shard.owner.as_str()))
        .collect();
    plan.moves
        .iter()
        .filter(|planned| owners.get(&planned.shard) == Some(&planned.to.as_str()))
        .count() as u64
}

/// How a column lines up: text left, numbers right.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Align {
    /// Padded on the right.
    Left,
    /// Padded on the left.
    Right,
}

/// `rows` under `columns`' headers, each column as wide as its widest cell, two spaces apart.
pub fn table(columns: &[(&str, Align)], rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(index, (header, _))| {
            rows.iter()
                .map(|row| row[index].chars().count())
                .chain([header.chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let headers: Vec<String> = columns
        .iter()
        .map(|(header, _)| header.to_string())
        .collect();
    let mut text = String::new();
    for row in std::iter::once(&headers).chain(rows) {
        assert_eq!(row.len(), columns.len(), "every row has a cell per column");
        let mut line = String::new();
        for ((cell, (_, align)), width) in row.iter().zip(columns).zip(&widths) {
            match align {
                Align::Left => write!(line, "{cell:<width$}  "),
                Align::Right => write!(line, "{cell:>width$}  "),
            }
            .expect("writing to a string cannot fail");
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text.pop();
    text
}

/// The members, one a line, and which of them answered.
pub fn render_members(members: &api::Members) -> String {
    let rows: Vec<Vec<String>> = members
        .members
        .iter()
        .map(|member| {
            vec![
                member.node_id.clone(),
                snake_case(&member.status),
                member.http_addr.clone(),
                member.cluster_addr.clone(),
                member.shards.to_string(),
            ]
        })
        .collect();
    let mut text = table(
        &[
            ("NODE", Align::Left),
            ("STATUS", Align::Left),
            ("HTTP", Align::Left),
            ("CLUSTER", Align::Left),
            ("SHARDS", Align::Right),
        ],
        &rows,
    );
    if let Some(this) = members.members.iter().find(|member| member.this_node) {
        write!(text, "\n(answered by {})", this.node_id).expect("writing to a string");
    }
    text
}

/// Every shard with its owner and load, then the totals.
pub fn render_shards(shards: &api::Shards) -> String {
    let rows: Vec<Vec<String>> = shards
        .shards
        .iter()
        .map(|shard| {
            vec![
                shard.shard.to_string(),
                shard.owner.clone(),
                shard.entities.to_string(),
                shard.queued.to_string(),
            ]
        })
        .collect();
    let owners: std::collections::BTreeSet<&str> = shards
        .shards
        .iter()
        .map(|shard| shard.owner.as_str())
        .collect();
    let entities: u64 = shards.shards.iter().map(|shard| shard.entities).sum();
    let queued: u64 = shards.shards.iter().map(|shard| shard.queued).sum();
    format!(
        "{}\n{} shards on {} node(s): {entities} entities in memory, {queued} commands queued",
        table(
            &[
                ("SHARD", Align::Right),
                ("OWNER", Align::Left),
                ("ENTITIES", Align::Right),
                ("QUEUED", Align::Right),
            ],
            &rows,
        ),
        shards.shard_count,
        owners.len(),
    )
}

/// The actor tree, one actor a line, drawn with box-drawing characters like `pstree`.
pub fn render_tree(root: &api::ActorNode) -> String {
    let mut text = describe_actor(root);
    draw_children(&root.children, "", &mut text);
    text
}

fn draw_children(children: &[api::ActorNode], prefix: &str, text: &mut String) {
    let mut children: Vec<&api::ActorNode> = children.iter().collect();
    children.sort_by_cached_key(|child| natural_key(actor_name(child)));
    for (index, child) in children.iter().enumerate() {
        let last = index + 1 == children.len();
        let (branch, indent) = if last {
            ("└─ ", "   ")
        } else {
            ("├─ ", "│  ")
        };
        write!(text, "\n{prefix}{branch}{}", describe_actor(child)).expect("writing to a string");
        draw_children(&child.children, &format!("{prefix}{indent}"), text);
    }
}

/// One actor's line: its name (the last part of its path), kind, status, mailbox, breaker,
/// entities, restarts when there were any, and the descendants the depth cut off.
fn describe_actor(actor: &api::ActorNode) -> String {
    let mut parts = vec![actor_name(actor).to_owned()];
    if let Some(kind) = &actor.kind {
        parts.push(format!("[{kind}]"));
    }
    if let Some(status) = &actor.status {
        parts.push(status.clone());
    }
    if let Some(mailbox) = &actor.mailbox {
        parts.push(format!("mailbox {}/{}", mailbox.length, mailbox.capacity));
    }
    if let Some(breaker) = &actor.breaker {
        parts.push(format!("breaker {breaker}"));
    }
    if let Some(entities) = actor.entities {
        parts.push(format!("entities {entities}"));
    }
    if let Some(restarts) = actor.restarts.filter(|&restarts| restarts > 0) {
        parts.push(format!("restarts {restarts}"));
    }
    if actor.descendants_hidden > 0 {
        parts.push(format!("(+{} hidden)", actor.descendants_hidden));
    }
    parts.join(" ")
}

/// The last part of an actor's path (`/` for the root).
fn actor_name(actor: &api::ActorNode) -> &str {
    actor
        .path
        .rsplit('/')
        .find(|part| !part.is_empty())
        .unwrap_or("/")
}

/// Sorts `shard-2` before `shard-10`: the name without its trailing digits, then their value.
fn natural_key(name: &str) -> (&str, u64) {
    let stem = name.trim_end_matches(|c: char| c.is_ascii_digit());
    (stem, name[stem.len()..].parse().unwrap_or(0))
}

/// A rebalance plan: the moves, or that there is nothing to move.
pub fn render_plan(plan: &api::Rebalance) -> String {
    if plan.moves.is_empty() {
        return "nothing to move: every shard is already where the plan would put it".to_owned();
    }
    let rows: Vec<Vec<String>> = plan
        .moves
        .iter()
        .map(|planned| {
            vec![
                planned.shard.to_string(),
                planned.from.clone(),
                planned.to.clone(),
            ]
        })
        .collect();
    let verb = if plan.dry_run { "would move" } else { "moves" };
    format!(
        "plan {verb} {} shard(s), {} done\n{}",
        plan.moves.len(),
        plan.completed,
        table(
            &[
                ("SHARD", Align::Right),
                ("FROM", Align::Left),
                ("TO", Align::Left),
            ],
            &rows,
        )
    )
}

/// An account's balances and open orders.
pub fn render_account(account: &api::Account) -> String {
    let mut text = format!(
        "account {}\n{}\n\n",
        account.account_id,
        balances_table(&account.balances)
    );
    if account.open_orders.is_empty() {
        text.push_str("no open orders");
    } else {
        write!(text, "open orders\n{}", orders_table(&account.open_orders))
            .expect("writing to a string");
    }
    text
}

/// The balances a deposit or withdrawal touched.
pub fn render_balances(balances: &api::Balances) -> String {
    format!(
        "account {}\n{}",
        balances.account_id,
        balances_table(&balances.balances)
    )
}

fn balances_table(balances: &BTreeMap<String, api::Balance>) -> String {
    let rows: Vec<Vec<String>> = balances
        .iter()
        .map(|(asset, balance)| {
            vec![
                asset.clone(),
                balance.total.to_string(),
                balance.held.to_string(),
                balance.available.to_string(),
            ]
        })
        .collect();
    table(
        &[
            ("ASSET", Align::Left),
            ("TOTAL", Align::Right),
            ("HELD", Align::Right),
            ("AVAILABLE", Align::Right),
        ],
        &rows,
    )
}

fn orders_table(orders: &[api::Order]) -> String {
    let rows: Vec<Vec<String>> = orders
        .iter()
        .map(|order| {
            vec![
                order.order_id.to_string(),
                order.symbol.clone(),
                snake_case(&order.side),
                snake_case(&order.order_type),
                order
                    .price
                    .map_or_else(|| "-".to_owned(), |p| p.to_string()),
                order.quantity.to_string(),
                order.filled_quantity.to_string(),
                snake_case(&order.status),
            ]
        })
        .collect();
    table(
        &[
            ("ORDER", Align::Right),
            ("SYMBOL", Align::Left),
            ("SIDE", Align::Left),
            ("TYPE", Align::Left),
            ("PRICE", Align::Right),
            ("QUANTITY", Align::Right),
            ("FILLED", Align::Right),
            ("STATUS", Align::Left),
        ],
        &rows,
    )
}

/// An order: what it is, where it stands, why it ended, and its fills.
pub fn render_order(order: &api::Order) -> String {
    let price = order
        .price
        .map_or_else(String::new, |price| format!(" @ {price}"));
    let client = order
        .client_order_id
        .map_or_else(String::new, |id| format!(" (the account's {id})"));
    let mut text = format!(
        "order {}{client}: {} {} {} {}{price} for {}: {} ({}/{} filled)",
        order.order_id,
        snake_case(&order.order_type),
        snake_case(&order.side),
        order.quantity,
        order.symbol,
        order.account_id,
        snake_case(&order.status),
        order.filled_quantity,
        order.quantity,
    );
    if let Some(reason) = &order.reject_reason {
        write!(text, "\nrejected: {}: {}", reason.code, reason.message).expect("writing");
    }
    if let Some(reason) = &order.end_reason {
        write!(text, "\nended: {reason}").expect("writing to a string");
    }
    if order.stalled {
        text.push_str("\nstalled: a step exhausted its retries and waits for an operator");
    }
    if !order.fills.is_empty() {
        let rows: Vec<Vec<String>> = order
            .fills
            .iter()
            .map(|fill| {
                vec![
                    fill.trade_id.to_string(),
                    fill.price.to_string(),
                    fill.quantity.to_string(),
                    if fill.settled { "yes" } else { "no" }.to_owned(),
                ]
            })
            .collect();
        let fills = table(
            &[
                ("TRADE", Align::Right),
                ("PRICE", Align::Right),
                ("QUANTITY", Align::Right),
                ("SETTLED", Align::Left),
            ],
            &rows,
        );
        write!(text, "\n{fills}").expect("writing to a string");
    }
    text
}

/// A book as a ladder: asks from the highest down, then bids from the highest down, so the
/// best ask sits right above the best bid.
pub fn render_book(book: &api::Book) -> String {
    if book.bids.is_empty() && book.asks.is_empty() {
        return format!("{}: the book is empty", book.symbol);
    }
    let level = |side: &str, level: &api::Level| {
        vec![
            side.to_owned(),
            level.price.to_string(),
            level.quantity.to_string(),
            level.orders.to_string(),
        ]
    };
    let rows: Vec<Vec<String>> = book
        .asks
        .iter()
        .rev()
        .map(|ask| level("ask", ask))
        .chain(book.bids.iter().map(|bid| level("bid", bid)))
        .collect();
    format!(
        "{}\n{}",
        book.symbol,
        table(
            &[
                ("SIDE", Align::Left),
                ("PRICE", Align::Right),
                ("QUANTITY", Align::Right),
                ("ORDERS", Align::Right),
            ],
            &rows,
        )
    )
}

/// An API enum's wire name (`partially_filled`), the name people type and read.
fn snake_case<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name,
        other => panic!("an API enum serializes as a string, not {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actor(path: &str, kind: &str, children: Vec<api::ActorNode>) -> api::ActorNode {
        api::ActorNode {
            path: path.to_owned(),
            kind: Some(kind.to_owned()),
            status: Some("running".to_owned()),
            restarts: Some(0),
            mailbox: None,
            breaker: None,
            entities: None,
            descendants_hidden: 0,
            children,
        }
    }

    #[test]
    fn the_tree_is_drawn_like_pstree() {
        let mut shard = actor("/n1/trading/accounts/shard-3", "shard", Vec::new());
        shard.mailbox = Some(api::Mailbox {
            length: 2,
            capacity: 1024,
        });
        shard.entities = Some(7);
        shard.restarts = Some(1);
        let later_shard = actor("/n1/trading/accounts/shard-10", "shard", Vec::new());
        // The node lists children by name as text; the drawing puts shard-3 before shard-10.
        let mut region = actor("/n1/trading/accounts", "region", vec![later_shard, shard]);
        region.descendants_hidden = 12;
        let mut journal = actor("/n1/journal", "journal", Vec::new());
        journal.breaker = Some("closed".to_owned());
        let trading = actor("/n1/trading", "supervisor", vec![region]);
        let first = actor("/n1", "node", vec![trading, journal]);
        let second = actor("/n2", "node", Vec::new());
        let mut root = actor("/", "cluster", vec![first, second]);
        root.status = None;
        root.restarts = None;
        let expected = "\
/ [cluster]
├─ n1 [node] running
│  ├─ journal [journal] running breaker closed
│  └─ trading [supervisor] running
│     └─ accounts [region] running (+12 hidden)
│        ├─ shard-3 [shard] running mailbox 2/1024 entities 7 restarts 1
│        └─ shard-10 [shard] running
└─ n2 [node] running";
        assert_eq!(render_tree(&root), expected);
    }

    #[test]
    fn tables_align_text_left_and_numbers_right() {
        let rows = vec![
            vec!["BTC".to_owned(), "5".to_owned()],
            vec!["USDT".to_owned(), "10000".to_owned()],
        ];
        let text = table(&[("ASSET", Align::Left), ("TOTAL", Align::Right)], &rows);
        assert_eq!(text, "ASSET  TOTAL\nBTC        5\nUSDT   10000");
    }

    #[test]
    fn an_account_shows_balances_and_open_orders() {
        let order = api::Order {
            order_id: 42,
            client_order_id: None,
            account_id: "alice".to_owned(),
            symbol: "BTC-USD".to_owned(),
            side: api::Side::Buy,
            order_type: api::OrderType::Limit,
            price: Some(100),
            quantity: 5,
            status: api::OrderStatus::PartiallyFilled,
            filled_quantity: 2,
            fills: Vec::new(),
            reject_reason: None,
            end_reason: None,
            stalled: false,
        };
        let balance = api::Balance {
            total: 1_000,
            held: 300,
            available: 700,
        };
        let account = api::Account {
            account_id: "alice".to_owned(),
            balances: BTreeMap::from([("USD".to_owned(), balance)]),
            open_orders: vec![order],
        };
        let expected = "\
account alice
ASSET  TOTAL  HELD  AVAILABLE
USD     1000   300        700

open orders
ORDER  SYMBOL   SIDE  TYPE   PRICE  QUANTITY  FILLED  STATUS
   42  BTC-USD  buy   limit    100         5       2  partially_filled";
        assert_eq!(render_account(&account), expected);
    }

    #[test]
    fn the_book_is_a_ladder_with_the_best_ask_above_the_best_bid() {
        let level = |price, quantity| api::Level {
            price,
            quantity,
            orders: 1,
        };
        let book = api::Book {
            symbol: "BTC-USD".to_owned(),
            bids: vec![level(99, 3), level(98, 10)],
            asks: vec![level(101, 2), level(102, 4)],
        };
        let expected = "\
BTC-USD
SIDE  PRICE  QUANTITY  ORDERS
ask     102         4       1
ask     101         2       1
bid      99         3       1
bid      98        10       1";
        assert_eq!(render_book(&book), expected);
        let empty = api::Book {
            symbol: "BTC-USD".to_owned(),
            bids: Vec::new(),
            asks: Vec::new(),
        };
        assert_eq!(render_book(&empty), "BTC-USD: the book is empty");
    }

    #[test]
    fn members_say_which_node_answered() {
        let members = api::Members {
            members: vec![api::Member {
                node_id: "n1".to_owned(),
                http_addr: "127.0.0.1:8081".to_owned(),
                cluster_addr: "127.0.0.1:9081".to_owned(),
                status: api::MemberStatus::Up,
                shards: 256,
                this_node: true,
            }],
        };
        let expected = "\
NODE  STATUS  HTTP            CLUSTER         SHARDS
n1    up      127.0.0.1:8081  127.0.0.1:9081     256
(answered by n1)";
        assert_eq!(render_members(&members), expected);
    }

    #[test]
    fn rebalance_progress_counts_shards_at_their_destination() {
        let planned = |shard, to: &str| api::ShardMove {
            shard,
            from: "n1".to_owned(),
            to: to.to_owned(),
        };
        let plan = api::Rebalance {
            dry_run: false,
            moves: vec![planned(0, "n2"), planned(1, "n2")],
            completed: 0,
        };
        let owned = |shard, owner: &str, handoff: &str| api::Shard {
            shard,
            owner: owner.to_owned(),
            entities: 0,
            queued: 0,
            epoch: 1,
            handoff: handoff.to_owned(),
            target: None,
        };
        let shards = api::Shards {
            shard_count: 2,
            shards: vec![owned(0, "n2", "active"), owned(1, "n1", "active")],
        };
        assert_eq!(moves_completed(&plan, &shards), 1);
        let draining = api::Shards {
            shard_count: 2,
            shards: vec![owned(0, "n2", "draining"), owned(1, "n1", "active")],
        };
        assert_eq!(moves_completed(&plan, &draining), 0);
        assert!(render_plan(&plan).starts_with("plan moves 2 shard(s), 0 done\nSHARD  FROM  TO"));
        let nothing = api::Rebalance {
            moves: Vec::new(),
            ..plan
        };
        assert!(render_plan(&nothing).starts_with("nothing to move"));
    }
}
