//! TLS on both ports (issue 13): a node serves HTTPS from its certificate files, and cluster
//! members speak mutual TLS on the cluster port, refusing plain bytes and certificates of
//! another CA, while the cluster serves on.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tradefloor_tests::cluster::{SECRET, SECRET_VAR, free_addr, shard_of, shard_owners};
use tradefloor_tests::{Http, Node, NodeOptions, closed_within, postgres_database, start_refused};

/// A CA and the certificates it issued, as PEM files in a temporary directory.
struct Pki {
    dir: tempfile::TempDir,
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let key = KeyPair::generate().expect("a CA key");
        let ca = CertifiedIssuer::self_signed(params, key).expect("a CA certificate");
        let pki = Pki {
            dir: tempfile::tempdir().expect("a temporary directory"),
            ca,
        };
        std::fs::write(pki.ca_file(), pki.ca.pem()).expect("write the CA");
        pki
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Issues a certificate for 127.0.0.1 and localhost, good for servers and clients;
    /// returns its (certificate, key) files.
    fn issue(&self, name: &str) -> (PathBuf, PathBuf) {
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .expect("parameters");
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().expect("a key");
        let certificate = params.signed_by(&key, &self.ca).expect("a certificate");
        let cert_file = self.dir.path().join(format!("{name}.pem"));
        let key_file = self.dir.path().join(format!("{name}.key"));
        std::fs::write(&cert_file, certificate.pem()).expect("write the certificate");
        std::fs::write(&key_file, key.serialize_pem()).expect("write the key");
        (cert_file, key_file)
    }
}

fn tls_env(pki: &Pki, name: &str, cluster: bool) -> Vec<(String, String)> {
    let (cert, key) = pki.issue(name);
    let path = |path: &Path| path.display().to_string();
    let mut env = vec![
        ("TRADEFLOOR_TLS__HTTP_CERT".to_owned(), path(&cert)),
        ("TRADEFLOOR_TLS__HTTP_KEY".to_owned(), path(&key)),
    ];
    if cluster {
        env.extend([
            ("TRADEFLOOR_TLS__CLUSTER_CERT".to_owned(), path(&cert)),
            ("TRADEFLOOR_TLS__CLUSTER_KEY".to_owned(), path(&key)),
            (
                "TRADEFLOOR_TLS__CLUSTER_CA".to_owned(),
                path(&pki.ca_file()),
            ),
        ]);
    }
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_serves_https_from_its_certificate_files_and_not_plain_http() {
    let pki = Pki::new("tradefloor test CA");
    let options = NodeOptions {
        env: tls_env(&pki, "n1", false),
        ca: Some(pki.ca_file()),
        ..NodeOptions::default()
    };
    let node = Node::start(options).await;
    assert!(node.url.starts_with("https://"), "{}", node.url);

    let https = Http::trusting(&node.url, None, Some(&pki.ca_file()));
    let (status, body) = https
        .post(
            "/v1/accounts/alice/deposits",
            &json!({"asset": "USD", "amount": 100}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = https.get("/v1/accounts/alice").await;
    assert_eq!(status, 200, "{body}");

    // Plain HTTP on the HTTPS port gets no answer, and a client that does not trust the CA
    // does not get past the handshake.
    let plain = Http::new(&node.url.replace("https://", "http://"), None);
    assert!(plain.try_get("/health/ready").await.is_err());
    let untrusting = Http::new(&node.url, None);
    assert!(untrusting.try_get("/health/ready").await.is_err());
    assert_eq!(https.get("/health/ready").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_a_tls_configuration_is_refused_at_start() {
    let pki = Pki::new("tradefloor test CA");
    let (cert, _) = pki.issue("n1");
    let options = NodeOptions {
        env: vec![(
            "TRADEFLOOR_TLS__HTTP_CERT".to_owned(),
            cert.display().to_string(),
        )],
        ..NodeOptions::default()
    };
    let (code, logs) = start_refused(&options, "127.0.0.1:0").await;
    assert_ne!(code, Some(0));
    assert!(logs.contains("tls.http_cert and tls.http_key"), "{logs}");
}

/// A TLS client of `address` trusting `ca`, presenting `identity` (certificate, key).
async fn tls_client(
    address: &str,
    ca: &Path,
    identity: (&Path, &Path),
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let mut roots = RootCertStore::empty();
    for certificate in CertificateDer::pem_file_iter(ca).expect("the CA file") {
        roots
            .add(certificate.expect("a certificate"))
            .expect("a root");
    }
    let chain: Vec<_> = CertificateDer::pem_file_iter(identity.0)
        .expect("the certificate file")
        .collect::<Result<_, _>>()
        .expect("certificates");
    let key = PrivateKeyDer::from_pem_file(identity.1).expect("the key file");
    let config = ClientConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)
    .expect("a client identity");
    let stream = TcpStream::connect(address).await?;
    let name = ServerName::try_from("127.0.0.1").expect("an IP name");
    TlsConnector::from(Arc::new(config))
        .connect(name, stream)
        .await
}

/// Whether the peer closes (or breaks) the connection after `bytes` within 10 s, perhaps
/// after a TLS alert.
async fn closed_after<S: AsyncRead + AsyncWriteExt + Unpin>(stream: &mut S, bytes: &[u8]) -> bool {
    if stream.write_all(bytes).await.is_err() {
        return true;
    }
    closed_within(stream, Duration::from_secs(10))
        .await
        .is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_members_speak_mutual_tls_and_refuse_everyone_else() {
    let Some(database) = postgres_database("tls_cluster").await else {
        return;
    };
    let pki = Pki::new("tradefloor cluster CA");
    let addresses = [free_addr(), free_addr()];
    let mut launches = Vec::new();
    for (index, cluster_addr) in addresses.iter().enumerate() {
        let id = format!("n{}", index + 1);
        let seeds: Vec<&str> = addresses
            .iter()
            .filter(|other| *other != cluster_addr)
            .map(String::as_str)
            .collect();
        let mut options = NodeOptions::with_journal(&database);
        options.args.extend([
            "--node-id".to_owned(),
            id.clone(),
            "--cluster-addr".to_owned(),
            cluster_addr.clone(),
            "--seeds".to_owned(),
            seeds.join(","),
        ]);
        options.env.push((SECRET_VAR.to_owned(), SECRET.to_owned()));
        options.env.extend(tls_env(&pki, &id, true));
        options.ca = Some(pki.ca_file());
        launches.push(tokio::spawn(Node::launch(options)));
    }
    let mut nodes = Vec::new();
    for launch in launches {
        let node = launch.await.expect("the node starts");
        node.wait_ready_within(Duration::from_secs(90)).await;
        nodes.push(node);
    }
    let http = Http::trusting(&nodes[0].url, None, Some(&pki.ca_file()));

    // Plain bytes (the eight that once aborted a node), and a client certificate of another
    // CA, are each refused at the TLS handshake.
    let mut plain = TcpStream::connect(&addresses[1]).await.expect("connect");
    assert!(closed_after(&mut plain, &[0x40, 0, 0, 0, 0, 0, 0, 0]).await);
    let outsider = Pki::new("another CA");
    let (cert, key) = outsider.issue("intruder");
    let trusted = pki.ca_file();
    match tls_client(&addresses[1], &trusted, (&cert, &key)).await {
        Err(_) => {}
        Ok(mut stream) => assert!(closed_after(&mut stream, &[0, 0, 0, 0, 0, 0, 0, 4]).await),
    }

    // A peer with a certificate of the cluster's CA gets through TLS (the port does speak
    // it), and then meets the guard: garbage inside is refused too.
    let (cert, key) = pki.issue("peer");
    let mut inside = tls_client(&addresses[1], &trusted, (&cert, &key))
        .await
        .expect("a certificate of the cluster's CA passes the TLS handshake");
    assert!(closed_after(&mut inside, &[0x40, 0, 0, 0, 0, 0, 0, 0]).await);

    // Once the shards are spread over both nodes, deposits through n1 reach accounts on
    // both: the calls to n2's shards go over the mutual-TLS cluster port.
    let owners = tradefloor_tests::eventually(
        "the shards spread over both nodes",
        Duration::from_secs(60),
        || async {
            let (status, shards) = http.get("/v1/cluster/shards").await;
            assert_eq!(status, 200, "{shards}");
            let owners = shard_owners(&shards).ok()?;
            let settled = shards["shards"]
                .as_array()
                .is_some_and(|shards| shards.iter().all(|shard| shard["handoff"] == "active"));
            let both = ["n1", "n2"]
                .iter()
                .all(|node| owners.values().any(|owner| owner == node));
            (settled && both).then_some(owners)
        },
    )
    .await;
    let mut reached = BTreeSet::new();
    for number in 0..64 {
        let account = format!("acct-{number}");
        let (status, body) = http
            .post(
                &format!("/v1/accounts/{account}/deposits"),
                &json!({"asset": "USD", "amount": 10, "command_id": format!("d-{number}")}),
            )
            .await;
        assert_eq!(status, 200, "{account}: {body}");
        reached.insert(owners[&shard_of(&account)].clone());
    }
    assert_eq!(reached.len(), 2, "deposits reached both nodes: {reached:?}");
    let (status, members) = http.get("/v1/cluster/members").await;
    assert_eq!(status, 200, "{members}");
    let up = members["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter(|member| member["status"] == "up")
        .count();
    assert_eq!(up, 2, "{members}");
}
