//! Zalo webhooks inside the hub: a durable intake queue (the 200 to Zalo waits for it), and the
//! batch that applies queued events and removes them from the queue in one atomic change — so an
//! acknowledged event is applied exactly once, even across a crash.

use super::conversations::{apply_delivery, ingest, mark_sent, put_message, Inbound};
use super::*;
use crate::store::wal::Wal;
use crate::zalo::events::{self, ChatMessage, WebhookEvent};
use std::collections::{HashMap, VecDeque};

/// Acknowledged webhooks: durable in the write-ahead log, queued in memory in log order for the
/// worker. The applied watermark (`counters.webhook`) is stored with each batch's effects, so a
/// restart re-queues exactly the records after it.
pub struct Intake {
    wal: Wal,
    queue: Mutex<VecDeque<(u64, Vec<u8>)>>,
    seq: AtomicU64,
    /// When each queued webhook was acknowledged (for the webhook → event latency).
    acknowledged: Mutex<HashMap<u64, std::time::Instant>>,
}

/// Empty the log once it is drained and at least this big.
const TRUNCATE_AT_BYTES: u64 = 4 << 20;

impl Intake {
    pub fn new(wal: Wal, pending: VecDeque<(u64, Vec<u8>)>, last: u64) -> Intake {
        Intake {
            wal,
            queue: Mutex::new(pending),
            seq: AtomicU64::new(last),
            acknowledged: Mutex::new(HashMap::new()),
        }
    }
}

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
    /// Its number in the intake log.
    pub n: u64,
    /// When it was set aside.
    pub at: Ms,
    pub error: String,
    /// The body as Zalo signed it.
    pub body: String,
}

/// Profiles older than this are refreshed when the customer writes again.
const PROFILE_TTL_MS: Ms = DAY_MS;

impl Hub {
    /// Makes a verified webhook body durable before Zalo gets its 200: one append to the log and
    /// a group-committed fsync. Intake never takes the state lock (the worker may hold it for a
    /// whole batch) and never flushes the store.
    pub async fn enqueue_webhook(&self, raw: &[u8]) -> HubResult<u64> {
        let intake = &self.intake;
        let n = intake
            .wal
            .append(raw, || {
                // Under the log's lock: numbers, log order and queue order agree.
                let n = intake.seq.fetch_add(1, Ordering::SeqCst) + 1;
                intake.queue.lock().push_back((n, raw.to_vec()));
                n
            })
            .await?;
        intake
            .acknowledged
            .lock()
            .insert(n, std::time::Instant::now());
        Ok(n)
    }

    /// The oldest queued webhooks.
    pub fn queued_webhooks(&self, limit: usize) -> HubResult<Vec<(u64, Vec<u8>)>> {
        Ok(self
            .intake
            .queue
            .lock()
            .iter()
            .take(limit)
            .cloned()
            .collect())
    }

    /// Applies queued webhooks in order and dequeues them, all in one atomic change.
    pub async fn apply_webhooks(&self, items: Vec<(u64, Vec<u8>)>) -> HubResult<WebhookOutcome> {
        let ctx = Apply {
            store: &*self.store,
            metrics: &self.metrics,
            echo_window: self.echo_window(),
        };
        let numbers: Vec<u64> = items.iter().map(|(n, _)| *n).collect();
        let outcome = self
            .write(|st, tx| {
                let mut out = WebhookOutcome::default();
                for (n, raw) in items {
                    // The applied watermark travels with the effects, in the same atomic batch.
                    st.counters.webhook = st.counters.webhook.max(n);
                    let value: serde_json::Value =
                        serde_json::from_slice(&raw).unwrap_or(serde_json::Value::Null);
                    apply_one(st, tx, &ctx, n, &value, &mut out)?;
                    out.applied += 1;
                }
                Ok(out)
            })
            .await?;
        let intake = &self.intake;
        {
            let mut q = intake.queue.lock();
            for _ in 0..outcome.applied {
                q.pop_front();
            }
        }
        if intake.wal.len() >= TRUNCATE_AT_BYTES {
            intake
                .wal
                .truncate_if(|| !intake.queue.lock().is_empty())
                .map_err(HubError::Internal)?;
        }
        self.metrics.webhooks_applied.inc_by(outcome.applied as u64);
        // Published: the consoles have (or are about to get) the events.
        let mut acknowledged = intake.acknowledged.lock();
        for n in numbers {
            if let Some(at) = acknowledged.remove(&n) {
                self.metrics
                    .webhook_to_event
                    .observe(at.elapsed().as_secs_f64());
            }
        }
        drop(acknowledged);
        Ok(outcome)
    }

    /// Sets the oldest queued webhook aside (it failed to apply again and again): stored with its
    /// error, dequeued and past the applied watermark in one change.
    pub async fn dead_letter_webhook(&self, n: u64, raw: &[u8], error: String) -> HubResult<()> {
        let dead = DeadWebhook {
            n,
            at: now_ms(),
            error,
            body: String::from_utf8_lossy(raw).into_owned(),
        };
        self.write(|st, tx| {
            st.counters.webhook = st.counters.webhook.max(n);
            tx.batch.put_json(format!("dead/{n:020}"), &dead);
            Ok(())
        })
        .await?;
        let mut q = self.intake.queue.lock();
        if q.front().is_some_and(|(front, _)| *front == n) {
            q.pop_front();
        }
        drop(q);
        self.intake.acknowledged.lock().remove(&n);
        self.metrics.webhooks_dead.inc();
        tracing::error!(n, error = %dead.error, "webhook set aside in the dead-letter list");
        Ok(())
    }

    /// The dead-letter list, oldest first.
    pub fn dead_webhooks(&self) -> HubResult<Vec<DeadWebhook>> {
        Ok(self.store.scan_json("dead/")?)
    }

    /// Re-applies a page's rule's old-conversation handling (after a history sync).
    pub async fn redistribute_old(&self, conn_id: &str) -> HubResult<()> {
        let metrics = self.metrics.clone();
        self.write(|st, tx| {
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
fn store_raw(tx: &mut Tx, n: u64, value: &serde_json::Value, why: &str) {
    tracing::info!(
        n,
        why,
        event = value["event_name"].as_str().unwrap_or("?"),
        "webhook stored raw"
    );
    tx.batch.put_json(format!("raw/{n:020}"), value);
}

/// What applying a webhook reads besides the state.
struct Apply<'a> {
    store: &'a dyn Store,
    metrics: &'a Metrics,
    /// How far apart (ms) a reply and Zalo's echo of it may be.
    echo_window: Ms,
}

fn apply_one(
    st: &mut State,
    tx: &mut Tx,
    ctx: &Apply<'_>,
    n: u64,
    value: &serde_json::Value,
    out: &mut WebhookOutcome,
) -> HubResult<()> {
    let Apply {
        store,
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
            if let Ingested::New { conversation, .. } = ingest(st, tx, store, inbound, metrics)? {
                if conversation.customer.fetched_at < now_ms() - PROFILE_TTL_MS
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
            match match_echo(st, tx, store, &conn_id, &m, echo_window)? {
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
                    ingest(st, tx, store, inbound, metrics)?;
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
                if !apply_delivery(st, tx, store, &conn_id, &id, state)? {
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
            ingest(st, tx, store, inbound, metrics)?;
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
        WebhookEvent::Follow { .. } => store_raw(tx, n, value, "follow"),
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
fn match_echo(
    st: &State,
    tx: &Tx,
    store: &dyn Store,
    conn_id: &str,
    m: &ChatMessage,
    echo_window: Ms,
) -> HubResult<Option<Message>> {
    if let Some(id) = tx.lookup::<String>(store, &format!("zmid/{conn_id}/{}", m.msg_id))? {
        return Ok(super::conversations::load_message(store, tx, &id).ok());
    }
    let Some(conv_id) = st
        .by_customer
        .get(&(conn_id.to_string(), m.user_id.clone()))
    else {
        return Ok(None);
    };
    let prefix = format!("msg/{conv_id}/");
    for (_, v) in store.range(prefix.as_bytes(), &prefix_end(prefix.as_bytes()), true, 20)? {
        let msg: Message = serde_json::from_slice(&v).map_err(|e| HubError::Internal(e.into()))?;
        let msg = super::conversations::load_message(store, tx, &msg.id).unwrap_or(msg);
        if msg.direction == Direction::Outbound
            && msg.client_key.is_some()
            && msg.zalo_msg_id.is_none()
            && (m.at - msg.created_at).abs() <= echo_window
            && msg.text == crate::model::text::nfc(&m.text)
        {
            return Ok(Some(msg));
        }
    }
    Ok(None)
}
