//! Tradefloor system tests: they start real `tradefloor` processes over real sockets and
//! check the node's contract and guarantees (nothing acknowledged is lost, conservation of
//! every asset, every error code).
//!
//! This library is the harness: [`binary`] builds the `tradefloor` executable once per test
//! process (a package's tests only get the executables of their own package), [`Node`]
//! starts one on a free port with its own data directory and stops or kills it, and
//! [`Http`] is a JSON client. [`cluster::Cluster`] starts several nodes as one cluster on
//! one PostgreSQL database, [`proxy::Proxy`] cuts a node's cluster traffic, [`load::Load`]
//! drives deposits whose acknowledgements are kept in a [`load::Ledger`], and
//! [`journal::assert_one_writer`] checks the journal after the fact. The tests are in
//! `tests/tests/`.

pub mod cluster;
pub mod journal;
pub mod load;
pub mod proxy;
pub mod sse;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

pub use reqwest::Method;
pub use reqwest::header::HeaderMap;

/// How long a node may take to print its address and then to become ready.
pub const NODE_START_TIMEOUT: Duration = Duration::from_secs(60);

/// The `tradefloor` executable, built (once per test process) with the profile the tests
/// were built with.
pub fn binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        // The test executable lives in target/<profile>/deps/.
        let test_executable = std::env::current_exe().expect("the test knows its path");
        let profile_dir = test_executable
            .parent()
            .and_then(Path::parent)
            .expect("tests run from target/<profile>/deps")
            .to_path_buf();
        let release = profile_dir
            .file_name()
            .is_some_and(|name| name == "release");
        let target_dir = profile_dir.parent().expect("target/<profile> has a parent");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let mut build = std::process::Command::new(cargo);
        build
            .args([
                "build",
                "--quiet",
                "-p",
                "tradefloor",
                "--bin",
                "tradefloor",
            ])
            .arg("--target-dir")
            .arg(target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if release {
            build.arg("--release");
        }
        let status = build.status().expect("cargo runs");
        assert!(status.success(), "building the tradefloor binary failed");
        let binary = profile_dir.join("tradefloor");
        assert!(binary.exists(), "{} was not built", binary.display());
        binary
    })
}

/// A fresh PostgreSQL database for one test, from `DATABASE_URL`; `None` (the caller says
/// the test was skipped) without it.
pub async fn postgres_database(test: &str) -> Option<String> {
    use sqlx::Connection;
    let Ok(url) = std::env::var("DATABASE_URL") else {
        eprintln!("SKIPPED {test}: DATABASE_URL is not set (CI sets it)");
        return None;
    };
    // Unique per call: the process, then a counter (a test may ask for several databases).
    static CREATED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let name = format!(
        "tf_{}_{}_{}",
        test.replace(|c: char| !c.is_ascii_alphanumeric(), "_"),
        std::process::id(),
        CREATED.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
    .to_lowercase();
    let mut connection = sqlx::PgConnection::connect(&url)
        .await
        .expect("DATABASE_URL reaches PostgreSQL");
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
        .execute(&mut connection)
        .await
        .expect("drop the old test database");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut connection)
        .await
        .expect("create the test database");
    let base = match url.rfind('/') {
        Some(slash) if url[..slash].contains("//") && slash > url.find("//").unwrap() + 1 => {
            &url[..slash]
        }
        _ => url.as_str(),
    };
    Some(format!("{base}/{name}"))
}

/// How to start a node.
#[derive(Clone, Debug, Default)]
pub struct NodeOptions {
    /// Extra command-line arguments after `node`.
    pub args: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// A TOML configuration file's contents.
    pub config: Option<String>,
    /// Keep the node's stderr (its logs) for [`Node::logs`] instead of passing it through.
    pub capture_logs: bool,
    /// The CA (PEM) that issued the node's HTTPS certificate, for the harness's own requests.
    pub ca: Option<PathBuf>,
}

impl NodeOptions {
    /// Options with this TOML configuration.
    pub fn with_config(config: impl Into<String>) -> Self {
        Self {
            config: Some(config.into()),
            ..Self::default()
        }
    }

    /// Options journaling to `url` (e.g. from [`postgres_database`]).
    pub fn with_journal(url: &str) -> Self {
        Self {
            args: vec!["--journal".to_owned(), url.to_owned()],
            ..Self::default()
        }
    }
}

/// A running `tradefloor node` process with its own data directory.
pub struct Node {
    child: Option<Child>,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// Its data directory (kept across restarts of the same [`Node`]).
    pub data_dir: PathBuf,
    /// Its options, to restart it the same way.
    pub options: NodeOptions,
    /// Its stderr, when [`NodeOptions::capture_logs`] is set (over every restart).
    logs: Arc<Mutex<Vec<u8>>>,
    _dir: Option<tempfile::TempDir>,
}

impl Node {
    /// Starts a node on a free loopback port in a new temporary data directory and waits
    /// until it is ready.
    pub async fn start(options: NodeOptions) -> Node {
        let node = Node::launch(options).await;
        node.wait_ready().await;
        node
    }

    /// Starts a node on a free loopback port in a new temporary data directory and waits
    /// only for it to print its address (a cluster member is ready once it joined).
    pub async fn launch(options: NodeOptions) -> Node {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let data_dir = dir.path().to_path_buf();
        let mut node = Node {
            child: None,
            url: String::new(),
            data_dir,
            options,
            logs: Arc::default(),
            _dir: Some(dir),
        };
        node.spawn().await;
        node
    }

    /// Starts the process and waits for it to print its address (not for readiness).
    pub async fn spawn(&mut self) {
        assert!(self.child.is_none(), "the node is already running");
        let mut command = node_command(&self.data_dir, &self.options, "127.0.0.1:0");
        let mut child = command.spawn().expect("the tradefloor binary starts");
        if let Some(mut stderr) = child.stderr.take() {
            let logs = self.logs.clone();
            tokio::spawn(async move {
                let mut buffer = [0_u8; 4096];
                while let Ok(read @ 1..) = stderr.read(&mut buffer).await {
                    logs.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .extend_from_slice(&buffer[..read]);
                }
            });
        }
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(NODE_START_TIMEOUT, lines.next_line())
            .await
            .expect("the node prints its address in time")
            .expect("stdout is readable")
            .expect("the node printed its address before exiting");
        let url = line
            .split("listening on ")
            .nth(1)
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .trim()
            .to_owned();
        // Keep draining stdout so the node never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        self.url = url;
        self.child = Some(child);
    }

    /// Everything the node wrote to stderr so far (empty unless
    /// [`NodeOptions::capture_logs`]).
    pub fn logs(&self) -> String {
        let logs = self.logs.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&logs).into_owned()
    }

    /// The running process's id.
    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .and_then(Child::id)
            .expect("the node is running")
    }

    /// The process's resident set size (`VmRSS`), in KiB.
    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.pid()).expect("the node's /proc/<pid>/status has VmRSS")
    }

    /// Waits until `/health/ready` answers 200.
    pub async fn wait_ready(&self) {
        self.wait_ready_within(NODE_START_TIMEOUT).await;
    }

    /// Waits up to `timeout` until `/health/ready` answers 200.
    pub async fn wait_ready_within(&self, timeout: Duration) {
        let http = Http::trusting(&self.url, None, self.options.ca.as_deref());
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok((200, _)) = http.try_get("/health/ready").await {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the node at {} did not become ready within {timeout:?}",
                self.url
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether the process is running: `false` once it was stopped or killed, or exited on
    /// its own (then [`Node::restart`] may start it again).
    pub fn is_running(&mut self) -> bool {
        let Some(child) = self.child.as_mut() else {
            return false;
        };
        match child.try_wait() {
            Ok(None) => true,
            Ok(Some(status)) => {
                eprintln!("the node at {} exited on its own: {status}", self.url);
                self.child = None;
                false
            }
            Err(error) => panic!("cannot wait for the node: {error}"),
        }
    }

    /// Sends SIGTERM and waits for a clean exit; returns the exit code.
    pub async fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take().expect("the node is running");
        let pid = child.id().expect("a running child has a pid");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        let exit = tokio::time::timeout(Duration::from_secs(60), child.wait())
            .await
            .expect("the node stops within a minute of SIGTERM")
            .expect("wait for the node");
        exit.code()
    }

    /// Waits up to `timeout` for the node to exit on its own; returns the exit code.
    pub async fn exited(&mut self, timeout: Duration) -> Option<i32> {
        let mut child = self.child.take().expect("the node is running");
        let exit = tokio::time::timeout(timeout, child.wait())
            .await
            .expect("the node exits in time")
            .expect("wait for the node");
        exit.code()
    }

    /// SIGKILLs the node (a crash).
    pub async fn kill(&mut self) {
        let mut child = self.child.take().expect("the node is running");
        child.kill().await.expect("kill the node");
    }

    /// Restarts a stopped or killed node on its data directory and waits until ready.
    pub async fn restart(&mut self) {
        self.spawn().await;
        self.wait_ready().await;
    }

    /// A client of this node with `token`.
    pub fn http(&self, token: Option<&str>) -> Http {
        Http::new(&self.url, token)
    }
}

/// The resident set size (`VmRSS`) of process `pid` in KiB, if it is still there.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Reads `stream` until the peer closes (or breaks) it; how long that took, or `None` if it
/// was still open after `within`. What the peer sends meanwhile (a TLS alert, say) is read
/// and dropped.
pub async fn closed_within<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    within: Duration,
) -> Option<Duration> {
    let started = Instant::now();
    let mut buffer = [0_u8; 1024];
    loop {
        let left = within.checked_sub(started.elapsed())?;
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// The TCP ports process `pid` listens on (from `/proc`: its sockets' inodes, matched
/// against the kernel's tables of listening sockets).
pub fn listening_ports(pid: u32) -> Vec<u16> {
    let inodes: std::collections::HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("the process's descriptors are readable")
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy().into_owned();
            Some(
                target
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_owned(),
            )
        })
        .collect();
    let mut ports = Vec::new();
    for table in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            let listening = fields.get(3) == Some(&"0A");
            if listening && fields.get(9).is_some_and(|inode| inodes.contains(*inode)) {
                let port = fields[1].rsplit(':').next().expect("address:port");
                ports.push(u16::from_str_radix(port, 16).expect("a hex port"));
            }
        }
    }
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// The `tradefloor node` command for `options` in `data_dir`, serving `http`.
fn node_command(data_dir: &Path, options: &NodeOptions, http: &str) -> Command {
    let mut command = Command::new(binary());
    command
        .arg("node")
        .arg("--http")
        .arg(http)
        .arg("--data-dir")
        .arg(data_dir)
        .args(&options.args)
        .env_remove("RUST_LOG")
        // Warnings only unless the options say otherwise: the node's stderr goes to the
        // test's, or to the node's captured logs.
        .env("TRADEFLOOR_LOG_FILTER", "warn")
        .envs(options.env.iter().cloned())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(if options.capture_logs {
            Stdio::piped()
        } else {
            Stdio::inherit()
        })
        .kill_on_drop(true);
    if let Some(config) = &options.config {
        let path = data_dir.join("node.toml");
        std::fs::write(&path, config).expect("write the configuration");
        command.arg("--config").arg(path);
    }
    command
}

/// Starts a node that must refuse to start (serving `http` with `options`): its exit code
/// and stderr.
pub async fn start_refused(options: &NodeOptions, http: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let options = NodeOptions {
        capture_logs: true,
        ..options.clone()
    };
    let child = node_command(dir.path(), &options, http)
        .spawn()
        .expect("the tradefloor binary starts");
    let output = tokio::time::timeout(NODE_START_TIMEOUT, child.wait_with_output())
        .await
        .expect("a refused node exits at once, not serves")
        .expect("wait for the node");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Polls `probe` every 100 ms until it gives `Some`, for at most `timeout` (read models trail
/// the journal); panics with `what` if it never does.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How long a test waits for a read model (trades, candles) to catch up.
pub const PROJECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// A status, the response headers and the body (JSON, or a JSON string if it is not JSON).
#[derive(Clone, Debug)]
pub struct Reply {
    /// The HTTP status.
    pub status: u16,
    /// The response headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Value,
}

impl Reply {
    /// A response header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// The error code of an error body.
    pub fn code(&self) -> &str {
        code(&self.body)
    }
}

/// A JSON client of one node.
#[derive(Clone)]
pub struct Http {
    base: String,
    token: Option<String>,
    client: reqwest::Client,
}

impl Http {
    /// A client of `base` sending `token` as a bearer token.
    pub fn new(base: &str, token: Option<&str>) -> Self {
        Self::trusting(base, token, None)
    }

    /// A client of `base` sending `token`, trusting the CA in the PEM file `ca` for HTTPS.
    pub fn trusting(base: &str, token: Option<&str>, ca: Option<&Path>) -> Self {
        // reqwest's rustls takes the process's provider: the aws-lc-rs one rustls builds.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(60));
        if let Some(ca) = ca {
            let pem = std::fs::read(ca).expect("the CA file is readable");
            let certificate = reqwest::Certificate::from_pem(&pem).expect("a PEM certificate");
            builder = builder.add_root_certificate(certificate);
        }
        Self {
            base: base.trim_end_matches('/').to_owned(),
            token: token.map(str::to_owned),
            client: builder.build().expect("a client"),
        }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let builder = self.client.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    async fn send(builder: reqwest::RequestBuilder) -> reqwest::Result<(u16, Value)> {
        let reply = Self::send_reply(builder).await?;
        Ok((reply.status, reply.body))
    }

    async fn send_reply(builder: reqwest::RequestBuilder) -> reqwest::Result<Reply> {
        let response = builder.send().await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await?;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    /// `method path` with an optional JSON body: the whole reply, or the transport error.
    pub async fn try_call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> reqwest::Result<Reply> {
        let builder = self.request(method, path);
        let builder = match body {
            Some(body) => builder.json(body),
            None => builder,
        };
        Self::send_reply(builder).await
    }

    /// `method path` with an optional JSON body: the whole reply.
    pub async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Reply {
        self.try_call(method, path, body)
            .await
            .expect("the node answers")
    }

    /// `method path` with a raw body and content type: the whole reply.
    pub async fn call_raw(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Reply {
        Self::send_reply(
            self.request(method, path)
                .header("content-type", content_type)
                .body(body),
        )
        .await
        .expect("the node answers")
    }

    /// `GET path`, or the transport error.
    pub async fn try_get(&self, path: &str) -> reqwest::Result<(u16, Value)> {
        Self::send(self.request(reqwest::Method::GET, path)).await
    }

    /// `GET path`: status and JSON body (a string body if it is not JSON).
    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.try_get(path).await.expect("the node answers")
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        Self::send(self.request(reqwest::Method::POST, path).json(body))
            .await
            .expect("the node answers")
    }

    /// `POST path` with a raw body and content type.
    pub async fn post_raw(&self, path: &str, content_type: &str, body: Vec<u8>) -> (u16, Value) {
        Self::send(
            self.request(reqwest::Method::POST, path)
                .header("content-type", content_type)
                .body(body),
        )
        .await
        .expect("the node answers")
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> (u16, Value) {
        Self::send(self.request(reqwest::Method::DELETE, path))
            .await
            .expect("the node answers")
    }
}

/// The error code of an error body.
pub fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<no error code>")
}

/// Runs `tradefloor <args>` against `node` (`TRADEFLOOR_NODE`, no token from the
/// environment) and waits for it, off the runtime's threads.
pub async fn tradefloor(node: &Node, args: &[&str]) -> std::process::Output {
    let url = node.url.clone();
    let args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(binary())
            .args(&args)
            .env("TRADEFLOOR_NODE", &url)
            .env_remove("TRADEFLOOR_TOKEN")
            .output()
            .expect("the tradefloor binary runs")
    })
    .await
    .expect("the command's thread does not panic")
}

/// The market the tests trade: `BTC-USD`, tick 1, lot 1, the default band.
pub const SYMBOL: &str = "BTC-USD";

/// Lists [`SYMBOL`] (as an admin) and checks it was listed.
pub async fn list_market(http: &Http) {
    let market = json!({"symbol": SYMBOL, "base": "BTC", "quote": "USD",
        "tick_size": 1, "lot_size": 1});
    let (status, body) = http.post("/v1/markets", &market).await;
    assert_eq!(status, 201, "{body}");
}

/// Deposits `amount` of `asset` into `account` and checks it was credited.
pub async fn deposit(http: &Http, account: &str, asset: &str, amount: u64) -> Value {
    let body = json!({"asset": asset, "amount": amount});
    let (status, reply) = http
        .post(&format!("/v1/accounts/{account}/deposits"), &body)
        .await;
    assert_eq!(status, 200, "deposit into {account}: {reply}");
    reply
}

/// A limit GTC order's body.
pub fn limit_order(account: &str, side: &str, price: u64, quantity: u64) -> Value {
    json!({"account_id": account, "symbol": SYMBOL, "side": side, "type": "limit",
        "price": price, "quantity": quantity})
}

/// Places `order` and checks the book took it (201); the order as answered.
pub async fn place(http: &Http, order: &Value) -> Value {
    let (status, reply) = http.post("/v1/orders", order).await;
    assert_eq!(status, 201, "place {order}: {reply}");
    reply
}

/// `GET /v1/accounts/{account}`, which must answer 200.
pub async fn account(http: &Http, account: &str) -> Value {
    let (status, body) = http.get(&format!("/v1/accounts/{account}")).await;
    assert_eq!(status, 200, "account {account}: {body}");
    body
}

/// `GET` of [`SYMBOL`]'s book, which must answer 200.
pub async fn book(http: &Http) -> Value {
    let (status, body) = http.get(&format!("/v1/markets/{SYMBOL}/book")).await;
    assert_eq!(status, 200, "book: {body}");
    body
}

/// What the node holds for `accounts` and [`SYMBOL`]: every account (balances and open
/// orders) and the book, to compare before and after something that must change nothing.
pub async fn snapshot(http: &Http, accounts: &[&str]) -> Value {
    let mut state = serde_json::Map::new();
    for name in accounts {
        state.insert((*name).to_owned(), account(http, name).await);
    }
    state.insert("book".to_owned(), book(http).await);
    Value::Object(state)
}

/// Waits until [`snapshot`] of `accounts` equals `before` again (a refused order's saga
/// releases its hold just after the refusal is answered), then checks it does.
pub async fn unchanged(http: &Http, accounts: &[&str], before: &Value) {
    let deadline = Instant::now() + PROJECTION_TIMEOUT;
    loop {
        let now = snapshot(http, accounts).await;
        if now == *before || Instant::now() >= deadline {
            assert_eq!(&now, before, "nothing changed");
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Σ total per asset over `accounts`' balances (the conservation invariant's left side).
pub async fn totals(http: &Http, accounts: &[&str]) -> BTreeMap<String, u64> {
    let mut totals = BTreeMap::new();
    for name in accounts {
        let body = account(http, name).await;
        for (asset, balance) in body["balances"].as_object().expect("balances") {
            let total = balance["total"].as_u64().expect("a total");
            *totals.entry(asset.clone()).or_insert(0) += total;
            assert!(
                balance["held"].as_u64() <= Some(total),
                "held ≤ total for {name}: {balance}"
            );
        }
    }
    totals
}
