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
    let rejected = || z.hub.metrics.webhooks_rejected.inc();
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
    if events::depth(&value) > events::MAX_DEPTH {
        rejected();
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "too_deep",
            format!(
                "webhook body nests deeper than {} levels",
                events::MAX_DEPTH
            ),
        ));
    }
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
    // Freshness: a replayed capture is acknowledged (Zalo would only retry) but not applied.
    let stamped = timestamp.trim().parse::<i64>().ok();
    let now = crate::model::now_ms();
    let max_age = z.config.webhook_max_age_secs as i64 * 1000;
    let max_ahead = z.config.webhook_max_future_secs as i64 * 1000;
    if let Some(at) = stamped.filter(|at| *at < now - max_age || *at > now + max_ahead) {
        z.hub.metrics.webhooks_stale.inc();
        tracing::warn!(
            event = value["event_name"].as_str().unwrap_or("?"),
            at,
            "webhook outside the freshness window: acknowledged, not applied"
        );
        return Ok(Json(json!({"error": 0, "message": "Success"})));
    }
    z.hub.enqueue_webhook(&raw).await?;
    z.hub.metrics.webhooks_accepted.inc();
    z.webhook_ready.notify_one();
    Ok(Json(json!({"error": 0, "message": "Success"})))
}

/// A webhook that fails this many times in a row is set aside in the dead-letter list.
const MAX_APPLY_ATTEMPTS: u32 = 3;

/// Applies queued webhooks, oldest first, in batches; also drains what a crash left queued.
/// When a batch fails, its webhooks are applied one at a time to find the one at fault, which is
/// retried a few times and then set aside, so one bad webhook never stops the rest.
pub async fn run_worker(z: Arc<ZaloHub>) {
    // Webhooks left to apply one at a time, and how often the oldest has failed.
    let mut singles = 0usize;
    let mut failures = 0u32;
    loop {
        z.hub.health.beat("intake");
        let items = match z.hub.queued_webhooks(if singles > 0 { 1 } else { BATCH }) {
            Ok(items) => items,
            Err(e) => {
                tracing::error!("cannot read the webhook queue: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if items.is_empty() {
            singles = 0;
            let _ = tokio::time::timeout(Duration::from_secs(1), z.webhook_ready.notified()).await;
            continue;
        }
        let oldest = items[0].clone();
        let count = items.len();
        match z.hub.apply_webhooks(items).await {
            Ok(outcome) => {
                z.fetch_profiles(outcome.profiles_to_fetch);
                failures = 0;
                singles = singles.saturating_sub(1);
            }
            Err(e) if count > 1 => {
                tracing::warn!(
                    count,
                    "a batch of webhooks failed ({e}); applying one at a time"
                );
                singles = count;
            }
            Err(e) => {
                failures += 1;
                if failures < MAX_APPLY_ATTEMPTS {
                    tracing::warn!(
                        n = oldest.0,
                        failures,
                        "cannot apply webhook (will retry): {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(250 << failures)).await;
                    continue;
                }
                match z
                    .hub
                    .dead_letter_webhook(oldest.0, &oldest.1, e.to_string())
                    .await
                {
                    Ok(()) => {
                        failures = 0;
                        singles = singles.saturating_sub(1);
                    }
                    Err(e) => {
                        tracing::error!("cannot set the webhook aside (will retry): {e}");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        }
    }
}
