//! The `tradefloor` binary's library: the node, its HTTP endpoint, `ctl`, `bench`, `backtest`
//! and `feed`.
//!
//! - [`cli`]: the command line.
//! - [`config`]: the node's configuration (file, `TRADEFLOOR_*` environment, flags).
//! - [`node`]: starting, serving and stopping a node.
//! - [`http`]: the HTTP endpoint (DESIGN §5) on actix-web, with auth, limits and OpenAPI.
//! - [`api`]: every request and response body, shared by the server and its clients.
//! - [`metrics`]: Prometheus metrics of requests, actors and the journal.
//! - [`logging`]: structured logs (text or JSON).
//! - [`client`], [`ctl`], [`bench`]: the terminal client and the load generator.
//! - [`backtest`]: recorded market data through a strategy (and `--fit` of its learned model).
//! - [`feed`]: a recorded tick file replayed into a node as a feed's quotes.
//! - [`error`]: the one error type.
//!
//! Run a node with `tradefloor node` (SQLite in `./data`, loopback only without tokens) and
//! see the README for the tour.

pub mod api;
pub mod backtest;
pub mod bench;
pub mod cli;
pub mod client;
pub mod config;
pub mod ctl;
pub mod error;
pub mod fanout;
pub mod feed;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod node;
pub mod watch;

pub use error::Error;
