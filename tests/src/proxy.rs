//! A TCP proxy that can cut a link: it listens on a free loopback port and forwards every
//! connection to a target address; [`Proxy::cut`] drops every live connection and stops
//! listening (new connections are refused), [`Proxy::heal`] listens on the same port again.
//!
//! To cut a node off from the cluster, start it with `--cluster-advertise <proxy address>`
//! and the proxy forwarding to its real `--cluster-addr`: the other nodes reach it only
//! through the proxy.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A cuttable TCP link to one target address.
pub struct Proxy {
    addr: SocketAddr,
    target: String,
    acceptor: Mutex<Option<JoinHandle<()>>>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    /// A proxy on a free loopback port forwarding to `target` (`host:port`).
    pub async fn start(target: impl Into<String>) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("the proxy binds a free port");
        let addr = listener.local_addr().expect("the proxy's address");
        let proxy = Proxy {
            addr,
            target: target.into(),
            acceptor: Mutex::new(None),
            connections: Arc::default(),
        };
        proxy.accept_on(listener);
        proxy
    }

    /// Where the proxy listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where the proxy forwards to.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Whether the link is cut.
    pub fn is_cut(&self) -> bool {
        self.acceptor
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_none()
    }

    /// Drops every live connection (both sides) and stops listening: connecting is refused
    /// until [`Proxy::heal`].
    pub async fn cut(&self) {
        let acceptor = self
            .acceptor
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(acceptor) = acceptor {
            acceptor.abort();
            // Cancelled: the listener is closed once this returns.
            let _ = acceptor.await;
        }
        let connections = std::mem::take(
            &mut *self
                .connections
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for connection in &connections {
            connection.abort();
        }
        for connection in connections {
            let _ = connection.await;
        }
    }

    /// Listens on the same port again (a no-op if the link is not cut).
    pub async fn heal(&self) {
        if !self.is_cut() {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(listener) => break listener,
                Err(error) => {
                    assert!(
                        Instant::now() < deadline,
                        "the proxy cannot listen on {} again: {error}",
                        self.addr
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        self.accept_on(listener);
    }

    fn accept_on(&self, listener: TcpListener) {
        let target = self.target.clone();
        let connections = self.connections.clone();
        let acceptor = tokio::spawn(async move {
            loop {
                let inbound = match listener.accept().await {
                    Ok((inbound, _)) => inbound,
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let target = target.clone();
                let connection = tokio::spawn(async move {
                    let mut inbound = inbound;
                    let Ok(mut outbound) = TcpStream::connect(&target).await else {
                        return;
                    };
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                });
                let mut connections = connections.lock().unwrap_or_else(PoisonError::into_inner);
                connections.retain(|connection| !connection.is_finished());
                connections.push(connection);
            }
        });
        *self.acceptor.lock().unwrap_or_else(PoisonError::into_inner) = Some(acceptor);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(acceptor) = self
            .acceptor
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            acceptor.abort();
        }
        for connection in self
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            connection.abort();
        }
    }
}
