//! TLS for the node's ports, from PEM files (rustls, with the aws-lc-rs provider that
//! ractor_cluster's own TLS support already builds):
//!
//! - the HTTP port: a server certificate, no client certificates ([`server_config`]);
//! - the cluster port, mutual: every node presents a certificate issued by the cluster's CA
//!   and accepts only peers presenting one ([`ClusterTls`]); the shared secret is still
//!   checked inside;
//! - ractor_cluster's own listener, which this node never uses (every connection goes through
//!   the cluster port's guard): [`sealed`] gives it a TLS acceptor without a certificate, so
//!   every handshake on it fails before a byte reaches ractor_cluster.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::error::Error;

/// A certificate chain and its private key, as PEM files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The leaf's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn tls_error(path: &Path, error: impl fmt::Display) -> Error {
    Error::InvalidRequest(format!("TLS file {}: {error}", path.display()))
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|error| tls_error(path, error))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| tls_error(path, error))?;
    if certificates.is_empty() {
        return Err(tls_error(path, "no certificate in the file"));
    }
    Ok(certificates)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, Error> {
    PrivateKeyDer::from_pem_file(path).map_err(|error| tls_error(path, error))
}

fn roots(ca: &Path) -> Result<Arc<RootCertStore>, Error> {
    let mut roots = RootCertStore::empty();
    for certificate in certificates(ca)? {
        roots
            .add(certificate)
            .map_err(|error| tls_error(ca, error))?;
    }
    Ok(Arc::new(roots))
}

/// A server's TLS configuration presenting `identity`; with `client_ca`, only clients
/// presenting a certificate it issued complete the handshake.
pub fn server_config(
    identity: &Identity,
    client_ca: Option<&Path>,
) -> Result<Arc<ServerConfig>, Error> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|error| Error::InvalidRequest(format!("TLS: {error}")))?;
    let builder = match client_ca {
        Some(ca) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(roots(ca)?, provider())
                .build()
                .map_err(|error| tls_error(ca, error))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(certificates(&identity.cert)?, private_key(&identity.key)?)
        .map_err(|error| tls_error(&identity.key, error))?;
    Ok(Arc::new(config))
}

/// A client's TLS configuration trusting only `ca`, presenting `identity` if given.
pub fn client_config(ca: &Path, identity: Option<&Identity>) -> Result<Arc<ClientConfig>, Error> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|error| Error::InvalidRequest(format!("TLS: {error}")))?
        .with_root_certificates(roots(ca)?);
    let config = match identity {
        Some(identity) => builder
            .with_client_auth_cert(certificates(&identity.cert)?, private_key(&identity.key)?)
            .map_err(|error| tls_error(&identity.key, error))?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// Mutual TLS on the cluster port: this node's certificate, and the cluster's CA that every
/// peer's certificate must chain to (both ways).
#[derive(Clone)]
pub struct ClusterTls {
    /// Where the configuration came from (to show and compare it).
    pub identity: Identity,
    /// The cluster's CA certificate(s).
    pub ca: PathBuf,
    pub(crate) acceptor: TlsAcceptor,
    pub(crate) connector: TlsConnector,
}

impl ClusterTls {
    /// Loads this node's identity and the cluster's CA; a missing or malformed file is
    /// refused with its path.
    pub fn load(identity: Identity, ca: PathBuf) -> Result<Self, Error> {
        let acceptor = TlsAcceptor::from(server_config(&identity, Some(&ca))?);
        let connector = TlsConnector::from(client_config(&ca, Some(&identity))?);
        Ok(Self {
            identity,
            ca,
            acceptor,
            connector,
        })
    }
}

impl fmt::Debug for ClusterTls {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("ClusterTls")
            .field("identity", &self.identity)
            .field("ca", &self.ca)
            .finish_non_exhaustive()
    }
}

impl PartialEq for ClusterTls {
    fn eq(&self, other: &Self) -> bool {
        self.identity == other.identity && self.ca == other.ca
    }
}

impl Eq for ClusterTls {}

/// Resolves no certificate for anyone: every handshake fails.
#[derive(Debug)]
struct NoCertificate;

impl ResolvesServerCert for NoCertificate {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        None
    }
}

/// A TLS acceptor no client can complete a handshake with (see the [module](self)).
pub(crate) fn sealed() -> TlsAcceptor {
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("the default provider supports the default versions")
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(NoCertificate));
    TlsAcceptor::from(Arc::new(config))
}
