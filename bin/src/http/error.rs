//! Every error the HTTP endpoint answers, as `{"error": {"code", "message"}}` with its status
//! (DESIGN §5): 400 malformed, 401/403 auth, 404, 409 conflict, 413 too large, 415 not JSON,
//! 422 a rule broken, 429/503 overload (with `Retry-After`).

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use tradefloor_domain::ErrorKind;

use crate::api::{ErrorBody, ErrorDetail};

/// The `Retry-After` of overload answers without a better estimate, in seconds.
pub const RETRY_AFTER_DEFAULT_SECONDS: u64 = 1;

/// An error answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The stable code.
    pub code: &'static str,
    /// For people.
    pub message: String,
    /// Seconds to wait before retrying (429 and 503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with no `Retry-After`.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// A 503 (or 429) the client should retry after `seconds`.
    pub fn retry(
        status: StatusCode,
        code: &'static str,
        message: impl Into<String>,
        seconds: u64,
    ) -> Self {
        Self {
            retry_after: Some(seconds.max(1)),
            ..Self::new(status, code, message)
        }
    }

    /// 400 `invalid_json`: the body is not the JSON this route takes.
    pub fn invalid_json(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_json", message)
    }

    /// 400 `invalid_query`.
    pub fn invalid_query(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_query", message)
    }

    /// 401 `unauthorized`: no valid bearer token.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid bearer token is required",
        )
    }

    /// 403 `forbidden`: the token's role does not allow this.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404 with `code`.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    /// 503 `not_ready`: the node is still recovering, or shutting down.
    pub fn not_ready() -> Self {
        Self::retry(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "the node is recovering or shutting down",
            RETRY_AFTER_DEFAULT_SECONDS,
        )
    }

    /// 503 `timeout`: the request's deadline passed (the command may still complete;
    /// repeat it with the same command id or order id to learn its outcome).
    pub fn deadline(after: Duration) -> Self {
        Self::retry(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!("no answer within the request deadline of {after:?}"),
            RETRY_AFTER_DEFAULT_SECONDS,
        )
    }

    /// The answer for a domain refusal, by how the caller handles it.
    pub fn domain(error: &tradefloor_domain::Error) -> Self {
        let status = match error.kind() {
            ErrorKind::Invalid => StatusCode::BAD_REQUEST,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::Rejected => StatusCode::UNPROCESSABLE_ENTITY,
        };
        Self::new(status, error.code(), error.to_string())
    }
}

impl From<tradefloor_domain::Error> for ApiError {
    fn from(error: tradefloor_domain::Error) -> Self {
        Self::domain(&error)
    }
}

impl From<tradefloor_actors::Error> for ApiError {
    fn from(error: tradefloor_actors::Error) -> Self {
        use tradefloor_actors::Error as E;
        let unavailable = StatusCode::SERVICE_UNAVAILABLE;
        let message = error.to_string();
        let retry = RETRY_AFTER_DEFAULT_SECONDS;
        match error {
            E::Rejected(reason) => Self::domain(&reason),
            E::Overloaded { .. } => Self::retry(unavailable, "overloaded", message, retry),
            E::Timeout { .. } => Self::retry(unavailable, "timeout", message, retry),
            E::BreakerOpen { retry_after, .. } => Self::retry(
                unavailable,
                "circuit_open",
                message,
                retry_after.as_secs_f64().ceil() as u64,
            ),
            E::Persistence { .. } | E::Fenced { .. } | E::Stopped { .. } => {
                Self::retry(unavailable, "unavailable", message, retry)
            }
            E::ResumeTooOld { .. } => Self::new(StatusCode::GONE, "resume_too_old", message),
            E::Failed { .. }
            | E::PathTaken { .. }
            | E::RestartIntensityExceeded { .. }
            | E::StartFailed { .. } => {
                tracing::error!(error = %message, "internal error answered 500");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
            }
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        if let Some(seconds) = self.retry_after {
            response.insert_header((header::RETRY_AFTER, HeaderValue::from(seconds)));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
        }
        response.json(ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message.clone(),
            },
        })
    }
}
