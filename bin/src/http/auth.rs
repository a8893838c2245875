//! Bearer tokens and roles: an `admin` does everything; `funding` (the funding system) moves
//! money in and out of any account and reads accounts; a `trader` trades, withdraws and reads
//! on its own accounts only, and deposits nothing (a trader could otherwise mint money); a
//! `feed` publishes external quotes and reads public market data, and touches no account.
//!
//! Tokens are compared in constant time, every configured token is tried (so timing does not
//! tell which one nearly matched), and no token is ever logged. With no tokens configured the
//! node serves loopback only (checked at start) and every caller is an admin.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use actix_web::http::{StatusCode, header};
use actix_web::{FromRequest, HttpMessage, HttpRequest, dev::Payload, web};
use futures_util::future::{Ready, ready};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::rate::Bucket;
use super::state::AppState;
use crate::config::{Role, TokenConfig};

/// Who the audit log says called a node without tokens (loopback only, everyone admin).
pub const LOOPBACK_PRINCIPAL: &str = "loopback";
/// Who the audit log says called without a valid token.
pub const ANONYMOUS_PRINCIPAL: &str = "anonymous";

/// The configured tokens, the rate-limit bucket of each that has a limit, and each one's
/// name in the audit log.
#[derive(Clone, Debug, Default)]
pub struct Tokens {
    tokens: Vec<TokenConfig>,
    buckets: Arc<[Option<Bucket>]>,
    names: Arc<[String]>,
}

impl Tokens {
    /// The tokens of the configuration.
    pub fn new(tokens: Vec<TokenConfig>) -> Self {
        let buckets = tokens
            .iter()
            .map(|token| token.requests_per_second.map(Bucket::new))
            .collect();
        let names = tokens
            .iter()
            .enumerate()
            .map(|(index, token)| {
                token.name.clone().unwrap_or_else(|| {
                    let role = match token.role {
                        Role::Admin => "admin",
                        Role::Funding => "funding",
                        Role::Trader => "trader",
                        Role::Feed => "feed",
                    };
                    format!("{role}-{}", index + 1)
                })
            })
            .collect();
        Self {
            tokens,
            buckets,
            names,
        }
    }

    /// The caller's name in the audit log: its token's, [`ANONYMOUS_PRINCIPAL`] without a
    /// valid token, [`LOOPBACK_PRINCIPAL`] on a node without tokens.
    pub fn principal_name(&self, matched: MatchedToken) -> &str {
        if self.is_open() {
            return LOOPBACK_PRINCIPAL;
        }
        matched
            .0
            .map_or(ANONYMOUS_PRINCIPAL, |index| self.names[index].as_str())
    }

    /// Which token `presented` is, if any (every token compared in constant time).
    pub fn matched(&self, presented: Option<&[u8]>) -> MatchedToken {
        MatchedToken(presented.and_then(|presented| self.find(presented)))
    }

    /// The index of the token `presented` is, if any: every token compared in constant time.
    fn find(&self, presented: &[u8]) -> Option<usize> {
        let mut found = None;
        for (index, token) in self.tokens.iter().enumerate() {
            let equal: bool = token.token.as_bytes().ct_eq(presented).into();
            if equal && found.is_none() {
                found = Some(index);
            }
        }
        found
    }

    /// Takes one request of `matched`'s rate limit, or 429 with `Retry-After` (a missing or
    /// unknown token passes: it is refused with 401 later). The match is kept with the
    /// request, so the principal is not looked up twice.
    pub fn admit(&self, matched: MatchedToken, now: Instant) -> Result<(), ApiError> {
        let Some(index) = matched.0 else {
            return Ok(());
        };
        let Some(bucket) = self.buckets[index].as_ref() else {
            return Ok(());
        };
        bucket.take(now).map_err(|wait| {
            let per_second = self.tokens[index].requests_per_second.unwrap_or_default();
            ApiError::retry(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests",
                format!("this token's limit of {per_second} requests a second is spent"),
                wait.as_secs().max(1),
            )
        })
    }

    /// Whether the node runs open (no tokens: loopback only).
    pub fn is_open(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Who presents `presented`, if anyone.
    pub fn principal(&self, presented: Option<&[u8]>) -> Result<Principal, ApiError> {
        self.principal_of(self.matched(presented))
    }

    /// Who the token `matched` is, if any.
    fn principal_of(&self, matched: MatchedToken) -> Result<Principal, ApiError> {
        if self.is_open() {
            return Ok(Principal::Admin);
        }
        match matched.0.map(|index| &self.tokens[index]) {
            Some(token) => Ok(match token.role {
                Role::Admin => Principal::Admin,
                Role::Funding => Principal::Funding,
                Role::Trader => Principal::Trader {
                    accounts: token.accounts.iter().cloned().collect(),
                },
                Role::Feed => Principal::Feed,
            }),
            None => Err(ApiError::unauthorized()),
        }
    }
}

/// Which configured token a request presented (by index), as the endpoint's guard found it.
#[derive(Clone, Copy, Debug)]
pub struct MatchedToken(Option<usize>);

/// The bearer token a request presents, if any.
pub fn presented_token(headers: &header::HeaderMap) -> Option<&[u8]> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.as_bytes().strip_prefix(b"Bearer "))
}

/// The authenticated caller of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// May do everything.
    Admin,
    /// Deposits, withdrawals and reads on every account.
    Funding,
    /// May act on these accounts only.
    Trader {
        /// The token's accounts.
        accounts: BTreeSet<String>,
    },
    /// Publishes external quotes and reads public market data; no account, no order.
    Feed,
}

impl Principal {
    /// Who sent `request` (401 if its token is missing or wrong).
    pub fn of(request: &HttpRequest) -> Result<Principal, ApiError> {
        let Some(state) = request.app_data::<web::Data<AppState>>() else {
            return Err(ApiError::unauthorized());
        };
        match request.extensions().get::<MatchedToken>() {
            Some(matched) => state.tokens.principal_of(*matched),
            None => state.tokens.principal(presented_token(request.headers())),
        }
    }

    /// 403 unless the caller is an admin.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        match self {
            Principal::Admin => Ok(()),
            Principal::Funding | Principal::Trader { .. } | Principal::Feed => {
                Err(ApiError::forbidden("this route is for admins"))
            }
        }
    }

    /// 403 unless the caller may publish market data: admins and feeds.
    pub fn require_feed(&self) -> Result<(), ApiError> {
        match self {
            Principal::Admin | Principal::Feed => Ok(()),
            Principal::Funding | Principal::Trader { .. } => Err(ApiError::forbidden(
                "market data comes from a feed's token or an admin's",
            )),
        }
    }

    /// 403 unless the caller may trade on `account_id` (orders and cancels).
    pub fn require_account(&self, account_id: &str) -> Result<(), ApiError> {
        match self {
            Principal::Admin => Ok(()),
            Principal::Funding => Err(ApiError::forbidden(
                "a funding token moves money; it does not trade",
            )),
            Principal::Feed => Err(feed_forbidden()),
            Principal::Trader { .. } => self.require_own(account_id),
        }
    }

    /// 403 unless the caller may credit accounts: admins and the funding system.
    pub fn require_deposit(&self) -> Result<(), ApiError> {
        match self {
            Principal::Admin | Principal::Funding => Ok(()),
            Principal::Trader { .. } => Err(ApiError::forbidden(
                "deposits come from the funding system, not from a trader's token",
            )),
            Principal::Feed => Err(feed_forbidden()),
        }
    }

    /// 403 unless the caller may withdraw from or read `account_id`: admins, the funding
    /// system, and a trader on its own accounts.
    pub fn require_funds(&self, account_id: &str) -> Result<(), ApiError> {
        match self {
            Principal::Admin | Principal::Funding => Ok(()),
            Principal::Trader { .. } => self.require_own(account_id),
            Principal::Feed => Err(feed_forbidden()),
        }
    }

    fn require_own(&self, account_id: &str) -> Result<(), ApiError> {
        match self {
            Principal::Trader { accounts } if accounts.contains(account_id) => Ok(()),
            _ => Err(ApiError::forbidden(
                "this token may not act on that account",
            )),
        }
    }
}

/// What a feed's token hears on any route that touches an account.
fn feed_forbidden() -> ApiError {
    ApiError::forbidden("a feed token publishes market data; it touches no account")
}

impl FromRequest for Principal {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Principal::of(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Tokens {
        Tokens::new(vec![
            TokenConfig {
                token: "admin-secret-0123456789".to_owned(),
                role: Role::Admin,
                accounts: vec![],
                requests_per_second: None,
                name: None,
            },
            TokenConfig {
                token: "funding-secret-0123456789".to_owned(),
                role: Role::Funding,
                accounts: vec![],
                requests_per_second: None,
                name: None,
            },
            TokenConfig {
                token: "trader-secret-0123456789".to_owned(),
                role: Role::Trader,
                accounts: vec!["alice".to_owned()],
                requests_per_second: None,
                name: None,
            },
            TokenConfig {
                token: "feed-secret-0123456789".to_owned(),
                role: Role::Feed,
                accounts: vec![],
                requests_per_second: None,
                name: None,
            },
        ])
    }

    #[test]
    fn a_feed_publishes_market_data_and_touches_no_account() {
        let tokens = tokens();
        let feed = tokens.principal(Some(b"feed-secret-0123456789")).unwrap();
        assert_eq!(feed, Principal::Feed);
        assert!(feed.require_feed().is_ok());
        assert!(Principal::Admin.require_feed().is_ok());
        for refused in [
            feed.require_admin(),
            feed.require_account("alice"),
            feed.require_deposit(),
            feed.require_funds("alice"),
        ] {
            assert_eq!(refused.unwrap_err().code, "forbidden");
        }
        for other in [
            "funding-secret-0123456789".as_bytes(),
            "trader-secret-0123456789".as_bytes(),
        ] {
            let principal = tokens.principal(Some(other)).unwrap();
            assert_eq!(principal.require_feed().unwrap_err().code, "forbidden");
        }
        let name = tokens.principal_name(tokens.matched(Some(b"feed-secret-0123456789")));
        assert_eq!(name, "feed-4");
    }

    #[test]
    fn tokens_map_to_roles_and_accounts() {
        let tokens = tokens();
        assert_eq!(
            tokens.principal(Some(b"admin-secret-0123456789")),
            Ok(Principal::Admin)
        );
        let trader = tokens.principal(Some(b"trader-secret-0123456789")).unwrap();
        assert!(trader.require_account("alice").is_ok());
        assert!(trader.require_funds("alice").is_ok());
        assert_eq!(trader.require_account("bob").unwrap_err().code, "forbidden");
        assert_eq!(trader.require_funds("bob").unwrap_err().code, "forbidden");
        assert_eq!(trader.require_deposit().unwrap_err().code, "forbidden");
        assert_eq!(trader.require_admin().unwrap_err().code, "forbidden");
        let funding = tokens
            .principal(Some(b"funding-secret-0123456789"))
            .unwrap();
        assert_eq!(funding, Principal::Funding);
        assert!(funding.require_deposit().is_ok());
        assert!(funding.require_funds("bob").is_ok());
        assert_eq!(
            funding.require_account("bob").unwrap_err().code,
            "forbidden"
        );
        assert_eq!(funding.require_admin().unwrap_err().code, "forbidden");
    }

    #[test]
    fn the_audit_log_names_each_token_by_role_and_position_unless_named() {
        let mut configs = tokens().tokens;
        configs[1].name = Some("treasury".to_owned());
        let tokens = Tokens::new(configs);
        let name = |presented: &[u8]| {
            tokens
                .principal_name(tokens.matched(Some(presented)))
                .to_owned()
        };
        assert_eq!(name(b"admin-secret-0123456789"), "admin-1");
        assert_eq!(name(b"funding-secret-0123456789"), "treasury");
        assert_eq!(name(b"trader-secret-0123456789"), "trader-3");
        assert_eq!(name(b"not-a-token-at-all-0000"), ANONYMOUS_PRINCIPAL);
        let open = Tokens::new(Vec::new());
        assert_eq!(open.principal_name(open.matched(None)), LOOPBACK_PRINCIPAL);
    }

    #[test]
    fn missing_wrong_and_prefix_tokens_are_unauthorized() {
        let tokens = tokens();
        for presented in [
            None,
            Some(&b""[..]),
            Some(b"admin-secret"),
            Some(b"admin-secret-01234567890"),
        ] {
            assert_eq!(
                tokens.principal(presented).unwrap_err().code,
                "unauthorized"
            );
        }
    }

    #[test]
    fn an_open_node_treats_everyone_as_admin() {
        assert_eq!(Tokens::default().principal(None), Ok(Principal::Admin));
    }
}
