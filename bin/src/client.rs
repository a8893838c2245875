//! A client of the node's HTTP API (DESIGN §5) for `ctl` and `bench`.
//!
//! Each endpoint is a method of [`Client`] returning a [`Call`]: awaiting it gives the
//! endpoint's [`api`] type, [`Call::json_value`] the node's JSON as it came (`ctl --json`),
//! and [`Call::status`] only the status (`bench`, which does not pay to decode answers).
//! Error answers become [`Error::Api`] with the node's code and message; a node that cannot
//! be reached, or answers something unreadable, becomes [`Error::Http`].
//!
//! ```no_run
//! # async fn example() -> Result<(), tradefloor::Error> {
//! let client = tradefloor::client::Client::new("http://127.0.0.1:8080", None, None)?;
//! let members = client.members().await?;
//! println!("{} members", members.members.len());
//! # Ok(())
//! # }
//! ```

use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api;
use crate::error::Error;

/// How long one request may take, answer included. Longer than the node's default request
/// deadline (10 s), so a slow node answers its own 503 `timeout` before the client gives up.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long opening a connection may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle connections kept open to the node. As many as `bench` has requests in flight, so a
/// high request rate reuses connections instead of opening one per request.
pub const IDLE_CONNECTIONS_MAX: usize = 4_096;
/// How long an idle connection is kept. Shorter than the node's keep-alive (30 s), so the
/// client never sends on a connection the node is closing.
pub const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(20);
/// Most bytes of an unreadable error body quoted in the error's message.
pub const ERROR_BODY_QUOTED_MAX: usize = 200;

/// A client of one node, with an optional bearer token. Cheap to clone: clones share the
/// connection pool.
#[derive(Clone)]
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
    /// For streams, whose answers never end: no overall timeout, only one between reads.
    streaming: reqwest::Client,
}

impl Client {
    /// A client of the node at `base` (e.g. `http://127.0.0.1:8080`) sending `token` as a
    /// bearer token; an `https://` node's certificate must chain to `ca`.
    pub fn new(base: &str, token: Option<&str>, ca: Option<&Path>) -> Result<Self, Error> {
        // reqwest's rustls takes the process's provider: the aws-lc-rs one rustls builds.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let builder = || -> Result<reqwest::ClientBuilder, Error> {
            let builder = reqwest::Client::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .tcp_nodelay(true);
            Ok(match ca {
                Some(ca) => builder.use_preconfigured_tls(Arc::unwrap_or_clone(
                    tradefloor_cluster::tls::client_config(ca, None)?,
                )),
                None => builder,
            })
        };
        let streaming = builder()?
            .read_timeout(STREAM_READ_TIMEOUT)
            .build()
            .map_err(transport)?;
        let http = builder()?
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .pool_max_idle_per_host(IDLE_CONNECTIONS_MAX)
            .pool_idle_timeout(IDLE_CONNECTION_TIMEOUT)
            .build()
            .map_err(transport)?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            token: token.map(str::to_owned),
            http,
            streaming,
        })
    }

    fn call<T>(&self, method: Method, path: &str) -> Call<T> {
        self.call_on(&self.http, method, path)
    }

    fn call_on<T>(&self, http: &reqwest::Client, method: Method, path: &str) -> Call<T> {
        let request = http.request(method, format!("{}{path}", self.base));
        let request = match &self.token {
            // reqwest marks the header sensitive: it never shows in logs or debug output.
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        Call {
            request,
            answer: PhantomData,
        }
    }

    fn call_with<T, B: Serialize>(&self, method: Method, path: &str, body: &B) -> Call<T> {
        let call: Call<T> = self.call(method, path);
        Call {
            request: call.request.json(body),
            answer: PhantomData,
        }
    }

    /// `GET /v1/markets/{symbol}`.
    pub fn market(&self, symbol: &str) -> Call<api::Market> {
        self.call(Method::GET, &format!("/v1/markets/{symbol}"))
    }

    /// `POST /v1/markets/{symbol}/quotes`.
    pub fn publish_quotes(
        &self,
        symbol: &str,
        quotes: &api::QuotesRequest,
    ) -> Call<api::QuotesAccepted> {
        self.call_with(
            Method::POST,
            &format!("/v1/markets/{symbol}/quotes"),
            quotes,
        )
    }

    /// Opens the SSE stream at `path` (`/v1/markets/{symbol}/stream`,
    /// `/v1/accounts/{id}/stream`), resuming after message `after`: its events as they come.
    pub async fn stream(&self, path: &str, after: Option<u64>) -> Result<EventStream, Error> {
        let call: Call<()> = self.call_on(&self.streaming, Method::GET, path);
        let call = match after {
            Some(after) => Call {
                request: call.request.header("Last-Event-ID", after.to_string()),
                answer: PhantomData,
            },
            None => call,
        };
        Ok(EventStream {
            response: call.response().await?,
            buffer: String::new(),
        })
    }

    /// Opens the SSE stream at `path` as it comes (for readers that parse it themselves).
    pub async fn stream_raw(&self, path: &str) -> Result<Response, Error> {
        let call: Call<()> = self.call_on(&self.streaming, Method::GET, path);
        call.response().await
    }

    /// `GET /health/live`.
    pub fn live(&self) -> Call<api::Health> {
        self.call(Method::GET, "/health/live")
    }

    /// `POST /v1/markets` (admin).
    pub fn list_market(&self, market: &api::MarketRequest) -> Call<api::Market> {
        self.call_with(Method::POST, "/v1/markets", market)
    }

    /// `GET /v1/markets/{symbol}/book?depth=`.
    pub fn book(&self, symbol: &str, depth: u32) -> Call<api::Book> {
        let call = self.call(Method::GET, &format!("/v1/markets/{symbol}/book"));
        call.query(&api::DepthQuery { depth: Some(depth) })
    }

    /// `POST /v1/accounts/{id}/deposits`.
    pub fn deposit(&self, account_id: &str, deposit: &api::TransferRequest) -> Call<api::Balances> {
        self.call_with(
            Method::POST,
            &format!("/v1/accounts/{account_id}/deposits"),
            deposit,
        )
    }

    /// `GET /v1/accounts/{id}`.
    pub fn account(&self, account_id: &str) -> Call<api::Account> {
        self.call(Method::GET, &format!("/v1/accounts/{account_id}"))
    }

    /// `POST /v1/orders`.
    pub fn place_order(&self, order: &api::OrderRequest) -> Call<api::Order> {
        self.call_with(Method::POST, "/v1/orders", order)
    }

    /// `DELETE /v1/orders/{id}`.
    pub fn cancel_order(&self, order_id: u64) -> Call<api::Order> {
        self.call(Method::DELETE, &format!("/v1/orders/{order_id}"))
    }

    /// `GET /v1/cluster/members` (admin).
    pub fn members(&self) -> Call<api::Members> {
        self.call(Method::GET, "/v1/cluster/members")
    }

    /// `GET /v1/cluster/shards` (admin).
    pub fn shards(&self) -> Call<api::Shards> {
        self.call(Method::GET, "/v1/cluster/shards")
    }

    /// `POST /v1/cluster/rebalance?dry_run=` (admin).
    pub fn rebalance(&self, dry_run: bool) -> Call<api::Rebalance> {
        let call = self.call(Method::POST, "/v1/cluster/rebalance");
        call.query(&api::RebalanceQuery {
            dry_run: Some(dry_run),
        })
    }

    /// `POST /v1/cluster/shards/{shard}/move` (admin).
    pub fn move_shard(&self, shard: u32, to: &str) -> Call<api::ShardMove> {
        let body = api::MoveRequest { to: to.to_owned() };
        self.call_with(
            Method::POST,
            &format!("/v1/cluster/shards/{shard}/move"),
            &body,
        )
    }

    /// `POST /v1/cluster/members/{node}/leave` (admin).
    pub fn leave(&self, node_id: &str) -> Call<api::Leave> {
        self.call(
            Method::POST,
            &format!("/v1/cluster/members/{node_id}/leave"),
        )
    }

    /// `GET /v1/strategies`.
    pub fn strategies(&self) -> Call<api::StrategyList> {
        self.call(Method::GET, "/v1/strategies")
    }

    /// `GET /v1/strategies/{id}`.
    pub fn strategy(&self, id: &str) -> Call<api::StrategyView> {
        self.call(Method::GET, &format!("/v1/strategies/{id}"))
    }

    /// `POST /v1/strategies`: `spec` is the strategy's JSON, naming its account.
    pub fn create_strategy(&self, spec: &serde_json::Value) -> Call<api::StrategyView> {
        self.call_with(Method::POST, "/v1/strategies", spec)
    }

    /// `POST /v1/strategies/{id}/start`.
    pub fn start_strategy(&self, id: &str) -> Call<api::StrategyView> {
        self.call(Method::POST, &format!("/v1/strategies/{id}/start"))
    }

    /// `POST /v1/strategies/{id}/stop`, the kill switch.
    pub fn stop_strategy(
        &self,
        id: &str,
        stop: &api::StopStrategyRequest,
    ) -> Call<api::StrategyView> {
        self.call_with(Method::POST, &format!("/v1/strategies/{id}/stop"), stop)
    }

    /// `GET /v1/dead-letters` (admin).
    pub fn dead_letters(&self, query: &api::DeadLettersQuery) -> Call<api::DeadLettersPage> {
        self.call(Method::GET, "/v1/dead-letters").query(query)
    }

    /// `POST /v1/dead-letters/{id}/retry` (admin).
    pub fn retry_dead_letter(&self, id: &str) -> Call<api::RetryAnswer> {
        self.call(Method::POST, &format!("/v1/dead-letters/{id}/retry"))
    }

    /// `DELETE /v1/dead-letters/{id}` (admin): answers 204 without a body.
    pub fn delete_dead_letter(&self, id: &str) -> Call<()> {
        self.call(Method::DELETE, &format!("/v1/dead-letters/{id}"))
    }

    /// `GET /v1/projections` (admin).
    pub fn projections(&self) -> Call<api::ProjectionList> {
        self.call(Method::GET, "/v1/projections")
    }

    /// `GET /v1/archive` (admin).
    pub fn archive(&self) -> Call<api::ArchiveBody> {
        self.call(Method::GET, "/v1/archive")
    }

    /// `POST /v1/archive` (admin).
    pub fn start_archive(&self, request: &api::ArchiveRequest) -> Call<api::ArchiveBody> {
        self.call_with(Method::POST, "/v1/archive", request)
    }

    /// `POST /v1/projections/{name}/rebuild` (admin).
    pub fn rebuild_projection(&self, name: &str) -> Call<api::ProjectionBody> {
        self.call(Method::POST, &format!("/v1/projections/{name}/rebuild"))
    }

    /// `POST /v1/subscriptions/{name}/replay` (admin).
    pub fn replay_subscription(
        &self,
        name: &str,
        replay: &api::ReplayRequest,
    ) -> Call<api::SubscriptionOffset> {
        self.call_with(
            Method::POST,
            &format!("/v1/subscriptions/{name}/replay"),
            replay,
        )
    }

    /// `GET /v1/actors?node=&depth=` (admin).
    pub fn actors(&self, query: &api::ActorsQuery) -> Call<api::ActorNode> {
        self.call(Method::GET, "/v1/actors").query(query)
    }
}

/// One request to the node, answered by a `T`. Await it for the `T`.
#[must_use = "a call does nothing until it is awaited"]
pub struct Call<T> {
    request: RequestBuilder,
    answer: PhantomData<fn() -> T>,
}

impl<T> Call<T> {
    fn query<Q: Serialize>(self, query: &Q) -> Self {
        Self {
            request: self.request.query(query),
            answer: PhantomData,
        }
    }

    /// Sends the request; a success answer, or its error as [`Error::Api`].
    async fn response(self) -> Result<Response, Error> {
        let response = self.request.send().await.map_err(transport)?;
        if response.status().is_success() {
            return Ok(response);
        }
        Err(api_error(response).await)
    }

    /// The answer as the node sent it, whatever its shape.
    pub async fn json_value(self) -> Result<serde_json::Value, Error> {
        self.response().await?.json().await.map_err(transport)
    }

    /// Only the success status; the body is read (so the connection is reused) and dropped.
    pub async fn status(self) -> Result<u16, Error> {
        let response = self.response().await?;
        let status = response.status().as_u16();
        response.bytes().await.map_err(transport)?;
        Ok(status)
    }
}

impl<T: DeserializeOwned + 'static> IntoFuture for Call<T> {
    type Output = Result<T, Error>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<T, Error>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move { self.response().await?.json().await.map_err(transport) })
    }
}

/// The longest a stream may stay silent (the node sends a keep-alive every 15 s by default).
pub const STREAM_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// One Server-Sent Event.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamEvent {
    /// Its id, to resume after (state updates have none).
    pub id: Option<u64>,
    /// What it is: `trade`, `top`, `fill`, `error`…
    pub event: String,
    /// Its body.
    pub data: serde_json::Value,
}

/// An open SSE stream.
pub struct EventStream {
    response: Response,
    buffer: String,
}

impl EventStream {
    /// The next event (keep-alive comments skipped); `None` when the node ended the stream.
    pub async fn next(&mut self) -> Result<Option<StreamEvent>, Error> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let frame: String = self.buffer.drain(..end + 2).collect();
                if let Some(event) = parse_event(&frame)? {
                    return Ok(Some(event));
                }
                continue;
            }
            let Some(chunk) = self.response.chunk().await.map_err(transport)? else {
                return Ok(None);
            };
            let text = std::str::from_utf8(&chunk)
                .map_err(|error| Error::Http(format!("a stream that is not UTF-8: {error}")))?;
            self.buffer.push_str(text);
        }
    }
}

/// One SSE frame's event, `None` for a comment.
fn parse_event(frame: &str) -> Result<Option<StreamEvent>, Error> {
    let (mut id, mut event, mut data) = (None, None, None);
    for line in frame.lines() {
        if let Some(value) = line.strip_prefix("id: ") {
            id = value.parse().ok();
        } else if let Some(value) = line.strip_prefix("event: ") {
            event = Some(value.to_owned());
        } else if let Some(value) = line.strip_prefix("data: ") {
            let value = serde_json::from_str(value).map_err(|error| {
                Error::Http(format!("a stream event that is not JSON: {error}"))
            })?;
            data = Some(value);
        }
    }
    Ok(event
        .zip(data)
        .map(|(event, data)| StreamEvent { id, event, data }))
}

/// An error answer as [`Error::Api`]; a body that is not the error contract keeps the status,
/// with code `http_<status>` and the body's start as the message.
async fn api_error(response: Response) -> Error {
    let status = response.status().as_u16();
    let text = match response.text().await {
        Ok(text) => text,
        Err(error) => return transport(error),
    };
    match serde_json::from_str::<api::ErrorBody>(&text) {
        Ok(body) => Error::Api {
            status,
            code: body.error.code,
            message: body.error.message,
        },
        Err(_) => Error::Api {
            status,
            code: format!("http_{status}"),
            message: quoted(&text),
        },
    }
}

/// At most [`ERROR_BODY_QUOTED_MAX`] bytes of `text`, cut on a character boundary.
fn quoted(text: &str) -> String {
    let mut end = text.len().min(ERROR_BODY_QUOTED_MAX);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].trim().to_owned()
}

/// A transport failure with its causes: reqwest's own message alone ("error sending
/// request") does not say that the connection was refused.
fn transport(error: reqwest::Error) -> Error {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    Error::Http(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_cuts_long_bodies_on_a_character_boundary() {
        let body = "é".repeat(ERROR_BODY_QUOTED_MAX);
        let quote = quoted(&body);
        assert!(quote.len() <= ERROR_BODY_QUOTED_MAX);
        assert!(quote.chars().all(|c| c == 'é'));
        assert_eq!(quoted(" short \n"), "short");
    }

    #[tokio::test]
    async fn an_unreachable_node_is_a_transport_error() {
        // Port 9 (discard) on loopback: nothing listens there in a test environment.
        let client = Client::new("http://127.0.0.1:9/", None, None).expect("a client");
        match client.live().await {
            Err(Error::Http(message)) => assert!(message.contains("127.0.0.1:9"), "{message}"),
            other => panic!("expected a transport error, got {other:?}"),
        }
    }
}
