//! Zalo webhooks inside the hub. A verified webhook waits in memory for the next intake
//! transaction, which stores it once by its key (a retry from Zalo, or the same delivery through
//! another hub, is skipped) and applies it, for every webhook that arrived meanwhile; Zalo gets
//! its 200 after that transaction commits. So an acknowledged webhook is durable and applied
//! exactly once, and a crash before the commit loses nothing Zalo was told we have.

use super::conversations::{apply_delivery, ingest, load_message, mark_sent, put_message, Inbound};
use super::*;
use crate::zalo::events::{self, ChatMessage, WebhookEvent};

/// A verified webhook waiting for the intake transaction.
pub struct ReceivedWebhook {
    pub body: Vec<u8>,
    pub received: std::time::Instant,
}

/// Verified webhooks waiting for the intake transaction; each answered with its outcome.
pub type Intake = batch::Batch<ReceivedWebhook, HubResult<()>>;
pub type PendingWebhook = batch::Waiting<ReceivedWebhook, HubResult<()>>;

/// What the caller should do after a batch: fetch customer profiles, and so on.
#[derive(Debug, Default)]
pub struct WebhookOutcome {
    pub applied: usize,
    /// (conversation, connection, Zalo user id) whose profile is missing or stale.
    pub profiles_to_fetch: Vec<(ConversationId, ConnectionId, String)>,
}

/// An acknowledged webhook that could not be applied, set aside so the rest flows
/// (`GET /api/v1/webhooks/dead`). Kept until an operator deals with it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeadWebhook {
    /// Its number among stored webhooks.
    pub n: u64,
    /// When it was set aside.
    pub at: Ms,
    pub error: String,
    /// The body as Zalo signed it.
    pub body: String,
}

/// A webhook's identity: its body's hash (Zalo's retries and other hubs see the same bytes).
fn webhook_key(body: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(body))
}

fn incoming(key: String, body: &[u8], now: Ms) -> crate::store::sql::webhooks::IncomingWebhook {
    crate::store::sql::webhooks::IncomingWebhook {
        key,
        received_at: now,
        body: String::from_utf8_lossy(body).into_owned(),
    }
}

impl Hub {
    /// Stores and applies a verified webhook with whatever else arrived meanwhile; returns once
    /// that is committed (or failed: nothing of it was kept, Zalo should retry).
    pub async fn take_webhook(&self, body: Vec<u8>) -> HubResult<()> {
        let received = std::time::Instant::now();
        self.intake
            .submit(ReceivedWebhook { body, received })
            .await
            .ok_or_else(|| HubError::Internal(anyhow::anyhow!("the webhook intake stopped")))?
    }

    /// The webhooks waiting (at most `max`, oldest first); waits for one when none is.
    pub async fn next_webhooks(&self, max: usize) -> Vec<PendingWebhook> {
        loop {
            let batch = self
                .intake
                .next(max, std::time::Duration::from_secs(1))
                .await;
            if !batch.is_empty() {
                return batch;
            }
            self.health.beat("intake");
        }
    }

    /// Stores the webhooks not seen before and applies them in arrival order, in one
    /// transaction.
    pub async fn apply_webhooks(&self, bodies: &[&[u8]]) -> HubResult<WebhookOutcome> {
        let ctx = Apply {
            metrics: &self.metrics,
            echo_window: self.echo_window(),
        };
        let outcome = self
            .write(async |st, tx| {
                let now = now_ms();
                let keys: Vec<String> = bodies.iter().map(|b| webhook_key(b)).collect();
                let batch = keys
                    .iter()
                    .zip(bodies)
                    .map(|(key, body)| incoming(key.clone(), body, now))
                    .collect();
                let fresh = tx.db.store_webhooks(batch).await.map_err(store_error)?;
                let mut out = WebhookOutcome::default();
                let mut seen = HashSet::new();
                for (key, body) in keys.into_iter().zip(bodies) {
                    let Some(n) = fresh.get(&key) else {
                        ctx.metrics.webhooks_duplicate.inc();
                        continue;
                    };
                    if !seen.insert(key) {
                        continue;
                    }
                    let value: serde_json::Value =
                        serde_json::from_slice(body).unwrap_or(serde_json::Value::Null);
                    apply_one(st, tx, &ctx, *n, &value, &mut out).await?;
                    out.applied += 1;
                }
                Ok(out)
            })
            .await?;
        self.metrics.webhooks_applied.inc_by(outcome.applied as u64);
        Ok(outcome)
    }

    /// Sets a webhook aside (it failed to apply again and again): stored, so Zalo's retries of
    /// it are recognised, and listed with its error.
    pub async fn dead_letter_webhook(&self, body: &[u8], error: String) -> HubResult<()> {
        let now = now_ms();
        let n = self
            .write(async |_, tx| {
                let fresh = tx
                    .db
                    .store_webhooks(vec![incoming(webhook_key(body), body, now)])
                    .await;
                let n = fresh.map_err(store_error)?.into_values().next();
                if let Some(n) = n {
                    let body = String::from_utf8_lossy(body);
                    let dead = tx.db.store_dead_webhook(n, now, &error, &body);
                    dead.await.map_err(store_error)?;
                }
                Ok(n)
            })
            .await?;
        if let Some(n) = n {
            self.metrics.webhooks_dead.inc();
            tracing::error!(n, %error, "webhook set aside in the dead-letter list");
        }
        Ok(())
    }

    /// The dead-letter list, oldest first.
    pub async fn dead_webhooks(&self) -> HubResult<Vec<DeadWebhook>> {
        let rows = self.db.dead_webhooks().await.map_err(store_error)?;
        Ok(rows
            .into_iter()
            .map(|(n, at, error, body)| DeadWebhook {
                n: n as u64,
                at,
                error,
                body,
            })
            .collect())
    }

    /// Re-applies a page's rule's old-conversation handling (after a history sync).
    pub async fn redistribute_old(&self, conn_id: &str) -> HubResult<()> {
        let metrics = self.metrics.clone();
        self.write(async |st, tx| {
            if let Some(rule_id) = st.connections.get(conn_id).and_then(|c| c.rule_id.clone()) {
                let now = now_ms();
                super::admin::apply_old_conversations(st, tx, &rule_id, now, &metrics);
                st.drain_rule_queue(tx, &rule_id, now, &metrics);
            }
            Ok(())
        })
        .await
    }
}

/// Unknown or unroutable events are kept as they came.
fn store_raw(tx: &mut Tx, n: i64, value: &serde_json::Value, why: &str) {
    tracing::info!(
        n,
        why,
        event = value["event_name"].as_str().unwrap_or("?"),
        "webhook stored raw"
    );
    tx.raw.push((n, now_ms(), value.to_string()));
}

/// What applying a webhook reads besides the state.
struct Apply<'a> {
    metrics: &'a Metrics,
    /// How far apart (ms) a reply and Zalo's echo of it may be.
    echo_window: Ms,
}

async fn apply_one(
    st: &mut State,
    tx: &mut Tx,
    ctx: &Apply<'_>,
    n: i64,
    value: &serde_json::Value,
    out: &mut WebhookOutcome,
) -> HubResult<()> {
    let Apply {
        metrics,
        echo_window,
    } = *ctx;
    let event = events::parse(value);
    let conn_of = |st: &State, oa_id: &str| st.connection_by_oa(oa_id).map(|c| c.id.clone());
    match event {
        WebhookEvent::UserMessage(m) => {
            let Some(conn_id) = conn_of(st, &m.oa_id) else {
                store_raw(tx, n, value, "no connection for this OA");
                return Ok(());
            };
            let inbound = to_inbound(&conn_id, &m, Direction::Inbound, String::new(), None);
            ingest(st, tx, inbound, metrics).await?;
            // A duplicate too: the history sync may have stored the message first, and it
            // reads no profiles.
            if let Some(conversation) = st.customer_conversation(&conn_id, &m.user_id) {
                if conversation.customer.profile_stale(now_ms())
                    && !out.profiles_to_fetch.iter().any(|p| p.0 == conversation.id)
                {
                    out.profiles_to_fetch.push((
                        conversation.id.clone(),
                        conn_id,
                        m.user_id.clone(),
                    ));
                }
            }
        }
        WebhookEvent::OaMessage(m) => {
            let Some(conn_id) = conn_of(st, &m.oa_id) else {
                store_raw(tx, n, value, "no connection for this OA");
                return Ok(());
            };
            match match_echo(st, tx, &conn_id, &m, echo_window).await? {
                Some(mut ours) => {
                    // Our own send, echoed: record Zalo's id (the echo may overtake the send's
                    // response, or be all we learn of an ambiguous send).
                    if ours.zalo_msg_id.is_none() {
                        mark_sent(tx, &conn_id, &mut ours, &m.msg_id);
                        put_message(st, tx, &ours);
                    }
                }
                None => {
                    // Staff replying from Zalo's own OA Manager: shown as an outbound message.
                    let inbound = to_inbound(
                        &conn_id,
                        &m,
                        Direction::Outbound,
                        "OA Manager".into(),
                        Some(value.clone()),
                    );
                    ingest(st, tx, inbound, metrics).await?;
                }
            }
        }
        WebhookEvent::Delivered { oa_id, msg_ids } | WebhookEvent::Seen { oa_id, msg_ids } => {
            let state = if value["event_name"] == "user_seen_message" {
                Delivery::Seen
            } else {
                Delivery::Delivered
            };
            let Some(conn_id) = conn_of(st, &oa_id) else {
                store_raw(tx, n, value, "no connection for this OA");
                return Ok(());
            };
            for id in msg_ids {
                if !apply_delivery(st, tx, &conn_id, &id, state).await? {
                    store_raw(tx, n, value, "receipt for an unknown message");
                }
            }
        }
        WebhookEvent::SubmitInfo {
            oa_id,
            user_id,
            info,
            at,
        } => {
            let Some(conn_id) = conn_of(st, &oa_id) else {
                store_raw(tx, n, value, "no connection for this OA");
                return Ok(());
            };
            let fields: Vec<String> = info
                .as_object()
                .map(|o| {
                    o.iter()
                        .map(|(k, v)| {
                            format!(
                                "{k}: {}",
                                v.as_str()
                                    .map(str::to_string)
                                    .unwrap_or_else(|| v.to_string())
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            let identity = submit_info_id(&oa_id, &user_id, at, &info);
            let inbound = Inbound {
                connection_id: conn_id,
                customer_user_id: user_id,
                direction: Direction::Inbound,
                sender_name: String::new(),
                zalo_msg_id: Some(identity),
                kind: MessageKind::Other,
                text: format!(
                    "Khách hàng chia sẻ thông tin / shared info — {}",
                    fields.join(", ")
                ),
                attachments: vec![],
                quote_msg_id: None,
                at,
                origin: Origin::Live,
                raw: Some(value.clone()),
            };
            ingest(st, tx, inbound, metrics).await?;
        }
        WebhookEvent::PermissionRevoked { oa_id, at } => {
            store_raw(tx, n, value, "permission revoked");
            // A revocation older than the page's last connection is history (a replay, or Zalo's
            // retry arriving after the admin reconnected): it never undoes the newer state.
            let current = st
                .connection_by_oa(&oa_id)
                .filter(|c| at > c.last_connected_at)
                .cloned();
            if let Some(mut conn) = current {
                conn.status = ConnectionStatus::NeedsReauth;
                let reason = "Quyền truy cập đã bị thu hồi trong Zalo — cần kết nối lại / The OA revoked this app's permission in Zalo — reconnect the page".to_string();
                conn.status_reason = Some(reason.clone());
                conn.last_error = Some(reason);
                st.put_connection(tx, conn, None);
            }
        }
        WebhookEvent::Tagged {
            oa_id,
            user_ids,
            name,
        } => {
            let Some(conn_id) = conn_of(st, &oa_id) else {
                store_raw(tx, n, value, "no connection for this OA");
                return Ok(());
            };
            match super::labels::tagged_in_zalo(st, tx, &conn_id, &user_ids, &name).await {
                Ok(0) => store_raw(tx, n, value, "tag for customers without a conversation"),
                Ok(_) => {}
                Err(HubError::Invalid(why)) => store_raw(tx, n, value, &why),
                Err(e) => return Err(e),
            }
        }
        WebhookEvent::Follow {
            oa_id,
            user_id,
            follow,
        } => {
            let conv = conn_of(st, &oa_id)
                .and_then(|page| st.customer_conversation(&page, &user_id))
                .cloned();
            match conv {
                Some(mut conv) if conv.customer.follows != Some(follow) => {
                    conv.customer.follows = Some(follow);
                    let before = st.conversation_audience(&conv);
                    st.put_conversation(tx, conv, before);
                }
                Some(_) => {}
                None => store_raw(tx, n, value, "follow of a customer without a conversation"),
            }
        }
        WebhookEvent::Other { .. } => store_raw(tx, n, value, "unknown event"),
    }
    Ok(())
}

/// `user_submit_info` has no message id: its identity is who sent what to which OA when, so
/// Zalo's retry of it is recognised as a duplicate (serde_json objects keep their keys sorted, so
/// equal info serialises alike).
fn submit_info_id(oa_id: &str, user_id: &str, at: Ms, info: &serde_json::Value) -> String {
    use sha2::Digest;
    let identity = format!("{oa_id}\n{user_id}\n{at}\n{info}");
    let digest = hex::encode(sha2::Sha256::digest(identity.as_bytes()));
    format!("submit-info-{}", &digest[..32])
}

fn to_inbound(
    conn_id: &str,
    m: &ChatMessage,
    direction: Direction,
    sender_name: String,
    raw: Option<serde_json::Value>,
) -> Inbound {
    Inbound {
        connection_id: conn_id.to_string(),
        customer_user_id: m.user_id.clone(),
        direction,
        sender_name,
        zalo_msg_id: Some(m.msg_id.clone()),
        kind: m.kind,
        text: m.text.clone(),
        attachments: m.attachments.clone(),
        quote_msg_id: m.quote_msg_id.clone(),
        at: m.at,
        origin: Origin::Live,
        raw: if m.kind == MessageKind::Other {
            raw
        } else {
            None
        },
    }
}

/// The outbound message a Zalo `oa_send_*` echo is about: by msg_id, or else the newest of our
/// replies to that customer with the same text, no Zalo id yet (the echo came before the send's
/// answer, or the answer was lost) and sent within the echo window of the echo's time.
/// The text Zalo received for one of our replies: a file goes without its text (Zalo's file
/// messages carry none), images and plain replies with it.
fn sent_text(msg: &Message) -> &str {
    match msg.kind {
        MessageKind::File => "",
        _ => &msg.text,
    }
}

async fn match_echo(
    st: &State,
    tx: &mut Tx,
    conn_id: &str,
    m: &ChatMessage,
    echo_window: Ms,
) -> HubResult<Option<Message>> {
    if let Some(id) = super::conversations::message_by_zalo_id(tx, conn_id, &m.msg_id).await? {
        return Ok(load_message(tx, &id).await.ok());
    }
    let Some(conv_id) = st
        .by_customer
        .get(&(conn_id.to_string(), m.user_id.clone()))
    else {
        return Ok(None);
    };
    let recent = tx.db.latest_messages(conv_id, 20).await;
    for msg in recent.map_err(store_error)? {
        // This change's own version of the message, if it has one.
        let msg = match tx.messages.get(&msg.id) {
            Some((_, ours)) => ours.clone(),
            None => msg,
        };
        if msg.direction == Direction::Outbound
            && msg.client_key.is_some()
            && msg.zalo_msg_id.is_none()
            && (m.at - msg.created_at).abs() <= echo_window
            && sent_text(&msg) == crate::model::text::nfc(&m.text)
        {
            return Ok(Some(msg));
        }
    }
    Ok(None)
}
