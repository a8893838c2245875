//! The cluster port's guard: what stands between a peer that has not authenticated and
//! ractor_cluster.
//!
//! ractor_cluster 0.15 read a frame's u64 length prefix and allocated that many bytes before
//! anything else (eight bytes `40 00 00 00 00 00 00 00` aborted the node); 0.16 bounds a
//! frame at 16 MiB, but before authentication that is still too much, and it keeps a handshake
//! open forever and takes any number of connections. So this node accepts (and dials) the
//! connections itself, after a TLS handshake if [`GuardConfig::tls`] is set, and hands each
//! to ractor_cluster as an external stream wrapped in a
//! [`Guarded`] stream, which follows the frames as they pass (an 8-byte big-endian length,
//! then the payload) and ends the connection, with a log line, on
//!
//! - a frame over the bound: [`GuardConfig::handshake_frame_bytes_max`] until the connection
//!   authenticated, [`GuardConfig::frame_bytes_max`] after;
//! - more frames before authentication than the handshake has
//!   ([`HANDSHAKE_INBOUND_FRAMES_MAX`]): garbage that decodes to nothing, over and over;
//! - a handshake not finished within [`GuardConfig::handshake_timeout`].
//!
//! At most [`GuardConfig::unauthenticated_max`] accepted connections may be unauthenticated
//! at once; past it a new one is closed at once.
//!
//! When is a connection authenticated? ractor_cluster's handshake is three frames each way:
//! the side that was dialled answers the peer's name with its status, its challenge, and, only
//! if the peer answered the challenge with the shared secret, an acknowledgement. So the
//! dialled side is authenticated once it *wrote* its third frame, and the dialling side once
//! it *read* the third (the acknowledgement, which it then checks in turn). A wrong secret
//! gets no third frame: the handshake deadline, or ractor_cluster's own refusal, ends it.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use ractor::{ActorRef, ActorStatus};
use ractor_cluster::{BoxRead, BoxWrite, ClusterBidiStream, NodeServerMessage};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tokio_rustls::rustls::pki_types::ServerName;

use crate::tls::ClusterTls;

/// Frames a dialling peer sends before it is authenticated: its name, perhaps its status,
/// its answer to the challenge.
const HANDSHAKE_INBOUND_FRAMES_MAX: u64 = 3;
/// The frame that authenticates a connection, counted from 1 (see the [module](self)).
const AUTHENTICATING_FRAME: u64 = 3;
/// The length prefix of every frame.
const HEADER_BYTES: usize = 8;

/// The guard's bounds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuardConfig {
    /// Mutual TLS on every connection (accepted and dialled), if configured: the TLS
    /// handshake comes first, within the same deadline and the same cap.
    pub tls: Option<ClusterTls>,
    /// How long a connection may take to authenticate.
    pub handshake_timeout: Duration,
    /// Largest frame before authentication (handshake frames carry a name and a digest).
    pub handshake_frame_bytes_max: u64,
    /// Largest frame after authentication.
    pub frame_bytes_max: u64,
    /// Accepted connections that have not authenticated yet, at most.
    pub unauthenticated_max: usize,
}

impl Default for GuardConfig {
    fn default() -> Self {
        Self {
            tls: None,
            handshake_timeout: Duration::from_secs(5),
            handshake_frame_bytes_max: 4 * 1024,
            // ractor_cluster's own envelope around a frame of remote calls.
            frame_bytes_max: 2 * tradefloor_persistence::codec::FRAME_LIMIT as u64,
            unauthenticated_max: 64,
        }
    }
}

/// Which end of the connection this node is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    /// The peer dialled this node.
    Dialled,
    /// This node dialled the peer.
    Dialling,
}

/// Follows a byte stream's frames.
#[derive(Debug, Default)]
struct Frames {
    header: [u8; HEADER_BYTES],
    header_len: usize,
    payload_left: u64,
    /// Frames whose every byte passed.
    complete: u64,
}

impl Frames {
    /// Follows `bytes`. `bound(n)` is the largest allowed length of frame `n` (from 0), or
    /// `Err` with why frame `n` may not come at all; the first frame over its bound is
    /// refused with the reason.
    fn follow(
        &mut self,
        mut bytes: &[u8],
        bound: impl Fn(u64) -> Result<u64, String>,
    ) -> Result<(), String> {
        while !bytes.is_empty() {
            if self.payload_left > 0 {
                let taken = bytes
                    .len()
                    .min(usize::try_from(self.payload_left).unwrap_or(usize::MAX));
                bytes = &bytes[taken..];
                self.payload_left -= taken as u64;
                if self.payload_left == 0 {
                    self.complete += 1;
                }
                continue;
            }
            let taken = bytes.len().min(HEADER_BYTES - self.header_len);
            self.header[self.header_len..self.header_len + taken].copy_from_slice(&bytes[..taken]);
            self.header_len += taken;
            bytes = &bytes[taken..];
            if self.header_len < HEADER_BYTES {
                continue;
            }
            self.header_len = 0;
            let length = u64::from_be_bytes(self.header);
            let most = bound(self.complete)?;
            if length > most {
                return Err(format!("a frame of {length} bytes (at most {most})"));
            }
            self.payload_left = length;
            if length == 0 {
                self.complete += 1;
            }
        }
        Ok(())
    }
}

/// What both halves of a guarded connection share.
struct Shared {
    peer: SocketAddr,
    side: Side,
    config: GuardConfig,
    authenticated: AtomicBool,
    /// Set when the guard ended the connection: both halves refuse to go on.
    closed: AtomicBool,
    /// The dialled side's place among the unauthenticated connections, given back when it
    /// authenticates or closes.
    permit: Mutex<Option<OwnedSemaphorePermit>>,
}

impl Shared {
    fn authenticate(&self) {
        if !self.authenticated.swap(true, Ordering::AcqRel) {
            self.permit.lock().expect("permit lock").take();
            tracing::debug!(peer = %self.peer, side = ?self.side, "cluster handshake finished");
        }
    }

    fn refuse(&self, reason: &str) {
        if !self.closed.swap(true, Ordering::AcqRel) {
            self.permit.lock().expect("permit lock").take();
            metrics::counter!("tradefloor_cluster_connections_refused_total", "why" => "guard")
                .increment(1);
            tracing::warn!(peer = %self.peer, side = ?self.side, %reason, "cluster connection closed by the guard");
        }
    }

    /// The bound on inbound frame `index` (from 0).
    fn inbound_bound(&self, index: u64) -> Result<u64, String> {
        if self.authenticated.load(Ordering::Acquire) {
            return Ok(self.config.frame_bytes_max);
        }
        if index >= HANDSHAKE_INBOUND_FRAMES_MAX {
            return Err(format!(
                "{HANDSHAKE_INBOUND_FRAMES_MAX} frames and no authentication"
            ));
        }
        Ok(self.config.handshake_frame_bytes_max)
    }
}

/// A connection's byte stream: plain TCP, or TLS over it.
trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// A connection to or from another node, guarded (see the [module](self)).
struct Guarded {
    stream: Box<dyn Io>,
    shared: Arc<Shared>,
}

impl Guarded {
    fn new(stream: Box<dyn Io>, peer: SocketAddr, side: Side, config: &GuardConfig) -> Self {
        Self {
            stream,
            shared: Arc::new(Shared {
                peer,
                side,
                config: config.clone(),
                authenticated: AtomicBool::new(false),
                closed: AtomicBool::new(false),
                permit: Mutex::new(None),
            }),
        }
    }
}

impl ClusterBidiStream for Guarded {
    fn split(self: Box<Self>) -> (BoxRead, BoxWrite) {
        let (read, write) = tokio::io::split(self.stream);
        let deadline = Box::pin(tokio::time::sleep(self.shared.config.handshake_timeout));
        let reader = GuardedRead {
            inner: read,
            shared: self.shared.clone(),
            frames: Frames::default(),
            deadline,
        };
        let writer = GuardedWrite {
            inner: write,
            shared: self.shared,
            frames: Frames::default(),
        };
        (Box::new(reader), Box::new(writer))
    }

    fn peer_label(&self) -> Option<String> {
        Some(self.shared.peer.to_string())
    }
}

struct GuardedRead {
    inner: tokio::io::ReadHalf<Box<dyn Io>>,
    shared: Arc<Shared>,
    frames: Frames,
    deadline: Pin<Box<Sleep>>,
}

impl AsyncRead for GuardedRead {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.shared.closed.load(Ordering::Acquire) {
            return Poll::Ready(Ok(()));
        }
        if !this.shared.authenticated.load(Ordering::Acquire)
            && this.deadline.as_mut().poll(cx).is_ready()
        {
            let timeout = this.shared.config.handshake_timeout;
            this.shared
                .refuse(&format!("no authentication within {timeout:?}"));
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            let shared = &this.shared;
            let followed = this
                .frames
                .follow(&buf.filled()[before..], |index| shared.inbound_bound(index));
            if let Err(reason) = followed {
                // Nothing of the offending read reaches ractor_cluster: it sees the end.
                buf.set_filled(before);
                shared.refuse(&reason);
                return Poll::Ready(Ok(()));
            }
            if shared.side == Side::Dialling && this.frames.complete >= AUTHENTICATING_FRAME {
                shared.authenticate();
            }
        }
        result
    }
}

struct GuardedWrite {
    inner: tokio::io::WriteHalf<Box<dyn Io>>,
    shared: Arc<Shared>,
    frames: Frames,
}

impl AsyncWrite for GuardedWrite {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.shared.closed.load(Ordering::Acquire) {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let result = Pin::new(&mut this.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(written)) = result {
            // This node's own frames: followed only to count them, never bounded.
            let _ = this.frames.follow(&data[..written], |_| Ok(u64::MAX));
            if this.shared.side == Side::Dialled && this.frames.complete >= AUTHENTICATING_FRAME {
                this.shared.authenticate();
            }
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Accepts the connections of other nodes on `listener` and hands each, guarded, to
/// `server`; runs until the task is aborted.
pub(crate) async fn accept(
    listener: TcpListener,
    server: ActorRef<NodeServerMessage>,
    config: GuardConfig,
) {
    let unauthenticated = Arc::new(Semaphore::new(config.unauthenticated_max));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // E.g. out of file descriptors: pause rather than spin.
                tracing::warn!(%error, "cluster port: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = unauthenticated.clone().try_acquire_owned() else {
            metrics::counter!("tradefloor_cluster_connections_refused_total", "why" => "unauthenticated_max")
                .increment(1);
            tracing::warn!(%peer, limit = config.unauthenticated_max, "cluster connection refused: too many unauthenticated connections");
            continue;
        };
        let _ = stream.set_nodelay(true);
        if matches!(
            server.get_status(),
            ActorStatus::Stopping | ActorStatus::Stopped
        ) {
            tracing::warn!("cluster port: the cluster server is gone; no more connections");
            return;
        }
        // Its own task: a slow TLS handshake must not hold up the next connection.
        tokio::spawn(hand_over(
            stream,
            peer,
            permit,
            server.clone(),
            config.clone(),
        ));
    }
}

/// Hands an accepted connection to `server`, after its TLS handshake if TLS is configured.
async fn hand_over(
    stream: TcpStream,
    peer: SocketAddr,
    permit: OwnedSemaphorePermit,
    server: ActorRef<NodeServerMessage>,
    config: GuardConfig,
) {
    let stream: Box<dyn Io> = match &config.tls {
        None => Box::new(stream),
        Some(tls) => {
            let handshake = tls.acceptor.accept(stream);
            match tokio::time::timeout(config.handshake_timeout, handshake).await {
                Ok(Ok(stream)) => Box::new(stream),
                Ok(Err(error)) => return refused_tls(peer, &error.to_string()),
                Err(_) => return refused_tls(peer, "no TLS handshake within the deadline"),
            }
        }
    };
    let guarded = Guarded::new(stream, peer, Side::Dialled, &config);
    *guarded.shared.permit.lock().expect("permit lock") = Some(permit);
    let _ = server.cast(NodeServerMessage::ConnectionOpenedExternal {
        stream: Box::new(guarded),
        is_server: true,
    });
}

fn refused_tls(peer: SocketAddr, reason: &str) {
    metrics::counter!("tradefloor_cluster_connections_refused_total", "why" => "tls").increment(1);
    tracing::warn!(%peer, %reason, "cluster connection closed: TLS handshake failed");
}

/// Dials `address` (`host:port`) and hands the connection, guarded, to `server`; with TLS,
/// the peer's certificate must name `host`.
pub(crate) async fn dial(
    server: &ActorRef<NodeServerMessage>,
    address: &str,
    config: &GuardConfig,
) -> io::Result<()> {
    let stream = TcpStream::connect(address).await?;
    stream.set_nodelay(true)?;
    let peer = stream.peer_addr()?;
    let stream: Box<dyn Io> = match &config.tls {
        None => Box::new(stream),
        Some(tls) => {
            let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let name = ServerName::try_from(host.to_owned())
                .map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, error))?;
            Box::new(tls.connector.connect(name, stream).await?)
        }
    };
    let guarded = Guarded::new(stream, peer, Side::Dialling, config);
    ractor_cluster::client_connect_external(server, Box::new(guarded))
        .await
        .map_err(|error| io::Error::other(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(length: u64, payload_byte: u8) -> Vec<u8> {
        let mut bytes = length.to_be_bytes().to_vec();
        bytes.extend(std::iter::repeat_n(payload_byte, length as usize));
        bytes
    }

    #[test]
    fn frames_are_counted_however_the_bytes_are_cut() {
        let stream: Vec<u8> = [frame(3, 1), frame(0, 0), frame(10, 2)].concat();
        for cut in 1..stream.len() {
            let mut frames = Frames::default();
            for piece in stream.chunks(cut) {
                frames.follow(piece, |_| Ok(10)).unwrap();
            }
            assert_eq!(frames.complete, 3, "pieces of {cut} bytes");
        }
    }

    #[test]
    fn a_length_over_the_bound_is_refused_from_its_header_alone() {
        let mut frames = Frames::default();
        let header = 0x4000_0000_0000_0000_u64.to_be_bytes();
        frames.follow(&header[..7], |_| Ok(4096)).unwrap();
        let refused = frames.follow(&header[7..], |_| Ok(4096)).unwrap_err();
        assert!(refused.contains("4611686018427387904"), "{refused}");
    }

    #[test]
    fn the_bound_depends_on_the_frame_index() {
        let mut frames = Frames::default();
        let bound = |index: u64| {
            if index < 2 {
                Ok(100)
            } else {
                Err("no more".to_owned())
            }
        };
        frames.follow(&frame(5, 1), bound).unwrap();
        frames.follow(&frame(5, 1), bound).unwrap();
        assert_eq!(frames.follow(&frame(5, 1), bound).unwrap_err(), "no more");
    }
}
