//! `POST /zalo/webhook`: verify the signature over the raw body, then store and apply the event
//! in the intake transaction (with whatever else arrived meanwhile) and answer 200 once it has
//! committed.

use super::ZaloHub;
use crate::server::error::ApiError;
use crate::server::hub::HubError;
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
    z.hub.take_webhook(raw.to_vec()).await?;
    z.hub.metrics.webhooks_accepted.inc();
    Ok(Json(json!({"error": 0, "message": "Success"})))
}

/// A webhook that fails this many times in a row is set aside in the dead-letter list.
const MAX_APPLY_ATTEMPTS: u32 = 3;

/// The intake: takes the webhooks waiting, stores and applies them in one transaction, and
/// answers their requests. When a batch fails for a reason other than the database (a webhook
/// the hub cannot apply), its webhooks are applied one at a time to find the one at fault, which
/// is retried a few times and then set aside, so one bad webhook never stops the rest.
pub async fn run_worker(z: Arc<ZaloHub>) {
    loop {
        let batch = z.hub.next_webhooks(BATCH).await;
        z.hub.health.beat("intake");
        let bodies: Vec<&[u8]> = batch.iter().map(|w| w.item.body.as_slice()).collect();
        match z.hub.apply_webhooks(&bodies).await {
            Ok(outcome) => {
                z.fetch_profiles(outcome.profiles_to_fetch);
                for w in batch {
                    z.hub
                        .metrics
                        .webhook_to_event
                        .observe(w.item.received.elapsed().as_secs_f64());
                    w.answer(Ok(()));
                }
            }
            // Nothing was stored: Zalo gets an error and retries.
            Err(e @ HubError::Store { .. }) => {
                let message = e.to_string();
                for w in batch {
                    w.answer(Err(HubError::Store {
                        full: matches!(e, HubError::Store { full: true, .. }),
                        message: message.clone(),
                    }));
                }
            }
            Err(e) => {
                tracing::warn!(
                    count = batch.len(),
                    "a batch of webhooks failed ({e}); applying one at a time"
                );
                for w in batch {
                    let outcome = apply_alone(&z, &w.item.body).await;
                    w.answer(outcome);
                }
            }
        }
    }
}

/// Applies one webhook, retrying a few times, then sets it aside (and acknowledges it: Zalo's
/// retries would fail the same way).
async fn apply_alone(z: &Arc<ZaloHub>, body: &[u8]) -> Result<(), HubError> {
    let mut failures = 0;
    loop {
        match z.hub.apply_webhooks(&[body]).await {
            Ok(outcome) => {
                z.fetch_profiles(outcome.profiles_to_fetch);
                return Ok(());
            }
            Err(e @ HubError::Store { .. }) => return Err(e),
            Err(e) => {
                failures += 1;
                if failures < MAX_APPLY_ATTEMPTS {
                    tracing::warn!(failures, "cannot apply a webhook (will retry): {e}");
                    tokio::time::sleep(Duration::from_millis(250 << failures)).await;
                    continue;
                }
                return z.hub.dead_letter_webhook(body, e.to_string()).await;
            }
        }
    }
}
