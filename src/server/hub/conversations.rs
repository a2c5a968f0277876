//! Conversations and messages: inbound intake, claim, reply, transfer, release, done, read.

use super::*;
use crate::store::sql::conversations::List;
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
    /// The blob's name.
    pub blob: String,
    pub size: u64,
}

impl OutboundJob {
    pub(super) fn row(&self) -> crate::store::sql::write::JobRow {
        let attachment = self
            .attachment
            .as_ref()
            .map(|a| serde_json::to_string(a).expect("attachments serialise"));
        (
            self.message_id.clone(),
            self.conversation_id.clone(),
            self.attempts as i32,
            self.next_attempt_at,
            attachment,
        )
    }

    fn from_row(row: crate::store::sql::write::JobRow) -> HubResult<OutboundJob> {
        let (message_id, conversation_id, attempts, next_attempt_at, attachment) = row;
        let attachment = attachment
            .map(|a| serde_json::from_str(&a))
            .transpose()
            .map_err(|e| HubError::Internal(e.into()))?;
        Ok(OutboundJob {
            message_id,
            conversation_id,
            attempts: attempts.max(0) as u32,
            next_attempt_at,
            attachment,
        })
    }
}

impl Hub {
    /// Stores an inbound message, creates or updates its conversation, routes it and emits events.
    /// Idempotent by (connection, Zalo msg_id).
    pub async fn ingest(&self, msg: Inbound) -> HubResult<Ingested> {
        let metrics = self.metrics.clone();
        self.write(async |st, tx| ingest(st, tx, msg, &metrics).await)
            .await
    }

    /// Compare-and-set claim: succeeds only while the conversation waits for a member.
    pub async fn claim(&self, who: &Account, conv_id: &str) -> HubResult<Conversation> {
        let r = self
            .write(async |st, tx| claim(st, tx, who, conv_id, AssignReason::Claim))
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
        let r = self
            .write(async |st, tx| reply(st, tx, who, conv_id, input, attachment).await)
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
        let (kind, name, bytes) = attachment_bytes(a)?;
        let size = bytes.len() as u64;
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
            kind,
            name,
            blob,
            size,
        })
    }

    pub async fn transfer(
        &self,
        who: &Account,
        conv_id: &str,
        to: &str,
    ) -> HubResult<Conversation> {
        self.write(async |st, tx| {
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
    pub async fn transfer_targets(
        &self,
        who: &Account,
        conv_id: &str,
    ) -> HubResult<Vec<wire::TransferTarget>> {
        self.read(|st| {
            let conv = conversation_for_action(st, who, conv_id)?;
            Ok(colleagues_where(st, |a| {
                conv.assignee.as_ref() != Some(&a.id) && st.may_take(&conv, a)
            }))
        })
        .await
    }

    /// Gives a conversation back: round robin passes it to the next available member, self-claim
    /// puts it back in the unclaimed queue.
    pub async fn release(&self, who: &Account, conv_id: &str) -> HubResult<Conversation> {
        let metrics = self.metrics.clone();
        self.write(async |st, tx| {
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
        self.write(async |st, tx| {
            let mut conv = conversation_for_action(st, who, conv_id)?;
            let before = st.conversation_audience(&conv);
            conv.status = ConvStatus::Done;
            st.put_conversation(tx, conv.clone(), before);
            Ok(conv)
        })
        .await
    }

    pub async fn mark_read(&self, who: &Account, conv_id: &str) -> HubResult<Conversation> {
        self.write(async |st, tx| {
            let mut conv = visible_conversation(st, who, conv_id)?;
            if conv.unread.remove(&who.id).is_some() {
                let before = st.conversation_audience(&conv);
                st.put_conversation(tx, conv.clone(), before);
            }
            Ok(conv)
        })
        .await
    }

    /// The customer as Zalo's `user/detail` gave them: name, avatar, whether they follow the
    /// page (unknown: as it was) and their tags (see `labels::labels_from_profile`), in one
    /// change.
    pub async fn set_profile(
        &self,
        conv_id: &str,
        profile: crate::zalo::client::UserProfile,
    ) -> HubResult<()> {
        self.write(async |st, tx| {
            let conv =
                st.conversations.get(conv_id).cloned().ok_or_else(|| {
                    HubError::NotFound(format!("conversation {conv_id} not found"))
                })?;
            let mut changed = conv.clone();
            changed.customer = Customer {
                display_name: crate::model::text::nfc(&profile.display_name),
                avatar: profile.avatar,
                fetched_at: now_ms(),
                follows: profile.follows.or(conv.customer.follows),
                ..conv.customer.clone()
            };
            if let Some(names) = &profile.tag_names {
                super::labels::labels_from_profile(tx, &mut changed, names).await?;
            }
            if changed != conv {
                let before = st.conversation_audience(&changed);
                st.put_conversation(tx, changed, before);
            }
            Ok(())
        })
        .await
    }

    pub async fn get_conversation(&self, who: &Account, conv_id: &str) -> HubResult<Conversation> {
        self.read(|st| visible_conversation(st, who, conv_id)).await
    }

    pub async fn list_conversations(
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
        let after = cursor.map(parse_cursor).transpose()?;
        let after = after.as_ref().map(|(k, id)| (*k, id.as_str()));
        // Only the waiting queue depends on pages and rules (from the cache, briefly); mine and
        // all are read from the database alone, so they never wait for a change in progress.
        let pages = match view {
            View::Unclaimed => self.read(|st| st.pages_waiting_for(who)).await,
            _ => None,
        };
        let list = match view {
            View::Mine => List::AssignedTo(&who.id),
            View::Unclaimed => List::Waiting(pages.as_deref()),
            View::All => List::All,
        };
        // One more than asked: whether there is a next page.
        let mut items = self
            .db
            .conversation_page(list, after, limit as i64 + 1)
            .await
            .map_err(store_error)?;
        let next_cursor = (items.len() > limit).then(|| {
            items.truncate(limit);
            let (k, id) = sort_key(view, items.last().expect("limit is at least 1"));
            format!("{k}:{id}")
        });
        Ok(wire::Page { items, next_cursor })
    }

    /// How many conversations each view holds for `who`, counted by the views' indexes.
    pub async fn counts(&self, who: &Account) -> HubResult<wire::Counts> {
        let pages = self.read(|st| st.pages_waiting_for(who)).await;
        let count = |list| async { self.db.conversation_count(list).await.map_err(store_error) };
        Ok(wire::Counts {
            mine: count(List::AssignedTo(&who.id)).await?,
            unclaimed: count(List::Waiting(pages.as_deref())).await?,
            all: if who.is_admin() {
                count(List::All).await?
            } else {
                0
            },
        })
    }

    /// Messages before `before` (a message id) in the thread's time order, the newest `limit`,
    /// returned oldest first.
    pub async fn list_messages(
        &self,
        who: &Account,
        conv_id: &str,
        before: Option<&str>,
        limit: usize,
    ) -> HubResult<wire::Page<Message>> {
        self.get_conversation(who, conv_id).await?;
        let limit = limit.clamp(1, 500);
        let before = match before {
            Some(b) => {
                let m = self
                    .db
                    .message(b)
                    .await
                    .map_err(store_error)?
                    .filter(|m| m.conversation_id == conv_id)
                    .ok_or_else(|| {
                        HubError::BadRequest(format!(
                            "before: {b:?} is not a message of this conversation"
                        ))
                    })?;
                let (at, n) = m.thread_order();
                Some((at, n as i64))
            }
            None => None,
        };
        let mut items = self
            .db
            .thread(conv_id, before, limit as i64 + 1)
            .await
            .map_err(store_error)?;
        let more = items.len() > limit;
        items.truncate(limit);
        items.reverse();
        let next_cursor = if more {
            items.first().map(|m| m.id.clone())
        } else {
            None
        };
        Ok(wire::Page { items, next_cursor })
    }

    pub async fn message(&self, id: &str) -> HubResult<Message> {
        self.db
            .message(id)
            .await
            .map_err(store_error)?
            .ok_or_else(|| HubError::NotFound(format!("message {id} not found")))
    }

    /// Replies waiting to be sent, oldest first.
    pub async fn outbound_jobs(&self) -> HubResult<Vec<OutboundJob>> {
        let rows = self.db.jobs().await.map_err(store_error)?;
        rows.into_iter().map(OutboundJob::from_row).collect()
    }

    /// Takes up to `limit` due jobs for `lease_ms` (see `Db::take_jobs`): each with whether an
    /// earlier taker died while sending it (Zalo may have it).
    pub async fn take_jobs(
        &self,
        lease_ms: Ms,
        limit: usize,
    ) -> HubResult<Vec<(OutboundJob, bool)>> {
        let taken = self.db.take_jobs(now_ms(), lease_ms, limit as i64).await;
        taken
            .map_err(store_error)?
            .into_iter()
            .map(|t| {
                let orphaned = t.orphaned_lease > 0 && t.sending != 0;
                let row = (t.message_id, t.conversation_id, t.attempts, 0, t.attachment);
                Ok((OutboundJob::from_row(row)?, orphaned))
            })
            .collect()
    }

    /// The taken jobs' messages go to Zalo now: should this hub die before recording how they
    /// ended, they are not sent again blindly.
    pub async fn mark_sending(&self, message_ids: &[String]) -> HubResult<()> {
        self.db.mark_sending(message_ids).await.map_err(store_error)
    }

    /// The job as stored now (`None` once finished).
    pub async fn outbound_job(&self, message_id: &str) -> HubResult<Option<OutboundJob>> {
        let row = self.db.job(message_id).await.map_err(store_error)?;
        row.map(OutboundJob::from_row).transpose()
    }

    /// Where a job's attachment bytes are (the sender streams them from there).
    pub fn blob_path(&self, blob: &str) -> std::path::PathBuf {
        self.blobs.path(blob)
    }

    pub async fn reschedule_job(&self, job: OutboundJob) -> HubResult<()> {
        self.write(async |_, tx| {
            tx.jobs.insert(job.message_id.clone(), Some(job));
            Ok(())
        })
        .await
    }

    /// Records the outcomes of sends and removes their jobs, in one transaction. A message that
    /// no longer exists (its page was deleted meanwhile) is skipped.
    pub async fn finish_jobs(&self, finished: &[(OutboundJob, SendOutcome)]) -> HubResult<()> {
        self.write(async |st, tx| {
            for (job, outcome) in finished {
                let message_id = job.message_id.as_str();
                // Whatever happens, the job is finished: a job is never retried forever.
                tx.jobs.insert(message_id.to_string(), None);
                let mut msg = match load_message(tx, message_id).await {
                    Ok(m) => m,
                    Err(HubError::NotFound(_)) => continue,
                    Err(e) => return Err(e),
                };
                let conn_id = st
                    .conversations
                    .get(&msg.conversation_id)
                    .map(|c| c.connection_id.clone())
                    .unwrap_or_default();
                match outcome {
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
                        tx.unknown.insert(msg.id.clone(), (msg.clone(), true));
                    }
                }
                put_message(st, tx, &msg);
            }
            Ok(())
        })
        .await?;
        for (job, outcome) in finished {
            if let Some(a) = &job.attachment {
                self.blobs.remove(&a.blob);
            }
            let c = match outcome {
                SendOutcome::Sent(_) => &self.metrics.outbound_sent,
                SendOutcome::Failed(..) => &self.metrics.outbound_failed,
                SendOutcome::Unknown(_) => &self.metrics.outbound_unknown,
            };
            c.inc();
        }
        Ok(())
    }

    /// Replies whose send stayed ambiguous longer than `window` without Zalo's echo become
    /// `failed`, so the agent knows to send them again.
    pub async fn expire_unknown_sends(&self, window: Ms) -> HubResult<usize> {
        let now = now_ms();
        // Read first, write only when a reply is due: the sender calls this every second.
        let waiting = self.db.unknown_sends().await.map_err(store_error)?;
        if waiting.is_empty() {
            return Ok(0);
        }
        let expired = self
            .write(async |st, tx| {
                let mut expired = 0;
                for (id, _) in &waiting {
                    let Ok(mut msg) = load_message(tx, id).await else {
                        continue;
                    };
                    if msg.delivery != Some(Delivery::Unknown) {
                        tx.unknown.insert(msg.id.clone(), (msg, false));
                    } else if now - msg.created_at > window {
                        tx.unknown.insert(msg.id.clone(), (msg.clone(), false));
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

/// Zalo took our reply (its answer, or its echo): record its id; a receipt may have come first.
pub(super) fn mark_sent(tx: &mut Tx, conn_id: &str, msg: &mut Message, zalo_id: &str) {
    msg.zalo_msg_id = Some(zalo_id.to_string());
    if msg.delivery.is_none_or(|d| d < Delivery::Sent) {
        msg.delivery = Some(Delivery::Sent);
    }
    if msg.error_code == Some(crate::zalo::AMBIGUOUS) {
        msg.error_code = None;
        msg.error_reason = None;
        tx.unknown.insert(msg.id.clone(), (msg.clone(), false));
    }
    tx.zalo_ids
        .insert((conn_id.to_string(), zalo_id.to_string()), msg.id.clone());
}

/// A message as this change sees it: its own writes first, then the database.
pub(super) async fn load_message(tx: &mut Tx, id: &str) -> HubResult<Message> {
    if let Some((_, m)) = tx.messages.get(id) {
        return Ok(m.clone());
    }
    tx.db
        .message(id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| HubError::NotFound(format!("message {id} not found")))
}

/// The message with this Zalo id on this page, as this change sees it.
pub(super) async fn message_by_zalo_id(
    tx: &mut Tx,
    conn_id: &str,
    zalo_id: &str,
) -> HubResult<Option<MessageId>> {
    let key = (conn_id.to_string(), zalo_id.to_string());
    if let Some(id) = tx.zalo_ids.get(&key) {
        return Ok(Some(id.clone()));
    }
    tx.db
        .message_id_by_zalo_id(conn_id, zalo_id)
        .await
        .map_err(store_error)
}

/// Moves an outbound message's delivery state forward (never back, never out of `failed`).
pub(super) async fn apply_delivery(
    st: &State,
    tx: &mut Tx,
    conn_id: &str,
    zalo_msg_id: &str,
    state: Delivery,
) -> HubResult<bool> {
    let Some(id) = message_by_zalo_id(tx, conn_id, zalo_msg_id).await? else {
        return Ok(false);
    };
    let mut msg = load_message(tx, &id).await?;
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
    let conv = st.conversations.get(&msg.conversation_id);
    let conn_id = conv.map(|c| c.connection_id.clone()).unwrap_or_default();
    if let Some(zid) = &msg.zalo_msg_id {
        tx.zalo_ids
            .insert((conn_id.clone(), zid.clone()), msg.id.clone());
    }
    tx.messages.insert(msg.id.clone(), (conn_id, msg.clone()));
    let audience = conv
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
pub(super) fn visible_conversation(
    st: &State,
    who: &Account,
    conv_id: &str,
) -> HubResult<Conversation> {
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
async fn reply(
    st: &mut State,
    tx: &mut Tx,
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
    let used = tx.db.message_id_by_client_key(&who.id, conv_id, key).await;
    if let Some(id) = used.map_err(store_error)? {
        return Ok((load_message(tx, &id).await?, false));
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
    // Zalo's file message has no text (images and GIFs carry a caption): the text would be lost.
    if attachment
        .as_ref()
        .is_some_and(|a| a.kind == wire::OutboundKind::File)
        && !text.trim().is_empty()
    {
        return Err(HubError::Invalid(
            "Zalo gửi tệp không kèm chữ — hãy gửi chữ thành tin riêng / a file goes to Zalo \
             without text: send the text as a reply of its own"
                .into(),
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
    tx.jobs.insert(
        id.clone(),
        Some(OutboundJob {
            message_id: id.clone(),
            conversation_id: conv.id.clone(),
            attempts: 0,
            next_attempt_at: now,
            attachment,
        }),
    );
    put_message(st, tx, &msg);
    let before = st.conversation_audience(&conv);
    conv.last_activity_at = now;
    conv.preview = preview_of(&msg);
    conv.unread.remove(&who.id);
    st.put_conversation(tx, conv, before);
    Ok((msg, true))
}

/// The accounts `keep` keeps, as a colleague is shown to another (no email), by username.
pub(super) fn colleagues_where(
    st: &State,
    keep: impl Fn(&Account) -> bool,
) -> Vec<wire::TransferTarget> {
    let mut out: Vec<wire::TransferTarget> = st
        .accounts
        .values()
        .filter(|a| keep(a))
        .map(wire::TransferTarget::from)
        .collect();
    out.sort_by_key(|a| a.username.to_lowercase());
    out
}

/// An attachment as it came (base64): its kind, a file name fit to show, and its bytes; refused
/// when it is not base64 or larger than Zalo takes (now rather than when it is sent).
pub(super) fn attachment_bytes(
    a: OutboundAttachment,
) -> HubResult<(wire::OutboundKind, String, Vec<u8>)> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&a.content_base64)
        .map_err(|_| HubError::Invalid("attachment content_base64 is not valid base64".into()))?;
    let limit = a.kind.upload_limit();
    if bytes.len() > limit {
        return Err(HubError::Invalid(format!(
            "Tệp vượt quá giới hạn của Zalo / larger than Zalo takes ({} KB; at most {} MB)",
            bytes.len() >> 10,
            limit >> 20
        )));
    }
    Ok((a.kind, crate::model::text::file_name(&a.name), bytes))
}

pub(crate) fn preview_of(m: &Message) -> String {
    let body = if m.text.is_empty() {
        format!("[{}]", m.kind.as_str())
    } else {
        m.text.clone()
    };
    body.chars().take(120).collect()
}

pub(super) async fn ingest(
    st: &mut State,
    tx: &mut Tx,
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
        if let Some(existing) = message_by_zalo_id(tx, &conn.id, zid).await? {
            metrics.webhooks_duplicate.inc();
            return Ok(Ingested::Duplicate {
                message_id: existing,
            });
        }
    }
    let now = now_ms();
    let existing = st
        .customer_conversation(&conn.id, &msg.customer_user_id)
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
                    labels: vec![],
                    follows: None,
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
