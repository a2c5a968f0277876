//! `POST /zalo/webhook`: verify the signature over the raw body, make the event durable, answer
//! 200 at once; a worker applies queued events in batches.

use super::ZaloHub;
use crate::server::error::ApiError;
use crate::server::AppState;
use crate::zalo::{events, verify_webhook};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Zalo's events are small; anything bigger is not from Zalo.
pub const MAX_WEBHOOK_BYTES: usize = 1 << 20;
const BATCH: usize = 512;

pub async fn receive(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let z = super::oauth::zalo_or_503(&app)?;
    let rejected = || {
        z.hub
            .metrics
            .webhooks_rejected
            .fetch_add(1, Ordering::Relaxed)
    };
    let raw = axum::body::to_bytes(body, MAX_WEBHOOK_BYTES)
        .await
        .map_err(|_| {
            rejected();
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "webhook body over 1 MiB",
            )
        })?;
    let value: Value = serde_json::from_slice(&raw).map_err(|e| {
        rejected();
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("webhook body is not JSON: {e}"),
        )
    })?;
    let signature = headers
        .get("x-zevent-signature")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            rejected();
            ApiError::unauthorized("missing X-ZEvent-Signature header")
        })?;
    let (_, timestamp) = events::signature_fields(&value);
    if !verify_webhook(
        signature,
        &z.config.app_id,
        &raw,
        &timestamp,
        &z.config.oa_secret_key,
    ) {
        rejected();
        return Err(ApiError::unauthorized("bad webhook signature"));
    }
    z.hub.enqueue_webhook(&raw).await?;
    z.hub
        .metrics
        .webhooks_accepted
        .fetch_add(1, Ordering::Relaxed);
    z.webhook_ready.notify_one();
    Ok(Json(json!({"error": 0, "message": "Success"})))
}

/// Applies queued webhooks, oldest first, in batches; also drains what a crash left queued.
pub async fn run_worker(z: Arc<ZaloHub>) {
    loop {
        let items = match z.hub.queued_webhooks(BATCH) {
            Ok(items) => items,
            Err(e) => {
                tracing::error!("cannot read the webhook queue: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if items.is_empty() {
            let _ = tokio::time::timeout(Duration::from_secs(1), z.webhook_ready.notified()).await;
            continue;
        }
        match z.hub.apply_webhooks(items).await {
            Ok(outcome) => z.fetch_profiles(outcome.profiles_to_fetch),
            Err(e) => {
                tracing::error!("cannot apply webhooks (will retry): {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}
