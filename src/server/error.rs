//! API errors: every failure is a JSON body `{"error": {"code", "message"}}` with a fitting status.

use super::hub::HubError;
use crate::wire::{ErrorBody, ErrorDetail};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub detail: ErrorDetail,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            detail: ErrorDetail {
                code: code.to_string(),
                message: message.into(),
                winner: None,
                rule: None,
            },
        }
    }
    pub fn unauthorized(message: &str) -> ApiError {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }
    pub fn forbidden(message: &str) -> ApiError {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }
    pub fn not_found(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    pub fn unprocessable(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
    }
}

impl From<HubError> for ApiError {
    fn from(e: HubError) -> ApiError {
        match e {
            HubError::NotFound(m) => ApiError::not_found(m),
            HubError::Forbidden(m) => ApiError::forbidden(&m),
            HubError::Invalid(m) => ApiError::unprocessable(m),
            HubError::BadRequest(m) => ApiError::bad_request(m),
            HubError::TooMany { code, message } => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, code, message)
            }
            HubError::Conflict {
                code,
                message,
                winner,
                rule,
            } => ApiError {
                status: StatusCode::CONFLICT,
                detail: ErrorDetail {
                    code: code.to_string(),
                    message,
                    winner,
                    rule,
                },
            },
            HubError::Store {
                full: true,
                message,
            } => {
                tracing::error!("write refused, the database's disk is full: {message}");
                ApiError::new(
                    StatusCode::INSUFFICIENT_STORAGE,
                    "insufficient_storage",
                    "the hub's disk is full: nothing was changed; reads still work (see /healthz)",
                )
            }
            HubError::Store { message, .. } => {
                tracing::error!("the database is unavailable: {message}");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "the hub cannot reach its database: nothing was changed; try again",
                )
            }
            HubError::Internal(e) if is_disk_full(&e) => {
                tracing::error!("write refused, the disk is full: {e:#}");
                ApiError::new(
                    StatusCode::INSUFFICIENT_STORAGE,
                    "insufficient_storage",
                    "the hub's disk is full: nothing was changed; reads still work (see /healthz)",
                )
            }
            HubError::Internal(e) => {
                tracing::error!("internal error: {e:#}");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error; see the hub's log",
                )
            }
        }
    }
}

/// Whether a store error comes from a full disk (ENOSPC, or a quota).
fn is_disk_full(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause.downcast_ref::<std::io::Error>().is_some_and(|io| {
            io.kind() == std::io::ErrorKind::StorageFull || io.raw_os_error() == Some(28)
        }) || cause.to_string().contains("No space left on device")
    })
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(ErrorBody { error: self.detail })).into_response()
    }
}
