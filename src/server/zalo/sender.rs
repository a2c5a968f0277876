//! The outbound sender: durable reply jobs sent through `message/cs`, in order per conversation,
//! in parallel across conversations; retried with backoff only for retryable Zalo codes.

use super::ZaloHub;
use crate::model::*;
use crate::server::hub::batch::Batch;
use crate::server::hub::{OutboundJob, SendOutcome};
use crate::wire::OutboundKind;
use crate::zalo::{human_reason, is_retryable, ZaloError, AMBIGUOUS};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

const MAX_ATTEMPTS: u32 = 8;

/// The wait before the next try: `base` doubling, at most a minute.
pub(super) fn backoff_ms(base: Ms, attempts: u32) -> Ms {
    (base * 2i64.pow(attempts.min(7))).min(60_000)
}

/// Replies in flight at once, across conversations.
const IN_FLIGHT: usize = 64;

/// How long a taken job is this hub's: longer than any send (a 5 MB upload and the message). A
/// hub that dies mid-send leaves the job to come back after it, marked orphaned.
const LEASE_MS: Ms = 120_000;

/// The sender's own writes, each kind grouped into one transaction for whatever is waiting:
/// the marks made just before sends, and the outcomes after them. Answers are `Err(reason)`.
#[derive(Default)]
pub struct SenderWrites {
    marks: Batch<String, Result<(), String>>,
    outcomes: Batch<(OutboundJob, SendOutcome), Result<(), String>>,
}

pub async fn run(z: Arc<ZaloHub>) {
    tokio::spawn(record_marks(z.clone()));
    tokio::spawn(record_outcomes(z.clone()));
    let slots = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    loop {
        z.hub.health.beat("sender");
        let free = slots.available_permits();
        if free > 0 {
            // Due jobs, the oldest of each conversation, leased to this hub: whichever hub takes a
            // job sends it, once, and a conversation's next reply waits until this one settles.
            match z.hub.take_jobs(LEASE_MS, free).await {
                Ok(jobs) => {
                    for (job, orphaned) in jobs {
                        let permit = slots.clone().acquire_owned().await.expect("never closed");
                        let z = z.clone();
                        tokio::spawn(async move {
                            send_job(&z, job, orphaned).await;
                            drop(permit);
                            z.hub.outbox_ready.notify_one();
                        });
                    }
                }
                Err(e) => tracing::error!("cannot take reply jobs: {e}"),
            }
        }
        if let Err(e) = z.hub.expire_unknown_sends(z.hub.echo_window()).await {
            tracing::error!("cannot expire ambiguous sends: {e}");
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), z.hub.outbox_ready.notified()).await;
    }
}

async fn record_marks(z: Arc<ZaloHub>) {
    loop {
        let waiting = z.writes.marks.next(IN_FLIGHT, Duration::from_secs(1)).await;
        if waiting.is_empty() {
            continue;
        }
        let ids: Vec<String> = waiting.iter().map(|w| w.item.clone()).collect();
        let result = z.hub.mark_sending(&ids).await.map_err(|e| e.to_string());
        for w in waiting {
            w.answer(result.clone());
        }
    }
}

async fn record_outcomes(z: Arc<ZaloHub>) {
    loop {
        let waiting = z
            .writes
            .outcomes
            .next(IN_FLIGHT, Duration::from_secs(1))
            .await;
        if waiting.is_empty() {
            continue;
        }
        let finished: Vec<(OutboundJob, SendOutcome)> =
            waiting.iter().map(|w| w.item.clone()).collect();
        match z.hub.finish_jobs(&finished).await {
            Ok(()) => waiting.into_iter().for_each(|w| w.answer(Ok(()))),
            // One outcome that cannot be recorded must not hold back the others': each alone.
            Err(_) if waiting.len() > 1 => {
                for w in waiting {
                    let alone = std::slice::from_ref(&w.item);
                    let result = z.hub.finish_jobs(alone).await.map_err(|e| e.to_string());
                    w.answer(result);
                }
            }
            Err(e) => waiting
                .into_iter()
                .for_each(|w| w.answer(Err(e.to_string()))),
        }
    }
}

/// Sends one taken job and records how it ended. An orphaned job (the hub that took it died
/// mid-send) is not sent again: whether Zalo got it is unknown, so it waits for Zalo's echo.
async fn send_job(z: &ZaloHub, mut job: OutboundJob, orphaned: bool) {
    let result = if orphaned {
        Err(ZaloError {
            code: AMBIGUOUS,
            message: "the hub sending it stopped midway".into(),
        })
    } else {
        attempt(z, &job).await
    };
    let finish = match result {
        Ok(zalo_id) => SendOutcome::Sent(zalo_id),
        Err(e) if e.code == AMBIGUOUS => {
            tracing::warn!(
                conversation = %job.conversation_id,
                message = %job.message_id,
                "send outcome unknown ({}); waiting for Zalo's echo, not resending",
                e.message
            );
            SendOutcome::Unknown(human_reason(e.code, &e.message))
        }
        Err(e) if is_retryable(e.code) && job.attempts + 1 < MAX_ATTEMPTS => {
            job.attempts += 1;
            let base = z.config.retry_base_ms as Ms;
            job.next_attempt_at = now_ms() + backoff_ms(base, job.attempts);
            tracing::info!(message = %job.message_id, attempts = job.attempts, "retrying send after {e}");
            if let Err(e) = z.hub.reschedule_job(job).await {
                // The lease runs out and the job comes back orphaned: never sent twice.
                tracing::error!("cannot reschedule: {e}");
            }
            return;
        }
        Err(e) => {
            let reason = human_reason(e.code, &e.message);
            tracing::warn!(
                conversation = %job.conversation_id,
                message = %job.message_id,
                code = e.code,
                attempts = job.attempts + 1,
                "reply not sent: {reason}"
            );
            SendOutcome::Failed(e.code, reason)
        }
    };
    // Zalo has it (or may have it): the outcome must be recorded, never the reply sent again, so
    // recording is retried until it works; the conversation's later replies wait meanwhile.
    let mut wait = Duration::from_millis(100);
    let record = || async {
        let outcome = (job.clone(), finish.clone());
        let recorded = z.writes.outcomes.submit(outcome).await;
        recorded.unwrap_or_else(|| Err("the sender stopped".into()))
    };
    while let Err(e) = record().await {
        tracing::error!(message = %job.message_id, "cannot record the send (will retry): {e}");
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(30));
    }
}

async fn attempt(z: &ZaloHub, job: &OutboundJob) -> Result<String, ZaloError> {
    let msg = z
        .hub
        .message(&job.message_id)
        .await
        .map_err(|e| ZaloError {
            code: -201,
            message: e.to_string(),
        })?;
    let (conn_id, user_id) = z
        .hub
        .read(|st| {
            st.conversation(&msg.conversation_id)
                .map(|c| (c.connection_id.clone(), c.customer.user_id.clone()))
        })
        .await
        .ok_or_else(|| ZaloError {
            code: -201,
            message: "the conversation was removed".into(),
        })?;

    // Upload first: image/gif give an attachment_id, files a token.
    let mut message = match &job.attachment {
        None => json!({"text": msg.text}),
        Some(a) => {
            let file = z.hub.blob_path(&a.blob);
            let kind = match a.kind {
                OutboundKind::Image => "image",
                OutboundKind::Gif => "gif",
                OutboundKind::File => "file",
            };
            let id = z
                .with_token(&conn_id, |t| {
                    let (client, name, file) = (z.client.clone(), a.name.clone(), file.clone());
                    async move { client.upload(&t, kind, &name, &file).await }
                })
                .await?;
            match a.kind {
                OutboundKind::File => {
                    json!({"attachment": {"type": "file", "payload": {"token": id}}})
                }
                _ => {
                    let mut el = json!({"media_type": kind, "attachment_id": id});
                    if a.kind == OutboundKind::Gif {
                        el["width"] = json!(120);
                        el["height"] = json!(120);
                    }
                    let mut m = json!({"attachment": {"type": "template", "payload": {"template_type": "media", "elements": [el]}}});
                    if !msg.text.is_empty() {
                        m["text"] = json!(msg.text);
                    }
                    m
                }
            }
        }
    };
    if let Some(q) = &msg.quote_msg_id {
        message["quote_message_id"] = json!(q);
    }
    // From here Zalo may get the message: a crash after this point must not send it again.
    let marked = z.writes.marks.submit(job.message_id.clone()).await;
    marked
        .unwrap_or_else(|| Err("the sender stopped".into()))
        .map_err(|e| ZaloError {
            code: crate::zalo::NETWORK_ERROR,
            message: format!("cannot mark the reply as being sent: {e}"),
        })?;
    let send = |message: Value| {
        let (client, user_id) = (z.client.clone(), user_id.clone());
        move |t: String| {
            let (client, user_id, message) = (client.clone(), user_id.clone(), message.clone());
            async move { client.send_cs(&t, &user_id, message).await }
        }
    };
    match z.with_token(&conn_id, send(message.clone())).await {
        // A stale quote fails the whole send: send it again without the quote.
        Err(e) if e.code == -201 && msg.quote_msg_id.is_some() => {
            let mut plain = message;
            plain.as_object_mut().map(|o| o.remove("quote_message_id"));
            z.with_token(&conn_id, send(plain)).await
        }
        other => other,
    }
}
