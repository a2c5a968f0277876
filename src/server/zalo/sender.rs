//! The outbound sender: durable reply jobs sent through `message/cs`, in order per conversation,
//! in parallel across conversations; retried with backoff only for retryable Zalo codes.

use super::ZaloHub;
use crate::model::*;
use crate::server::hub::{OutboundJob, SendOutcome};
use crate::wire::OutboundKind;
use crate::zalo::{human_reason, is_retryable, ZaloError, AMBIGUOUS};
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

const MAX_ATTEMPTS: u32 = 8;

/// The wait before the next try: `base` doubling, at most a minute.
fn backoff_ms(base: Ms, attempts: u32) -> Ms {
    (base * 2i64.pow(attempts.min(7))).min(60_000)
}

pub async fn run(z: Arc<ZaloHub>) {
    let busy: Arc<Mutex<HashSet<ConversationId>>> = Arc::default();
    loop {
        z.hub.health.beat("sender");
        let mut wait = Duration::from_secs(1);
        match z.hub.outbound_jobs().await {
            Ok(jobs) => {
                let now = now_ms();
                let mut by_conv: BTreeMap<ConversationId, Vec<OutboundJob>> = BTreeMap::new();
                for job in jobs {
                    by_conv
                        .entry(job.conversation_id.clone())
                        .or_default()
                        .push(job);
                }
                for (conv, mut jobs) in by_conv {
                    jobs.sort_by_key(|j| message_seq(&j.message_id));
                    let first_due = jobs[0].next_attempt_at;
                    if first_due > now {
                        wait = wait.min(Duration::from_millis((first_due - now) as u64));
                        continue;
                    }
                    if !busy.lock().insert(conv.clone()) {
                        continue;
                    }
                    let (z, busy) = (z.clone(), busy.clone());
                    tokio::spawn(async move {
                        for job in jobs {
                            if !send_job(&z, job).await {
                                break; // keep the conversation's order: later replies wait
                            }
                        }
                        busy.lock().remove(&conv);
                        z.hub.outbox_ready.notify_one();
                    });
                }
            }
            Err(e) => tracing::error!("cannot read outbound jobs: {e}"),
        }
        if let Err(e) = z.hub.expire_unknown_sends(z.hub.echo_window()).await {
            tracing::error!("cannot expire ambiguous sends: {e}");
        }
        let _ = tokio::time::timeout(wait, z.hub.outbox_ready.notified()).await;
    }
}

/// Sends one job; false when it was rescheduled (so later jobs of the conversation wait).
async fn send_job(z: &ZaloHub, job: OutboundJob) -> bool {
    // The list this job came from may predate its completion by the conversation's previous
    // task; only this task (it holds the conversation) can finish it from here on.
    let mut job = match z.hub.outbound_job(&job.message_id).await {
        Ok(Some(current)) => current,
        Ok(None) => return true,
        Err(e) => {
            tracing::error!("cannot read job {}: {e}", job.message_id);
            return false;
        }
    };
    if job.next_attempt_at > now_ms() {
        return false;
    }
    let result = attempt(z, &job).await;
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
                tracing::error!("cannot reschedule: {e}");
            }
            return false;
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
    while let Err(e) = z.hub.finish_job(&job, finish.clone()).await {
        tracing::error!(message = %job.message_id, "cannot record the send (will retry): {e}");
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(30));
    }
    true
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
