//! Tradefloor system tests: they start real `tradefloor` processes over real sockets and
//! check the node's contract and guarantees (nothing acknowledged is lost, conservation of
//! every asset, every error code).
//!
//! This library is the harness: [`binary`] builds the `tradefloor` executable once per test
//! process (a package's tests only get the executables of their own package), [`Node`]
//! starts one on a free port with its own data directory and stops or kills it, and
//! [`Http`] is a JSON client. The tests are in `tests/tests/`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

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
    let name = format!(
        "tf_{}_{}_{}",
        test.replace(|c: char| !c.is_ascii_alphanumeric(), "_"),
        std::process::id(),
        Instant::now().elapsed().as_nanos() % 1_000_000
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
    _dir: Option<tempfile::TempDir>,
}

impl Node {
    /// Starts a node on a free loopback port in a new temporary data directory and waits
    /// until it is ready.
    pub async fn start(options: NodeOptions) -> Node {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let data_dir = dir.path().to_path_buf();
        let mut node = Node {
            child: None,
            url: String::new(),
            data_dir,
            options,
            _dir: Some(dir),
        };
        node.spawn().await;
        node.wait_ready().await;
        node
    }

    /// Starts the process and waits for it to print its address (not for readiness).
    pub async fn spawn(&mut self) {
        assert!(self.child.is_none(), "the node is already running");
        let mut command = Command::new(binary());
        command
            .arg("node")
            .arg("--http")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(&self.options.args)
            .env_remove("RUST_LOG")
            // Warnings only: the node's stderr goes to the test's.
            .env("TRADEFLOOR_LOG_FILTER", "warn")
            .envs(self.options.env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        if let Some(config) = &self.options.config {
            let path = self.data_dir.join("node.toml");
            std::fs::write(&path, config).expect("write the configuration");
            command.arg("--config").arg(path);
        }
        let mut child = command.spawn().expect("the tradefloor binary starts");
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

    /// Waits until `/health/ready` answers 200.
    pub async fn wait_ready(&self) {
        let http = Http::new(&self.url, None);
        let deadline = Instant::now() + NODE_START_TIMEOUT;
        loop {
            if let Ok((200, _)) = http.try_get("/health/ready").await {
                return;
            }
            assert!(Instant::now() < deadline, "the node did not become ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
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
        Self {
            base: base.trim_end_matches('/').to_owned(),
            token: token.map(str::to_owned),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("a client"),
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
        let response = builder.send().await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, body))
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
