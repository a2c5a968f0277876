//! Conversations and messages: inbound intake, claim, reply, transfer, release, done, read.

use super::*;
use crate::wire::{self, OutboundAttachment, ReplyInput, View};

/// One message arriving from Zalo (webhook or history sync), already parsed.
#[derive(Debug, Clone)]
pub struct Inbound {
    pub connection_id: ConnectionId,
    pub customer_user_id: String,
    /// `Outbound` for staff replies typed in Zalo's OA manager and for the OA's own history rows.
    pub direction: Direction,
    pub sender_name: String,
    pub zalo_msg_id: Option<String>,
    pub kind: MessageKind,
    pub text: String,
    pub attachments: Vec<Attachment>,
    pub quote_msg_id: Option<String>,
    pub at: Ms,
    pub origin: Origin,
    pub raw: Option<serde_json::Value>,
}

#[derive(Debug, Clone)]
pub enum Ingested {
    New {
        conversation: Box<Conversation>,
        message: Box<Message>,
    },
    /// Already stored under the same (connection, Zalo msg_id).
    Duplicate { message_id: MessageId },
}

/// How a send ended.
#[derive(Debug, Clone)]
pub enum SendOutcome {
    /// Zalo took it: its message id.
    Sent(String),
    /// Zalo refused it, or retries ran out: the code and a human reason.
    Failed(i64, String),
    /// It may or may not have reached Zalo (reason given): it waits for Zalo's echo.
    Unknown(String),
}

/// A reply waiting to be sent through Zalo.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutboundJob {
    pub message_id: MessageId,
    pub conversation_id: ConversationId,
    pub attempts: u32,
    pub next_attempt_at: Ms,
    pub attachment: Option<JobAttachment>,
}

/// What a job sends besides text: the bytes are a blob file (see `store::blobs`), the job holds
/// only its name, so a retry rewrites a small record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobAttachment {
    pub kind: wire::OutboundKind,
    pub name: String,
    /// The blob's name; empty in jobs stored before blobs, which carry `content_base64` until
    /// the hub opens and moves it into a blob.
    #[serde(default)]
    pub blob: String,
    #[serde(default)]
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_base64: Option<String>,
}

impl Hub {
    /// Stores an inbound message, creates or updates its conversation, routes it and emits events.
    /// Idempotent by (connection, Zalo msg_id).
    pub async fn ingest(&self, msg: Inbound) -> HubResult<Ingested> {
        let metrics = self.metrics.clone();
        let store = self.store.clone();
        let r = self
            .write(|st, tx| ingest(st, tx, &*store, msg, &metrics))
            .await?;
        Ok(r)
    }

    /// Compare-and-set claim: succeeds only while the conversation waits for a member.
    pub async fn claim(&self, who: &Account, conv_id: &str) -> HubResult<Conversation> {
        let r = self
            .write(|st, tx| claim(st, tx, who, conv_id, AssignReason::Claim))
            .await;
        let counter = match &r {
            Ok(_) => &self.metrics.claims_won,
            Err(HubError::Conflict { .. }) => &self.metrics.claims_lost,
            Err(_) => return r,
        };
        counter.inc();
        r
    }

    /// Queues a reply (claiming an unclaimed conversation first). The same client key twice
    /// returns the first message and sends once.
    pub async fn reply(
        &self,
        who: &Account,
        conv_id: &str,
        mut input: ReplyInput,
    ) -> HubResult<Message> {
        // The bytes become a blob before the reply is recorded, outside the hub's lock; a reply
        // that is refused (or a crash before it is recorded) leaves its blob to be removed.
        let attachment = match input.attachment.take() {
            Some(a) => Some(self.store_attachment(a).await?),
            None => None,
        };
        let blob = attachment.as_ref().map(|a| a.blob.clone());
        let store = self.store.clone();
        let r = self
            .write(|st, tx| reply(st, tx, &*store, who, conv_id, input, attachment))
            .await;
        let created = matches!(&r, Ok((_, true)));
        if let (Some(blob), false) = (blob, created) {
            self.blobs.remove(&blob);
        }
        let (msg, _) = r?;
        self.outbox_ready.notify_one();
        Ok(msg)
    }

    /// Decodes an attachment and stores it as a blob, within the pending-attachment cap.
    async fn store_attachment(&self, a: OutboundAttachment) -> HubResult<JobAttachment> {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&a.content_base64)
            .map_err(|_| {
                HubError::Invalid("attachment content_base64 is not valid base64".into())
            })?;
        drop(a.content_base64);
        let size = bytes.len() as u64;
        // Refused now rather than failing at Zalo when it is sent.
        let limit = a.kind.upload_limit() as u64;
        if size > limit {
            return Err(HubError::Invalid(format!(
                "Tệp vượt quá giới hạn của Zalo / larger than Zalo takes ({} KB; at most {} MB)",
                size >> 10,
                limit >> 20
            )));
        }
        let pending = self.blobs.total_bytes();
        let cap = self.max_pending_attachment_bytes();
        if pending + size > cap {
            return Err(HubError::TooMany {
                code: "attachments_pending",
                message: format!(
                    "{} MB of attachments are waiting to be sent to Zalo (the limit is {} MB); \
                     send this one when they have gone",
                    pending >> 20,
                    cap >> 20
                ),
            });
        }
        let blobs = self.blobs.clone();
        let blob = tokio::task::spawn_blocking(move || blobs.put(&bytes))
            .await
            .map_err(anyhow::Error::from)??;
        Ok(JobAttachment {
            kind: a.kind,
            name: crate::model::text::file_name(&a.name),
            blob,
            size,
            content_base64: None,
        })
    }

    pub async fn transfer(
        &self,
        who: &Account,
        conv_id: &str,
        to: &str,
    ) -> HubResult<Conversation> {
        self.write(|st, tx| {
            let mut conv = conversation_for_action(st, who, conv_id)?;
            let target = st
                .find_account(to)
                .cloned()
                .ok_or_else(|| HubError::Invalid(format!("unknown account {to}")))?;
            if !st.may_take(&conv, &target) {
                return Err(HubError::Invalid(format!(
                    "{} is not a member of this page's rule and cannot take its conversations",
                    target.username
                )));
            }
            let before = st.conversation_audience(&conv);
            conv.assign(
                Some(target.id.clone()),
                ConvState::Assigned,
                Some(who.id.clone()),
                AssignReason::Transfer,
                now_ms(),
            );
            st.put_conversation(tx, conv.clone(), before);
            Ok(conv)
        })
        .await
    }

    /// Who the caller may hand this conversation to: the page's eligible members and admins, the
    /// current assignee excepted, by username.
    pub fn transfer_targets(
        &self,
        who: &Account,
        conv_id: &str,
    ) -> HubResult<Vec<wire::TransferTarget>> {
        self.read(|st| {
            let conv = conversation_for_action(st, who, conv_id)?;
            let mut targets: Vec<wire::TransferTarget> = st
                .accounts
                .values()
                .filter(|a| conv.assignee.as_ref() != Some(&a.id) && st.may_take(&conv, a))
                .map(wire::TransferTarget::from)
                .collect();
            targets.sort_by_key(|a| a.username.to_lowercase());
            Ok(targets)
        })
    }

    /// Gives a conversation back: round robin passes it to the next available member, self-claim
    /// puts it back in the unclaimed queue.
    pub async fn release(&self, who: &Account, conv_id: &str) -> HubResult<Conversation> {
        let metrics = self.metrics.clone();
        self.write(|st, tx| {
            let mut conv = conversation_for_action(st, who, conv_id)?;
            let conn = st.connections[&conv.connection_id].clone();
            if conn.chat_mode == ChatMode::OnlyMe {
                return Err(HubError::Conflict {
                    code: "only_me_page",
                    message: "this page is \"Chỉ mình tôi\" (only me): its conversations always belong to its connector".into(),
                    winner: None,
                    rule: None,
                });
            }
            let now = now_ms();
            let releaser = conv.assignee.clone();
            let next = st.rule_of_connection(&conn.id).and_then(|rule| match rule.method {
                Method::RoundRobin => routing::next_round_robin(&rule.members, rule.cursor.as_deref(), &|m| {
                    Some(m) != releaser.as_deref() && st.is_available(m)
                }),
                Method::SelfClaim => None,
            });
            let before = st.conversation_audience(&conv);
            let turn_of = conn.rule_id.as_deref().filter(|_| next.is_some());
            let by = Some(who.id.clone());
            st.land(tx, &mut conv, next, by, AssignReason::Release, turn_of, now, &metrics);
            if conv.state == ConvState::Unclaimed {
                // Back in the queue where the customer's wait puts it, not behind newer ones.
                let waited_from = conv.last_interaction_at.unwrap_or(conv.created_at);
                conv.waiting_since = Some(waited_from.min(now));
            }
            st.put_conversation(tx, conv.clone(), before);
            Ok(conv)
        })
        .await
    }

    pub async fn mark_done(&self, who: &Account, conv_id: &str) -> HubResult<Conversation> {
        self.write(|st, tx| {
            let mut conv = conversation_for_action(st, who, conv_id)?;
            let before = st.conversation_audience(&conv);
            conv.status = ConvStatus::Done;
            st.put_conversation(tx, conv.clone(), before);
            Ok(conv)
        })
        .await
    }

    pub async fn mark_read(&self, who: &Account, conv_id: &str) -> HubResult<Conversation> {
        self.write(|st, tx| {
            let mut conv = visible_conversation(st, who, conv_id)?;
            if conv.unread.remove(&who.id).is_some() {
                let before = st.conversation_audience(&conv);
                st.put_conversation(tx, conv.clone(), before);
            }
            Ok(conv)
        })
        .await
    }

    /// Updates the customer's profile (from Zalo's user/detail).
    pub async fn set_customer(&self, conv_id: &str, customer: Customer) -> HubResult<()> {
        self.write(|st, tx| {
            let mut conv =
                st.conversations.get(conv_id).cloned().ok_or_else(|| {
                    HubError::NotFound(format!("conversation {conv_id} not found"))
                })?;
            if conv.customer != customer {
                conv.customer = customer;
                let before = st.conversation_audience(&conv);
                st.put_conversation(tx, conv, before);
            }
            Ok(())
        })
        .await
    }

    pub fn get_conversation(&self, who: &Account, conv_id: &str) -> HubResult<Conversation> {
        self.read(|st| visible_conversation(st, who, conv_id))
    }

    pub fn list_conversations(
        &self,
        who: &Account,
        view: View,
        cursor: Option<&str>,
        limit: usize,
    ) -> HubResult<wire::Page<Conversation>> {
        if view == View::All && !who.is_admin() {
            return Err(HubError::Forbidden("the All view is for admins".into()));
        }
        let limit = limit.clamp(1, 500);
        self.read(|st| {
            let mut rows: Vec<((i64, &str), &Conversation)> = st
                .conversations
                .values()
                .filter(|c| in_view(st, who, view, c))
                .map(|c| (sort_key(view, c), c))
                .collect();
            rows.sort_by(|a, b| a.0.cmp(&b.0));
            let after = match cursor {
                Some(c) => Some(parse_cursor(c)?),
                None => None,
            };
            let start = match &after {
                Some((k, id)) => {
                    rows.partition_point(|(key, _)| (key.0, key.1) <= (*k, id.as_str()))
                }
                None => 0,
            };
            let page: Vec<Conversation> = rows[start..]
                .iter()
                .take(limit)
                .map(|(_, c)| (*c).clone())
                .collect();
            let next_cursor = (start + page.len() < rows.len())
                .then(|| {
                    page.last().map(|c| {
                        let (k, id) = sort_key(view, c);
                        format!("{k}:{id}")
                    })
                })
                .flatten();
            Ok(wire::Page {
                items: page,
                next_cursor,
            })
        })
    }

    pub fn counts(&self, who: &Account) -> wire::Counts {
        self.read(|st| {
            let count = |v| {
                st.conversations
                    .values()
                    .filter(|c| in_view(st, who, v, c))
                    .count()
            };
            wire::Counts {
                mine: count(View::Mine),
                unclaimed: count(View::Unclaimed),
                all: if who.is_admin() {
                    st.conversations.len()
                } else {
                    0
                },
            }
        })
    }

    /// Messages before `before` (a message id) in the thread's time order, the newest `limit`,
    /// returned oldest first.
    pub fn list_messages(
        &self,
        who: &Account,
        conv_id: &str,
        before: Option<&str>,
        limit: usize,
    ) -> HubResult<wire::Page<Message>> {
        self.get_conversation(who, conv_id)?;
        let limit = limit.clamp(1, 500);
        let prefix = format!("mt/{conv_id}/");
        let end = match before {
            Some(b) => {
                let m = load_message(&*self.store, &Tx::default(), b)
                    .ok()
                    .filter(|m| m.conversation_id == conv_id)
                    .ok_or_else(|| {
                        HubError::BadRequest(format!(
                            "before: {b:?} is not a message of this conversation"
                        ))
                    })?;
                let (at, n) = m.thread_order();
                key_msg_time(conv_id, at, n).into_bytes()
            }
            None => prefix_end(prefix.as_bytes()),
        };
        let rows = self
            .store
            .range(prefix.as_bytes(), &end, true, limit + 1)
            .map_err(HubError::Internal)?;
        let more = rows.len() > limit;
        let mut items = Vec::with_capacity(limit);
        for (_, v) in rows.into_iter().take(limit) {
            let id: MessageId =
                serde_json::from_slice(&v).map_err(|e| HubError::Internal(e.into()))?;
            items.push(load_message(&*self.store, &Tx::default(), &id)?);
        }
        items.reverse();
        let next_cursor = if more {
            items.first().map(|m| m.id.clone())
        } else {
            None
        };
        Ok(wire::Page { items, next_cursor })
    }

    pub fn message(&self, id: &str) -> HubResult<Message> {
        load_message(&*self.store, &Tx::default(), id)
    }

    /// Replies waiting to be sent, oldest first.
    pub fn outbound_jobs(&self) -> HubResult<Vec<OutboundJob>> {
        Ok(self.store.scan_json("job/")?)
    }

    /// The job as stored now (`None` once finished).
    pub fn outbound_job(&self, message_id: &str) -> HubResult<Option<OutboundJob>> {
        Ok(self.store.get_json(&format!("job/{message_id}"))?)
    }

    /// Where a job's attachment bytes are (the sender streams them from there).
    pub fn blob_path(&self, blob: &str) -> std::path::PathBuf {
        self.blobs.path(blob)
    }

    pub async fn reschedule_job(&self, job: OutboundJob) -> HubResult<()> {
        self.write(|_, tx| {
            tx.batch.put_json(format!("job/{}", job.message_id), &job);
            Ok(())
        })
        .await
    }

    /// Records the outcome of a send and removes the job. `None` when the message no longer
    /// exists (its page was deleted meanwhile).
    pub async fn finish_job(
        &self,
        job: &OutboundJob,
        outcome: SendOutcome,
    ) -> HubResult<Option<Message>> {
        let message_id = job.message_id.as_str();
        let store = self.store.clone();
        let r = self
            .write(|st, tx| {
                // Whatever happens, the job is finished: a job is never retried forever.
                tx.batch.delete(format!("job/{message_id}"));
                let mut msg = match load_message(&*store, tx, message_id) {
                    Ok(m) => m,
                    Err(HubError::NotFound(_)) => return Ok(None),
                    Err(e) => return Err(e),
                };
                let conn_id = st
                    .conversations
                    .get(&msg.conversation_id)
                    .map(|c| c.connection_id.clone())
                    .unwrap_or_default();
                match &outcome {
                    SendOutcome::Sent(zalo_id) => mark_sent(tx, &conn_id, &mut msg, zalo_id),
                    SendOutcome::Failed(code, reason) => {
                        msg.delivery = Some(Delivery::Failed);
                        msg.error_code = Some(*code);
                        msg.error_reason = Some(reason.clone());
                    }
                    SendOutcome::Unknown(reason) => {
                        msg.delivery = Some(Delivery::Unknown);
                        msg.error_code = Some(crate::zalo::AMBIGUOUS);
                        msg.error_reason = Some(reason.clone());
                        tx.batch
                            .put_json(key_unknown(&msg.id), &msg.conversation_id);
                    }
                }
                put_message(st, tx, &msg);
                Ok(Some(msg))
            })
            .await?;
        if let Some(a) = &job.attachment {
            self.blobs.remove(&a.blob);
        }
        let c = match outcome {
            SendOutcome::Sent(_) => &self.metrics.outbound_sent,
            SendOutcome::Failed(..) => &self.metrics.outbound_failed,
            SendOutcome::Unknown(_) => &self.metrics.outbound_unknown,
        };
        c.inc();
        Ok(r)
    }

    /// Replies whose send stayed ambiguous longer than `window` without Zalo's echo become
    /// `failed`, so the agent knows to send them again.
    pub async fn expire_unknown_sends(&self, window: Ms) -> HubResult<usize> {
        let now = now_ms();
        let store = self.store.clone();
        // Read first, write only when a reply is due: the sender calls this every second.
        let settled_or_due = |key: &[u8]| {
            let id = String::from_utf8_lossy(&key[4..]).into_owned();
            load_message(&*store, &Tx::default(), &id).map_or(true, |m| {
                m.delivery != Some(Delivery::Unknown) || now - m.created_at > window
            })
        };
        let waiting: Vec<(Vec<u8>, Vec<u8>)> = self
            .store
            .range(b"unk/", &prefix_end(b"unk/"), false, usize::MAX)
            .map_err(HubError::Internal)?
            .into_iter()
            .filter(|(k, _)| settled_or_due(k))
            .collect();
        if waiting.is_empty() {
            return Ok(0);
        }
        let expired = self
            .write(|st, tx| {
                let mut expired = 0;
                for (k, _) in &waiting {
                    let id = String::from_utf8_lossy(&k[4..]).into_owned();
                    let Ok(mut msg) = load_message(&*store, tx, &id) else {
                        tx.batch.delete(k.clone());
                        continue;
                    };
                    if msg.delivery != Some(Delivery::Unknown) {
                        tx.batch.delete(k.clone());
                    } else if now - msg.created_at > window {
                        tx.batch.delete(k.clone());
                        msg.delivery = Some(Delivery::Failed);
                        msg.error_reason = Some(
                            "Zalo không xác nhận đã nhận tin — hãy gửi lại / Zalo never confirmed it — send it again".into(),
                        );
                        tracing::warn!(conversation = %msg.conversation_id, message = %msg.id, "ambiguous send never confirmed: failed");
                        put_message(st, tx, &msg);
                        expired += 1;
                    }
                }
                Ok(expired)
            })
            .await?;
        Ok(expired)
    }
}

/// `unk/<message id>`: replies whose send is ambiguous, waiting for Zalo's echo.
pub(super) fn key_unknown(message_id: &str) -> String {
    format!("unk/{message_id}")
}

/// Zalo took our reply (its answer, or its echo): record its id; a receipt may have come first.
pub(super) fn mark_sent(tx: &mut Tx, conn_id: &str, msg: &mut Message, zalo_id: &str) {
    msg.zalo_msg_id = Some(zalo_id.to_string());
    if msg.delivery.is_none_or(|d| d < Delivery::Sent) {
        msg.delivery = Some(Delivery::Sent);
    }
    if msg.error_code == Some(crate::zalo::AMBIGUOUS) {
        msg.error_code = None;
        msg.error_reason = None;
        tx.batch.delete(key_unknown(&msg.id));
    }
    tx.batch
        .put_json(format!("zmid/{conn_id}/{zalo_id}"), &msg.id);
}

pub(super) fn load_message(store: &dyn Store, tx: &Tx, id: &str) -> HubResult<Message> {
    let missing = || HubError::NotFound(format!("message {id} not found"));
    let conv: String = tx
        .lookup(store, &format!("mref/{id}"))?
        .ok_or_else(missing)?;
    let n = message_seq(id).ok_or_else(missing)?;
    tx.lookup(store, &key_msg(&conv, n))?.ok_or_else(missing)
}

/// Moves an outbound message's delivery state forward (never back, never out of `failed`).
pub(super) fn apply_delivery(
    st: &State,
    tx: &mut Tx,
    store: &dyn Store,
    conn_id: &str,
    zalo_msg_id: &str,
    state: Delivery,
) -> HubResult<bool> {
    let Some(id) = tx.lookup::<String>(store, &format!("zmid/{conn_id}/{zalo_msg_id}"))? else {
        return Ok(false);
    };
    let mut msg = load_message(store, tx, &id)?;
    if msg.direction == Direction::Outbound
        && msg
            .delivery
            .is_some_and(|d| d < state && d != Delivery::Failed)
    {
        msg.delivery = Some(state);
        put_message(st, tx, &msg);
    }
    Ok(true)
}

pub(super) fn put_message(st: &State, tx: &mut Tx, msg: &Message) {
    let (at, n) = msg.thread_order();
    tx.batch.put_json(key_msg(&msg.conversation_id, n), msg);
    tx.batch
        .put_json(key_msg_time(&msg.conversation_id, at, n), &msg.id);
    tx.batch
        .put_json(format!("mref/{}", msg.id), &msg.conversation_id);
    let audience = st
        .conversations
        .get(&msg.conversation_id)
        .map(|c| st.conversation_audience(c))
        .unwrap_or_default();
    tx.emit(
        EventBody::Message {
            message: msg.clone(),
        },
        audience,
    );
}

impl State {
    /// Whether `target` may take this conversation (claim it, or be handed it): eligible on its
    /// page, or an admin.
    fn may_take(&self, conv: &Conversation, target: &Account) -> bool {
        target.is_admin()
            || self
                .connections
                .get(&conv.connection_id)
                .is_some_and(|conn| routing::is_eligible(self.page_of(conn), &target.id))
    }
}

/// `ckey/<account>/<conversation>/<client key>` → the reply it made.
pub(super) fn key_client(account: &str, conv_id: &str, key: &str) -> String {
    format!("ckey/{account}/{conv_id}/{key}")
}

fn in_view(st: &State, who: &Account, view: View, c: &Conversation) -> bool {
    match view {
        View::Mine => c.assignee.as_deref() == Some(who.id.as_str()),
        View::Unclaimed => {
            c.state == ConvState::Unclaimed
                && c.status == ConvStatus::Open
                && st.may_see_conversation(who, c)
        }
        View::All => who.is_admin(),
    }
}

/// Mine and All: most recent activity first. Unclaimed: longest waiting first.
fn sort_key(view: View, c: &Conversation) -> (i64, &str) {
    match view {
        View::Unclaimed => queue_order(c),
        _ => (-c.last_activity_at, c.id.as_str()),
    }
}

fn parse_cursor(c: &str) -> HubResult<(i64, String)> {
    let (k, id) = c
        .split_once(':')
        .ok_or_else(|| HubError::Invalid(format!("bad cursor {c:?}")))?;
    let k = k
        .parse()
        .map_err(|_| HubError::Invalid(format!("bad cursor {c:?}")))?;
    Ok((k, id.to_string()))
}

fn not_found(conv_id: &str) -> HubError {
    HubError::NotFound(format!("conversation {conv_id} not found"))
}

/// A conversation the account may see; others do not exist for it.
fn visible_conversation(st: &State, who: &Account, conv_id: &str) -> HubResult<Conversation> {
    match st.conversations.get(conv_id) {
        Some(c) if st.may_see_conversation(who, c) => Ok(c.clone()),
        _ => Err(not_found(conv_id)),
    }
}

/// Transfer, release and done are for the assignee and admins.
fn conversation_for_action(st: &State, who: &Account, conv_id: &str) -> HubResult<Conversation> {
    let conv = visible_conversation(st, who, conv_id)?;
    if who.is_admin() || conv.assignee.as_deref() == Some(who.id.as_str()) {
        Ok(conv)
    } else {
        Err(HubError::Forbidden(
            "only the assignee or an admin may do this; claim the conversation first".into(),
        ))
    }
}

fn claim(
    st: &mut State,
    tx: &mut Tx,
    who: &Account,
    conv_id: &str,
    reason: AssignReason,
) -> HubResult<Conversation> {
    let conv = st
        .conversations
        .get(conv_id)
        .ok_or_else(|| not_found(conv_id))?;
    // Unattended conversations are for admins: to anyone else they do not exist.
    if !st.may_take(conv, who) || (conv.state == ConvState::Unattended && !who.is_admin()) {
        return Err(not_found(conv_id));
    }
    let claimable = conv.state == ConvState::Unclaimed
        || (who.is_admin() && conv.state == ConvState::Unattended);
    if !claimable {
        if conv.assignee.as_deref() == Some(who.id.as_str()) {
            return Ok(conv.clone());
        }
        let winner = conv
            .assignee
            .as_deref()
            .and_then(|a| st.accounts.get(a))
            .cloned()
            .map(Box::new);
        let message = match &winner {
            Some(w) => format!("already claimed by {} ({})", w.name, w.username),
            None => "this conversation is not waiting to be claimed".to_string(),
        };
        return Err(HubError::Conflict {
            code: "already_claimed",
            message,
            winner,
            rule: None,
        });
    }
    let mut conv = conv.clone();
    let before = st.conversation_audience(&conv);
    conv.assign(
        Some(who.id.clone()),
        ConvState::Assigned,
        Some(who.id.clone()),
        reason,
        now_ms(),
    );
    st.put_conversation(tx, conv.clone(), before);
    Ok(conv)
}

/// Records a reply and its job; `true` when it is new (not a repeated client key).
fn reply(
    st: &mut State,
    tx: &mut Tx,
    store: &dyn Store,
    who: &Account,
    conv_id: &str,
    input: ReplyInput,
    attachment: Option<JobAttachment>,
) -> HubResult<(Message, bool)> {
    let key = input.client_key.trim();
    if key.is_empty() || key.len() > 128 {
        return Err(HubError::Invalid(
            "client_key must be 1-128 characters".into(),
        ));
    }
    // The key is looked up only where the caller may reply: scoped to them and this conversation.
    visible_conversation(st, who, conv_id)?;
    if let Some(id) = store.get_json::<String>(&key_client(&who.id, conv_id, key))? {
        return Ok((load_message(store, tx, &id)?, false));
    }
    let text = crate::model::text::nfc(&input.text);
    let chars = crate::model::text::char_count(&text);
    if chars > MAX_TEXT_CHARS {
        return Err(HubError::Invalid(format!(
            "text is {chars} characters; Zalo accepts at most {MAX_TEXT_CHARS} (Tin nhắn dài quá {MAX_TEXT_CHARS} ký tự)"
        )));
    }
    if text.trim().is_empty() && attachment.is_none() {
        return Err(HubError::Invalid(
            "a reply needs text or an attachment".into(),
        ));
    }
    let mut conv = match st.conversations.get(conv_id) {
        Some(c)
            if c.state == ConvState::Unclaimed
                || (who.is_admin() && c.state == ConvState::Unattended) =>
        {
            claim(st, tx, who, conv_id, AssignReason::Reply)?
        }
        _ => conversation_for_action(st, who, conv_id)?,
    };
    if conv.assignee.as_deref() != Some(who.id.as_str()) && !who.is_admin() {
        return Err(HubError::Forbidden(
            "only the assignee or an admin may reply".into(),
        ));
    }
    let now = now_ms();
    let id = st.next_id('m');
    let kind = match attachment.as_ref().map(|a| a.kind) {
        Some(wire::OutboundKind::Image) => MessageKind::Image,
        Some(wire::OutboundKind::Gif) => MessageKind::Gif,
        Some(wire::OutboundKind::File) => MessageKind::File,
        None => MessageKind::Text,
    };
    let msg = Message {
        id: id.clone(),
        conversation_id: conv.id.clone(),
        direction: Direction::Outbound,
        sender: who.id.clone(),
        sender_name: who.name.clone(),
        kind,
        text: text.clone(),
        attachments: attachment
            .iter()
            .map(|a| Attachment {
                kind: kind.as_str().into(),
                url: String::new(),
                name: a.name.clone(),
                size: Some(a.size),
            })
            .collect(),
        zalo_msg_id: None,
        quote_msg_id: input.quote_msg_id.clone(),
        client_key: Some(key.to_string()),
        delivery: Some(Delivery::Pending),
        error_code: None,
        error_reason: None,
        created_at: now,
        raw: None,
    };
    tx.batch.put_json(key_client(&who.id, conv_id, key), &id);
    tx.batch.put_json(
        format!("job/{id}"),
        &OutboundJob {
            message_id: id.clone(),
            conversation_id: conv.id.clone(),
            attempts: 0,
            next_attempt_at: now,
            attachment,
        },
    );
    put_message(st, tx, &msg);
    let before = st.conversation_audience(&conv);
    conv.last_activity_at = now;
    conv.preview = preview_of(&msg);
    conv.unread.remove(&who.id);
    st.put_conversation(tx, conv, before);
    Ok((msg, true))
}

pub(crate) fn preview_of(m: &Message) -> String {
    let body = if m.text.is_empty() {
        format!("[{}]", m.kind.as_str())
    } else {
        m.text.clone()
    };
    body.chars().take(120).collect()
}

pub(super) fn ingest(
    st: &mut State,
    tx: &mut Tx,
    store: &dyn Store,
    msg: Inbound,
    metrics: &Metrics,
) -> HubResult<Ingested> {
    let Some(conn) = st.connections.get(&msg.connection_id).cloned() else {
        return Err(HubError::NotFound(format!(
            "connection {} not found",
            msg.connection_id
        )));
    };
    if let Some(zid) = &msg.zalo_msg_id {
        if let Some(existing) = tx.lookup::<String>(store, &format!("zmid/{}/{zid}", conn.id))? {
            metrics.webhooks_duplicate.inc();
            return Ok(Ingested::Duplicate {
                message_id: existing,
            });
        }
    }
    let now = now_ms();
    let key = (conn.id.clone(), msg.customer_user_id.clone());
    let existing = st
        .by_customer
        .get(&key)
        .and_then(|id| st.conversations.get(id))
        .cloned();
    let is_new = existing.is_none();
    let mut conv = match existing {
        Some(c) => c,
        None => {
            let id = st.next_id('c');
            Conversation {
                id,
                connection_id: conn.id.clone(),
                customer: Customer {
                    user_id: msg.customer_user_id.clone(),
                    display_name: if msg.direction == Direction::Inbound
                        && !msg.sender_name.is_empty()
                    {
                        msg.sender_name.clone()
                    } else {
                        String::new()
                    },
                    avatar: String::new(),
                    fetched_at: 0,
                },
                assignee: None,
                state: ConvState::Unattended,
                status: ConvStatus::Open,
                origin: msg.origin,
                last_interaction_at: None,
                last_activity_at: msg.at,
                waiting_since: None,
                unread: BTreeMap::new(),
                preview: String::new(),
                assignments: vec![],
                created_at: now,
            }
        }
    };
    let before = if is_new {
        vec![]
    } else {
        st.conversation_audience(&conv)
    };
    let live = msg.origin == Origin::Live;
    if msg.direction == Direction::Inbound {
        conv.last_interaction_at = Some(conv.last_interaction_at.unwrap_or(0).max(msg.at));
        if live {
            if conv.status == ConvStatus::Done {
                conv.status = ConvStatus::Open;
            }
            let page = st.page_of(&conn);
            let keeps = routing::keeps_assignee(page, &conv, &|a| st.is_admin(a));
            if !keeps {
                st.route(tx, &mut conv, now, metrics);
            }
            for who in watchers(st, &conv) {
                *conv.unread.entry(who).or_default() += 1;
            }
        }
    }
    let message = Message {
        id: st.next_id('m'),
        conversation_id: conv.id.clone(),
        direction: msg.direction,
        sender: match msg.direction {
            Direction::Inbound => msg.customer_user_id.clone(),
            Direction::Outbound => OA_MANAGER_SENDER.to_string(),
        },
        sender_name: msg.sender_name,
        kind: msg.kind,
        text: crate::model::text::nfc(&msg.text),
        attachments: msg.attachments,
        zalo_msg_id: msg.zalo_msg_id.clone(),
        quote_msg_id: msg.quote_msg_id,
        client_key: None,
        delivery: (msg.direction == Direction::Outbound).then_some(Delivery::Sent),
        error_code: None,
        error_reason: None,
        created_at: msg.at,
        raw: msg.raw,
    };
    if msg.at >= conv.last_activity_at || is_new {
        conv.last_activity_at = conv.last_activity_at.max(msg.at);
        conv.preview = preview_of(&message);
    }
    if let Some(zid) = &msg.zalo_msg_id {
        tx.batch
            .put_json(format!("zmid/{}/{zid}", conn.id), &message.id);
    }
    st.put_conversation(tx, conv.clone(), before);
    put_message(st, tx, &message);
    // "Last event" bookkeeping: at most once a second, not a write per message.
    if live && conn.last_event_at.is_none_or(|t| now - t >= 1000) {
        let mut c = conn;
        c.last_event_at = Some(now);
        st.put_connection_quietly(tx, c);
    }
    Ok(Ingested::New {
        conversation: Box::new(conv),
        message: Box::new(message),
    })
}

/// Who gets an unread mark for a new inbound message: the assignee, or whoever may claim it.
fn watchers(st: &State, conv: &Conversation) -> Vec<AccountId> {
    match &conv.assignee {
        Some(a) => vec![a.clone()],
        None => st.conversation_audience(conv),
    }
}
