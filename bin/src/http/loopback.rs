//! What a node without tokens (loopback only, every caller an admin) refuses: requests
//! addressed to a host other than a loopback one (DNS rebinding: a web page's name resolving
//! to 127.0.0.1 reaches the node with that name as `Host`), and state-changing requests a
//! browser sent for another site (cross-site form posts: `halt`, `rebalance` and `leave` take
//! no body, so no content type stops them). A node with tokens needs neither: a browser never
//! adds a bearer token by itself.

use actix_web::dev::ServiceRequest;
use actix_web::http::{Method, header};

use super::error::ApiError;

/// Whether `host` (a `Host` header or an origin's authority: name or address, then perhaps a
/// port) names this machine's loopback interface.
fn is_loopback_authority(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        // [::1]:8080
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _port)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|address| address.is_loopback())
}

/// Whether `origin` (`scheme://authority`) is a page served from this machine's loopback.
fn is_loopback_origin(origin: &str) -> bool {
    origin
        .split_once("://")
        .is_some_and(|(_scheme, authority)| is_loopback_authority(authority))
}

/// Refuses `request` if a node without tokens must not serve it (see the [module](self)).
pub(super) fn check(request: &ServiceRequest) -> Result<(), ApiError> {
    let headers = request.headers();
    let host = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    if !is_loopback_authority(host) {
        return Err(ApiError::forbidden(
            "a node without tokens serves requests addressed to a loopback host only",
        ));
    }
    let changes_state = !matches!(*request.method(), Method::GET | Method::HEAD);
    let cross_site = headers
        .get(header::ORIGIN)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|origin| !is_loopback_origin(origin))
        || headers
            .get("sec-fetch-site")
            .is_some_and(|value| value.as_bytes() == b"cross-site");
    if changes_state && cross_site {
        return Err(ApiError::forbidden(
            "a node without tokens refuses state-changing requests from other sites",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_and_origins() {
        for host in [
            "127.0.0.1:8080",
            "localhost",
            "LOCALHOST:1",
            "[::1]:80",
            "127.1.2.3",
        ] {
            assert!(is_loopback_authority(host), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:8080",
            "10.0.0.1:80",
            "",
            "[::2]:1",
        ] {
            assert!(!is_loopback_authority(host), "{host}");
        }
        assert!(is_loopback_origin("http://127.0.0.1:3000"));
        assert!(!is_loopback_origin("https://evil.example"));
        assert!(!is_loopback_origin("null"));
    }
}
