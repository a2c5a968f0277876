//! The hub's core: every change runs as one database transaction under the database's write
//! lock (see `store::sql::write`), and its events are published only after it commits. Memory
//! holds a cache of accounts, pages, rules and conversations, derived from committed data and
//! kept current from the event log (its own changes, and other hubs' as they commit); messages,
//! jobs and tokens are read from the database.

use crate::model::*;
use crate::routing::{self, visibility, Page};
use crate::store::sql::events::LoggedEvent;
use crate::store::sql::write::WriteTx;
use crate::store::sql::Db;
use crate::wire::{ConnectionView, Event, EventBody, RuleRef};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{broadcast, Notify, RwLock};

mod admin;
pub mod batch;
pub use admin::{OaInfo, PendingConsent};
mod conversations;
mod customers;
mod health;
mod import;
pub mod labels;
mod metrics;
mod notes;
mod quick_replies;
mod search;
mod webhooks;

pub use conversations::{Inbound, Ingested, OutboundJob, SendOutcome};
pub use health::Health;
pub use import::{import_sled, Imported};
pub use metrics::Metrics;
pub use webhooks::{DeadWebhook, WebhookOutcome};

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{message}")]
    Conflict {
        code: &'static str,
        message: String,
        winner: Option<Box<Account>>,
        rule: Option<Box<RuleRef>>,
    },
    /// Well-formed but unacceptable input (422).
    #[error("{0}")]
    Invalid(String),
    /// A request that does not make sense, e.g. a cursor that is not one (400).
    #[error("{0}")]
    BadRequest(String),
    /// Too much is waiting already; try again later (429).
    #[error("{message}")]
    TooMany { code: &'static str, message: String },
    /// The database cannot be reached or is full: nothing was changed; try again (503 / 507).
    #[error("{message}")]
    Store { full: bool, message: String },
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<sqlx::Error> for HubError {
    fn from(e: sqlx::Error) -> Self {
        store_error(e)
    }
}

/// The database error behind a failure, if one is.
fn sqlx_cause(e: &anyhow::Error) -> Option<&sqlx::Error> {
    use crate::store::sql::StoreError;
    e.chain().find_map(|cause| {
        cause
            .downcast_ref::<sqlx::Error>()
            .or_else(|| match cause.downcast_ref::<StoreError>() {
                Some(StoreError::Other(inner)) => inner.downcast_ref::<sqlx::Error>(),
                _ => None,
            })
    })
}

/// Sorts a database failure: unreachable or full (the caller may retry) or a bug.
fn store_error(e: impl Into<anyhow::Error>) -> HubError {
    let e = e.into();
    let Some(sql) = sqlx_cause(&e) else {
        return HubError::Internal(e);
    };
    let full = match sql {
        sqlx::Error::Database(d) => {
            // SQLITE_FULL (13) and PostgreSQL's disk_full (53100).
            matches!(d.code().as_deref(), Some("13") | Some("53100"))
                || d.message().contains("database or disk is full")
        }
        _ => false,
    };
    let unavailable = matches!(
        sql,
        sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Protocol(_)
    ) || matches!(sql, sqlx::Error::Database(d) if d.code().is_some_and(|c| c.starts_with("57P") || c.starts_with("08")));
    if full || unavailable {
        HubError::Store {
            full,
            message: format!("{e:#}"),
        }
    } else {
        HubError::Internal(e)
    }
}

pub type HubResult<T> = Result<T, HubError>;

/// Audience marker: every account may receive the event.
pub const EVERYONE: &str = "*";

/// An event as the log keeps it: with the accounts (besides admins) allowed to receive it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredEvent {
    pub event: Event,
    pub audience: Vec<AccountId>,
    /// The stream frame, serialised once however many consoles receive it.
    #[serde(skip)]
    frame: std::sync::OnceLock<String>,
}

impl StoredEvent {
    pub fn new(event: Event, audience: Vec<AccountId>) -> StoredEvent {
        StoredEvent {
            event,
            audience,
            frame: Default::default(),
        }
    }

    /// The event as the log's row has it.
    fn from_logged(e: LoggedEvent) -> anyhow::Result<StoredEvent> {
        Ok(StoredEvent::new(
            Event {
                seq: e.seq as u64,
                at: e.at,
                body: serde_json::from_str(&e.body)?,
            },
            serde_json::from_str(&e.audience)?,
        ))
    }

    /// `{"type":"event","event":…}`, as `wire::Frame::Event` serialises.
    pub fn frame_json(&self) -> &str {
        self.frame.get_or_init(|| {
            let event = serde_json::to_string(&self.event).expect("events serialise");
            format!("{{\"type\":\"event\",\"event\":{event}}}")
        })
    }
}

/// The numbers behind new ids, as the `counters` table has them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Counters {
    account: u64,
    connection: u64,
    rule: u64,
    conversation: u64,
    message: u64,
}

impl Counters {
    const NAMES: [&'static str; 5] = ["account", "connection", "rule", "conversation", "message"];

    fn get(&self, name: &str) -> u64 {
        match name {
            "account" => self.account,
            "connection" => self.connection,
            "rule" => self.rule,
            "conversation" => self.conversation,
            _ => self.message,
        }
    }

    fn set(&mut self, name: &str, value: u64) {
        match name {
            "account" => self.account = value,
            "connection" => self.connection = value,
            "rule" => self.rule = value,
            "conversation" => self.conversation = value,
            "message" => self.message = value,
            _ => {}
        }
    }
}

pub struct State {
    accounts: BTreeMap<AccountId, Account>,
    connections: BTreeMap<ConnectionId, Connection>,
    rules: BTreeMap<RuleId, Rule>,
    conversations: HashMap<ConversationId, Conversation>,
    by_customer: HashMap<(ConnectionId, String), ConversationId>,
    /// Each account's assigned conversations (an agent's search reads its 2,000 of 20,000
    /// without visiting every conversation).
    by_assignee: HashMap<AccountId, HashSet<ConversationId>>,
    counters: Counters,
    /// The last event this cache includes.
    applied: u64,
    /// A change began and neither committed nor was undone (its future was dropped midway, e.g.
    /// the client went away): memory may hold what the database does not, so it is read again
    /// before anyone uses it.
    stale: bool,
}

impl State {
    fn from_snapshot(s: crate::store::sql::write::Snapshot) -> State {
        let mut st = State {
            accounts: s.accounts.into_iter().map(|a| (a.id.clone(), a)).collect(),
            connections: s
                .connections
                .into_iter()
                .map(|c| (c.id.clone(), c))
                .collect(),
            rules: s.rules.into_iter().map(|r| (r.id.clone(), r)).collect(),
            conversations: HashMap::new(),
            by_customer: HashMap::new(),
            by_assignee: HashMap::new(),
            counters: Counters::default(),
            applied: s.head.max(0) as u64,
            stale: false,
        };
        for (name, value) in &s.counters {
            st.counters.set(name, (*value).max(0) as u64);
        }
        for c in s.conversations {
            st.keep_conversation(c);
        }
        st
    }

    /// Brings the cache up to a committed event (another hub's, or this one's own).
    fn apply(&mut self, event: &Event) {
        match &event.body {
            EventBody::Conversation { conversation: c } => self.keep_conversation(c.clone()),
            EventBody::Message { .. } => {}
            EventBody::Connection { connection: v, .. } => {
                let conn = Connection {
                    id: v.id.clone(),
                    oa_id: v.oa_id.clone(),
                    name: v.name.clone(),
                    avatar: v.avatar.clone(),
                    category: v.category.clone(),
                    connector: v.connector.clone(),
                    connected_at: v.connected_at,
                    last_connected_at: v.last_connected_at,
                    chat_mode: v.chat_mode,
                    rule_id: v.rule_id.clone(),
                    status: v.status,
                    status_reason: v.status_reason.clone(),
                    tokens: TokenPair {
                        access_expires_at: v.token_expires_at.unwrap_or(0),
                        ..Default::default()
                    },
                    last_event_at: v.last_event_at,
                    last_error: v.last_error.clone(),
                };
                self.connections.insert(conn.id.clone(), conn);
            }
            EventBody::ConnectionRemoved { id } => self.remove_connection(id),
            EventBody::Rule { rule } => {
                self.rules.insert(rule.id.clone(), rule.clone());
            }
            EventBody::RuleRemoved { id } => {
                self.rules.remove(id);
            }
            EventBody::Account { account } => {
                self.accounts.insert(account.id.clone(), account.clone());
            }
            // Read from the database when asked for, not kept here.
            EventBody::QuickReply { .. } | EventBody::QuickReplyRemoved { .. } => {}
        }
        self.applied = self.applied.max(event.seq);
    }

    fn remove_connection(&mut self, id: &str) {
        self.connections.remove(id);
        self.conversations.retain(|_, c| c.connection_id != id);
        self.by_customer.retain(|(page, _), _| page != id);
        let kept = &self.conversations;
        for assigned in self.by_assignee.values_mut() {
            assigned.retain(|c| kept.contains_key(c));
        }
    }

    /// The cache's copy of a conversation, with the indexes that find it.
    fn keep_conversation(&mut self, c: Conversation) {
        let before = self
            .conversations
            .get(&c.id)
            .and_then(|b| b.assignee.as_ref());
        if let Some(a) = before.filter(|&a| Some(a) != c.assignee.as_ref()) {
            if let Some(assigned) = self.by_assignee.get_mut(a) {
                assigned.remove(&c.id);
            }
        }
        if let Some(a) = &c.assignee {
            let assigned = self.by_assignee.entry(a.clone()).or_default();
            assigned.insert(c.id.clone());
        }
        self.by_customer.insert(
            (c.connection_id.clone(), c.customer.user_id.clone()),
            c.id.clone(),
        );
        self.conversations.insert(c.id.clone(), c);
    }
}

/// One change in the making: the open transaction, the records it writes (written together at
/// commit, a few multi-row statements for a whole webhook batch) and its events.
pub struct Tx {
    db: WriteTx,
    counters_at_begin: Counters,
    accounts: BTreeMap<AccountId, Account>,
    tokens: Vec<(AccountId, String)>,
    connections: BTreeMap<ConnectionId, Connection>,
    connection_tokens: BTreeMap<ConnectionId, TokenPair>,
    rules: BTreeMap<RuleId, Rule>,
    cursors: BTreeMap<RuleId, AccountId>,
    conversations: BTreeMap<ConversationId, Conversation>,
    /// Messages with their page's id.
    messages: BTreeMap<MessageId, (ConnectionId, Message)>,
    /// (page, Zalo message id) → message, for the messages of this change.
    zalo_ids: HashMap<(ConnectionId, String), MessageId>,
    /// Reply jobs to queue or re-schedule (`Some`) or remove (`None`).
    jobs: BTreeMap<MessageId, Option<OutboundJob>>,
    /// Sends whose outcome is unknown: start (`true`) or stop (`false`) waiting for the echo.
    unknown: BTreeMap<MessageId, (Message, bool)>,
    /// Colleagues mentioned in notes: (account, note).
    mentions: Vec<(AccountId, MessageId)>,
    deleted_rules: Vec<RuleId>,
    deleted_connections: Vec<ConnectionId>,
    raw: Vec<(i64, Ms, String)>,
    events: Vec<(EventBody, Vec<AccountId>)>,
    /// Memory was changed directly (not only through the buffers above).
    touched: bool,
}

impl Tx {
    fn new(db: WriteTx, counters: Counters) -> Tx {
        Tx {
            db,
            counters_at_begin: counters,
            accounts: Default::default(),
            tokens: Default::default(),
            connections: Default::default(),
            connection_tokens: Default::default(),
            rules: Default::default(),
            cursors: Default::default(),
            conversations: Default::default(),
            messages: Default::default(),
            zalo_ids: Default::default(),
            jobs: Default::default(),
            unknown: Default::default(),
            mentions: Default::default(),
            deleted_rules: Default::default(),
            deleted_connections: Default::default(),
            raw: Default::default(),
            events: Default::default(),
            touched: false,
        }
    }

    fn emit(&mut self, body: EventBody, audience: Vec<AccountId>) {
        self.events.push((body, audience));
    }

    /// Whether memory may differ from the database if this change is abandoned.
    fn changed_memory(&self) -> bool {
        self.touched
            || !self.events.is_empty()
            || !self.accounts.is_empty()
            || !self.connections.is_empty()
            || !self.rules.is_empty()
            || !self.cursors.is_empty()
            || !self.conversations.is_empty()
    }

    /// Writes the buffered records, parents before children, then the events.
    async fn flush(&mut self, st: &State, now: Ms) -> anyhow::Result<Vec<LoggedEvent>> {
        let db = &mut self.db;
        for a in self.accounts.values() {
            db.save_account(a).await?;
        }
        for (account, hash) in &self.tokens {
            db.save_token(account, hash, now).await?;
        }
        for c in self.connections.values() {
            db.save_connection(c).await?;
        }
        for (id, t) in &self.connection_tokens {
            db.save_tokens(id, t, now).await?;
        }
        for r in self.rules.values() {
            db.save_rule(r).await?;
        }
        for (rule, cursor) in &self.cursors {
            if !self.rules.contains_key(rule) {
                db.set_cursor(rule, cursor).await?;
            }
        }
        let convs: Vec<&Conversation> = self.conversations.values().collect();
        if !convs.is_empty() {
            db.save_conversations(&convs).await?;
        }
        let msgs: Vec<(&str, &Message)> = self
            .messages
            .values()
            .map(|(page, m)| (page.as_str(), m))
            .collect();
        if !msgs.is_empty() {
            db.save_messages(&msgs).await?;
        }
        for (id, job) in &self.jobs {
            match job {
                Some(j) => db.save_job(&j.row()).await?,
                None => db.delete_job(id).await?,
            }
        }
        for (msg, waiting) in self.unknown.values() {
            db.set_unknown_send(msg, *waiting).await?;
        }
        for (account, message) in &self.mentions {
            let conv = &self.messages[message].1.conversation_id;
            db.save_mention(account, message, conv).await?;
        }
        for id in &self.deleted_rules {
            db.delete_rule(id).await?;
        }
        for id in &self.deleted_connections {
            db.delete_connection(id).await?;
        }
        if !self.raw.is_empty() {
            db.store_raw_events(&self.raw).await?;
        }
        for name in Counters::NAMES {
            let value = st.counters.get(name);
            if value != self.counters_at_begin.get(name) {
                db.set_counter(name, value as i64).await?;
            }
        }
        let events = std::mem::take(&mut self.events)
            .into_iter()
            .map(|(body, audience)| {
                let body = serde_json::to_string(&body).expect("events serialise");
                let audience = serde_json::to_string(&audience).expect("audiences serialise");
                (now, audience, body)
            })
            .collect();
        db.append_events(events).await
    }
}

pub struct Hub {
    db: Arc<Db>,
    state: RwLock<State>,
    live: broadcast::Sender<Arc<StoredEvent>>,
    /// The last event published live (= the cache's), for streams joining.
    published: AtomicU64,
    retention: u64,
    pub metrics: Arc<Metrics>,
    /// Woken when an outbound reply is queued (the Zalo sender listens).
    pub outbox_ready: Arc<Notify>,
    /// Woken when a label change is queued for Zalo (the tag sender listens).
    pub tags_ready: Arc<Notify>,
    /// The background workers' heartbeats, for `/healthz`.
    pub health: Health,
    /// Accounts whose token was just replaced: their open streams check theirs and close.
    pub credentials_changed: broadcast::Sender<AccountId>,
    /// How far apart a reply and Zalo's `oa_send_*` echo of it may be (`[zalo] echo_window_secs`).
    echo_window_ms: std::sync::atomic::AtomicI64,
    /// Attachment bytes of replies not yet sent, one file each.
    blobs: Arc<crate::store::blobs::Blobs>,
    /// `[server] max_pending_attachment_bytes`.
    max_pending_attachment_bytes: AtomicU64,
    /// Webhooks waiting for the intake batch that stores and applies them.
    intake: webhooks::Intake,
}

/// Blobs no job refers to (a reply refused, or interrupted by a crash after its bytes were
/// written) are removed at start.
async fn settle_blobs(db: &Db, blobs: &crate::store::blobs::Blobs) -> anyhow::Result<()> {
    let referenced: HashSet<String> = db
        .job_attachments()
        .await?
        .into_iter()
        .filter_map(|a| serde_json::from_str::<conversations::JobAttachment>(&a).ok())
        .map(|a| a.blob)
        .collect();
    for name in blobs.names()? {
        if !referenced.contains(&name) {
            blobs.remove(&name);
        }
    }
    Ok(())
}

pub fn hash_token(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

fn new_token() -> String {
    format!("sop_{}", hex::encode(rand::random::<[u8; 24]>()))
}

impl Hub {
    /// Loads the hub's cache from the database and starts following the event log.
    /// `retention` is how many events the log keeps for reconnecting consoles; `data_dir` holds
    /// the attachments waiting to be sent (`attachments/`).
    pub async fn open(
        db: Arc<Db>,
        data_dir: &std::path::Path,
        retention: u64,
    ) -> anyhow::Result<Arc<Hub>> {
        let blobs = Arc::new(crate::store::blobs::Blobs::open(
            &data_dir.join("attachments"),
        )?);
        settle_blobs(&db, &blobs).await?;
        let st = State::from_snapshot(db.load().await?);
        let metrics = Arc::new(Metrics::default());
        metrics
            .webhooks_dead
            .set(db.dead_webhook_count().await? as i64);
        tracing::info!(
            accounts = st.accounts.len(),
            connections = st.connections.len(),
            rules = st.rules.len(),
            conversations = st.conversations.len(),
            head = st.applied,
            "hub state loaded"
        );
        let hub = Arc::new(Hub {
            db,
            published: AtomicU64::new(st.applied),
            state: RwLock::new(st),
            live: broadcast::channel(4096).0,
            retention: retention.max(1),
            metrics,
            outbox_ready: Arc::new(Notify::new()),
            tags_ready: Arc::new(Notify::new()),
            health: Health::default(),
            credentials_changed: broadcast::channel(64).0,
            echo_window_ms: std::sync::atomic::AtomicI64::new(600_000),
            blobs,
            max_pending_attachment_bytes: AtomicU64::new(u64::MAX),
            intake: webhooks::Intake::default(),
        });
        tokio::spawn(follow(Arc::downgrade(&hub)));
        Ok(hub)
    }

    pub fn set_max_pending_attachment_bytes(&self, bytes: u64) {
        self.max_pending_attachment_bytes
            .store(bytes, Ordering::Relaxed);
    }

    pub fn max_pending_attachment_bytes(&self) -> u64 {
        self.max_pending_attachment_bytes.load(Ordering::Relaxed)
    }

    pub fn set_echo_window(&self, window: std::time::Duration) {
        self.echo_window_ms
            .store(window.as_millis() as i64, Ordering::Relaxed);
    }

    pub fn echo_window(&self) -> Ms {
        self.echo_window_ms.load(Ordering::Relaxed)
    }

    pub fn db(&self) -> &Arc<Db> {
        &self.db
    }

    /// Runs one change as one transaction and returns once it is committed (durable: SQLite
    /// `synchronous=FULL`, PostgreSQL `synchronous_commit=on`). Its events are published after
    /// the commit; when it fails, nothing of it is visible, in the database or in memory.
    pub async fn write<R>(
        &self,
        f: impl AsyncFnOnce(&mut State, &mut Tx) -> HubResult<R>,
    ) -> HubResult<R> {
        let mut st = self.state.write().await;
        if st.stale {
            self.reload(&mut st, "a change was abandoned midway")
                .await?;
        }
        let db = self.db.begin_write().await?;
        st.stale = true;
        let mut tx = Tx::new(db, st.counters.clone());
        if let Err(e) = self.catch_up(&mut st, &mut tx).await {
            tx.db.rollback().await;
            st.stale = false;
            return Err(e);
        }
        let r = match f(&mut st, &mut tx).await {
            Ok(r) => r,
            Err(e) => {
                let reload = tx.changed_memory();
                tx.db.rollback().await;
                if reload {
                    self.rolled_back(&mut st, &e).await;
                } else {
                    st.stale = false;
                }
                return Err(e);
            }
        };
        let now = now_ms();
        let written = match tx.flush(&st, now).await {
            Ok(logged) => match tx.db.commit().await {
                Ok(()) => Ok(logged),
                Err(e) => Err(HubError::from(e)),
            },
            Err(e) => {
                tx.db.rollback().await;
                Err(store_error(e))
            }
        };
        let logged = match written {
            Ok(logged) => logged,
            Err(e) => {
                self.rolled_back(&mut st, &e).await;
                return Err(e);
            }
        };
        st.stale = false;
        if let (Some(first), Some(last)) = (logged.first(), logged.last()) {
            let (first, last) = (first.seq, last.seq);
            self.publish(&mut st, logged);
            drop(st);
            self.db.ring().await;
            self.trim_log(first, last).await;
        }
        Ok(r)
    }

    /// Takes in what other hubs (or `sop admin`) committed since this cache was current, and
    /// the numbers that move without events; called under the write lock.
    async fn catch_up(&self, st: &mut State, tx: &mut Tx) -> HubResult<()> {
        let missed = tx
            .db
            .events_since(st.applied as i64)
            .await
            .map_err(store_error)?;
        if !missed.is_empty() {
            self.publish(st, missed);
        }
        let (counters, cursors) = tx.db.counters_and_cursors().await.map_err(store_error)?;
        for (name, value) in counters {
            st.counters.set(&name, value.max(0) as u64);
        }
        for (rule, cursor) in cursors {
            if let Some(r) = st.rules.get_mut(&rule) {
                r.cursor = cursor;
            }
        }
        tx.counters_at_begin = st.counters.clone();
        Ok(())
    }

    /// Applies committed events to the cache and sends them to the streams, in log order.
    fn publish(&self, st: &mut State, logged: Vec<LoggedEvent>) {
        for e in logged {
            if e.seq as u64 <= st.applied {
                continue;
            }
            let seq = e.seq;
            let stored = match StoredEvent::from_logged(e) {
                Ok(s) => Arc::new(s),
                Err(e) => {
                    // Skipped: streams see the gap and re-sync from the REST API.
                    tracing::error!(seq, "unreadable event in the log: {e:#}");
                    st.applied = seq as u64;
                    continue;
                }
            };
            st.apply(&stored.event);
            // Advance `published` before sending: a stream that subscribes and then reads
            // `published` either replays this event from the log or receives it live.
            self.published.store(st.applied, Ordering::SeqCst);
            self.metrics.events_total.inc();
            let _ = self.live.send(stored);
        }
    }

    /// Memory never runs ahead of the database: after a change that failed, the cache is read
    /// back from what is committed (rare, so a full reload is affordable).
    async fn rolled_back(&self, st: &mut State, cause: &HubError) {
        if let Err(e) = self.reload(st, &format!("a change failed: {cause}")).await {
            tracing::error!("cannot reload the state after a failed change ({cause}): {e}");
        }
    }

    /// Reads the cache again from what is committed. Until that works, `stale` stays set and
    /// every read and write tries again.
    async fn reload(&self, st: &mut State, why: &str) -> HubResult<()> {
        let snapshot = self.db.load().await.map_err(store_error)?;
        let applied = st.applied;
        *st = State::from_snapshot(snapshot);
        // Events between the old and new position were not published here: streams fill the
        // gap from the log when the next event arrives.
        if st.applied > applied {
            self.published.store(st.applied, Ordering::SeqCst);
        }
        tracing::warn!("state read again from the database ({why})");
        Ok(())
    }

    /// Drops the oldest events beyond the retention, each time the head passes a multiple of 256.
    async fn trim_log(&self, first: i64, last: i64) {
        let retention = self.retention as i64;
        if last / 256 == (first - 1) / 256 || last <= retention {
            return;
        }
        if let Err(e) = self.db.trim_events(last - retention + 1).await {
            tracing::warn!("cannot trim the event log: {e:#}");
        }
    }

    /// Reads the cache (never a change in the making: a stale cache is read again first).
    pub async fn read<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        let st = self.state.read().await;
        if !st.stale {
            return f(&st);
        }
        drop(st);
        let mut st = self.state.write().await;
        if st.stale {
            if let Err(e) = self.reload(&mut st, "a change was abandoned midway").await {
                tracing::error!("cannot read the state again: {e}");
            }
        }
        f(&st)
    }

    /// Closes the database's connections (graceful shutdown); gives up after 5 s, so a connection
    /// someone still holds cannot keep the process from stopping.
    pub async fn shutdown(&self) {
        let closing = tokio::time::timeout(std::time::Duration::from_secs(5), self.db.close());
        if closing.await.is_err() {
            tracing::warn!("the database's connections did not close within 5 s; stopping anyway");
        }
    }

    // ----- the event log, for the stream -----

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<StoredEvent>> {
        self.live.subscribe()
    }
    /// Highest sequence number already published live (and durable).
    pub fn published_seq(&self) -> u64 {
        self.published.load(Ordering::SeqCst)
    }
    pub async fn oldest_seq(&self) -> HubResult<u64> {
        let oldest = self.db.oldest_event().await.map_err(store_error)?;
        Ok(oldest.map_or(self.published_seq() + 1, |s| s as u64))
    }
    /// Events with `after < seq <= upto`, oldest first, at most `limit`.
    pub async fn read_events(
        &self,
        after: u64,
        upto: u64,
        limit: usize,
    ) -> HubResult<Vec<Arc<StoredEvent>>> {
        if upto <= after {
            return Ok(vec![]);
        }
        let rows = self
            .db
            .events_since(after as i64, limit.min(i32::MAX as usize) as i64)
            .await
            .map_err(store_error)?;
        // A record that does not read back is left out; the stream sees the gap and re-syncs.
        Ok(rows
            .into_iter()
            .filter(|e| e.seq as u64 <= upto)
            .filter_map(|e| {
                let seq = e.seq;
                match StoredEvent::from_logged(e) {
                    Ok(e) => Some(Arc::new(e)),
                    Err(e) => {
                        tracing::error!(seq, "unreadable event: {e:#}");
                        None
                    }
                }
            })
            .collect())
    }

    /// The account a bearer token belongs to, as committed.
    pub async fn authenticate(&self, token: &str) -> HubResult<Option<Account>> {
        self.db
            .account_by_token(&hash_token(token))
            .await
            .map_err(store_error)
    }
}

/// Keeps the cache current with what other hubs commit: woken by the doorbell (see
/// `store::sql::feed`), or once a second regardless. Ends with the hub.
async fn follow(hub: std::sync::Weak<Hub>) {
    let Some(db) = hub.upgrade().map(|h| h.db.clone()) else {
        return;
    };
    let (ring, mut rung) = tokio::sync::mpsc::channel(1);
    tokio::spawn(crate::store::sql::feed::doorbell(db.clone(), ring));
    loop {
        let Some(hub) = hub.upgrade() else { return };
        let after = hub.published_seq() as i64;
        match db.events_since(after, 1000).await {
            Ok(events) if !events.is_empty() => {
                let mut st = hub.state.write().await;
                hub.publish(&mut st, events);
                continue;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("cannot read the event log: {e:#}"),
        }
        drop(hub);
        tokio::select! {
            r = rung.recv() => if r.is_none() { return },
            _ = tokio::time::sleep(crate::store::sql::feed::POLL) => {}
        }
    }
}

/// A rule's queue order: longest waiting first.
fn queue_order(c: &Conversation) -> (Ms, &str) {
    (c.waiting_at(), c.id.as_str())
}

/// Who may see what (DESIGN §3 "Visibility").
impl State {
    pub fn account(&self, id: &str) -> Option<&Account> {
        self.accounts.get(id)
    }
    pub fn accounts(&self) -> impl Iterator<Item = &Account> {
        self.accounts.values()
    }
    pub fn connection(&self, id: &str) -> Option<&Connection> {
        self.connections.get(id)
    }
    pub fn connections(&self) -> impl Iterator<Item = &Connection> {
        self.connections.values()
    }
    pub fn connection_by_oa(&self, oa_id: &str) -> Option<&Connection> {
        self.connections.values().find(|c| c.oa_id == oa_id)
    }
    pub fn rule(&self, id: &str) -> Option<&Rule> {
        self.rules.get(id)
    }
    pub fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.rules.values()
    }
    pub fn conversation(&self, id: &str) -> Option<&Conversation> {
        self.conversations.get(id)
    }

    /// The conversation with Zalo user `user` on page `page`, if they have one.
    pub fn customer_conversation(&self, page: &str, user: &str) -> Option<&Conversation> {
        let id = self
            .by_customer
            .get(&(page.to_string(), user.to_string()))?;
        self.conversations.get(id)
    }
    pub fn conversations(&self) -> impl Iterator<Item = &Conversation> {
        self.conversations.values()
    }

    pub fn find_account(&self, handle: &str) -> Option<&Account> {
        self.accounts.values().find(|a| a.matches_handle(handle))
    }

    fn is_available(&self, id: &str) -> bool {
        self.accounts
            .get(id)
            .is_some_and(|a| a.availability == Availability::Available)
    }

    fn is_admin(&self, id: &str) -> bool {
        self.accounts.get(id).is_some_and(Account::is_admin)
    }

    fn page_of<'a>(&'a self, conn: &'a Connection) -> Page<'a> {
        Page {
            chat_mode: conn.chat_mode,
            connector: &conn.connector,
            rule: conn.rule_id.as_deref().and_then(|r| self.rules.get(r)),
        }
    }

    fn rule_of_connection(&self, conn_id: &str) -> Option<&Rule> {
        self.connections
            .get(conn_id)
            .and_then(|c| c.rule_id.as_deref())
            .and_then(|r| self.rules.get(r))
    }

    /// The page as routing and visibility see it.
    pub fn page_by_id(&self, conn_id: &str) -> Option<Page<'_>> {
        self.connections.get(conn_id).map(|c| self.page_of(c))
    }

    /// The accounts other than admins that may see this conversation (`routing::visibility`).
    pub fn conversation_audience(&self, conv: &Conversation) -> Vec<AccountId> {
        visibility::conversation_audience(conv, self.page_by_id(&conv.connection_id))
    }

    /// The pages whose waiting conversations `who` may see; `None` for every page (admins).
    pub fn pages_waiting_for(&self, who: &Account) -> Option<Vec<ConnectionId>> {
        if who.is_admin() {
            return None;
        }
        let visible = self
            .connections
            .values()
            .filter(|c| visibility::waiting_audience(self.page_of(c)).contains(&who.id));
        Some(visible.map(|c| c.id.clone()).collect())
    }

    pub fn may_see_conversation(&self, who: &Account, conv: &Conversation) -> bool {
        visibility::may_see_conversation(who, conv, self.page_by_id(&conv.connection_id))
    }

    pub fn may_see_connection(&self, who: &Account, conn: &Connection) -> bool {
        visibility::may_see_page(who, &conn.connector, self.rule_of_connection(&conn.id))
    }

    pub fn may_see_rule(&self, who: &Account, rule: &Rule) -> bool {
        visibility::may_see_rule(who, rule)
    }

    fn connection_audience(&self, conn: &Connection) -> Vec<AccountId> {
        visibility::page_audience(&conn.connector, self.rule_of_connection(&conn.id))
    }

    // ----- writers that keep memory, store and events in step -----

    fn next_id(&mut self, kind: char) -> String {
        let c = &mut self.counters;
        let n = match kind {
            'a' => {
                c.account += 1;
                c.account
            }
            'p' => {
                c.connection += 1;
                c.connection
            }
            'r' => {
                c.rule += 1;
                c.rule
            }
            'c' => {
                c.conversation += 1;
                c.conversation
            }
            _ => {
                c.message += 1;
                c.message
            }
        };
        format!("{kind}{n}")
    }

    /// Saves a conversation and tells everyone who could see it before or can see it now.
    fn put_conversation(
        &mut self,
        tx: &mut Tx,
        conv: Conversation,
        audience_before: Vec<AccountId>,
    ) {
        let mut audience = audience_before;
        audience.extend(self.conversation_audience(&conv));
        audience.sort();
        audience.dedup();
        tx.conversations.insert(conv.id.clone(), conv.clone());
        tx.emit(
            EventBody::Conversation {
                conversation: conv.clone(),
            },
            audience,
        );
        self.keep_conversation(conv);
    }

    fn put_connection(&mut self, tx: &mut Tx, conn: Connection, started_by: Option<AccountId>) {
        tx.connections.insert(conn.id.clone(), conn.clone());
        let view = ConnectionView::from(&conn);
        self.connections.insert(conn.id.clone(), conn);
        let audience = self.connection_audience(&self.connections[&view.id]);
        tx.emit(
            EventBody::Connection {
                connection: view,
                started_by,
            },
            audience,
        );
    }

    /// Persists a connection's bookkeeping (last event time) without telling consoles.
    fn put_connection_quietly(&mut self, tx: &mut Tx, conn: Connection) {
        tx.connections.insert(conn.id.clone(), conn.clone());
        self.connections.insert(conn.id.clone(), conn);
    }

    fn put_rule(&mut self, tx: &mut Tx, rule: Rule, audience_before: Vec<AccountId>) {
        let mut audience = audience_before;
        audience.extend(rule.members.iter().cloned());
        audience.sort();
        audience.dedup();
        tx.rules.insert(rule.id.clone(), rule.clone());
        tx.emit(EventBody::Rule { rule: rule.clone() }, audience);
        self.rules.insert(rule.id.clone(), rule);
    }

    /// Accounts are admin-only in the API (`GET /accounts`), so their events reach admins and the
    /// account itself; colleagues' availability reaches agents through transfer targets.
    fn put_account(&mut self, tx: &mut Tx, account: Account) {
        tx.accounts.insert(account.id.clone(), account.clone());
        tx.emit(
            EventBody::Account {
                account: account.clone(),
            },
            vec![account.id.clone()],
        );
        self.accounts.insert(account.id.clone(), account);
    }

    /// A new bearer token for the account; only its hash is stored.
    fn put_credential(&mut self, tx: &mut Tx, account_id: &str) -> String {
        let token = new_token();
        tx.tokens.push((account_id.to_string(), hash_token(&token)));
        token
    }

    /// Moves a conversation to an assignee (or to the queue) and records why.
    /// The one way a routing decision lands: the conversation goes to `to` (or waits, unclaimed,
    /// when `None`), the rule whose turn chose `to` moves its cursor, and the decision is counted.
    #[allow(clippy::too_many_arguments)]
    fn land(
        &mut self,
        tx: &mut Tx,
        conv: &mut Conversation,
        to: Option<AccountId>,
        by: Option<AccountId>,
        reason: AssignReason,
        turn_of: Option<&str>,
        now: Ms,
        metrics: &Metrics,
    ) {
        match &to {
            Some(to) => {
                metrics.routed_assigned.inc();
                if let Some(rule_id) = turn_of {
                    self.set_rule_cursor(tx, rule_id, to.clone());
                }
            }
            None => {
                metrics.routed_unclaimed.inc();
            }
        }
        conv.land(to, by, reason, now);
    }

    /// Routes a conversation as new on its page.
    fn route(&mut self, tx: &mut Tx, conv: &mut Conversation, now: Ms, metrics: &Metrics) {
        let Some(conn) = self.connections.get(&conv.connection_id) else {
            return;
        };
        let decision = routing::route_new(self.page_of(conn), &|m| self.is_available(m));
        let turn_of = conn.rule_id.clone().filter(|_| decision.cursor.is_some());
        let (to, reason) = match decision.route {
            routing::Route::Assign { to, reason } => (Some(to), reason),
            routing::Route::Unclaimed => (None, AssignReason::Rule),
        };
        self.land(tx, conv, to, None, reason, turn_of.as_deref(), now, metrics);
    }

    /// The cursor is bookkeeping: persisted, not broadcast.
    fn set_rule_cursor(&mut self, tx: &mut Tx, rule_id: &str, cursor: AccountId) {
        if let Some(rule) = self.rules.get_mut(rule_id) {
            if rule.cursor.as_ref() != Some(&cursor) {
                rule.cursor = Some(cursor.clone());
                tx.cursors.insert(rule_id.to_string(), cursor);
            }
        }
    }

    /// Assigns a round-robin rule's waiting conversations, oldest first, to available members.
    fn drain_rule_queue(&mut self, tx: &mut Tx, rule_id: &str, now: Ms, metrics: &Metrics) {
        let Some(rule) = self.rules.get(rule_id) else {
            return;
        };
        let mut queue: Vec<&Conversation> = self
            .conversations
            .values()
            .filter(|c| {
                c.state == ConvState::Unclaimed
                    && c.status == ConvStatus::Open
                    && rule.sources.contains(&c.connection_id)
            })
            .collect();
        queue.sort_by(|a, b| queue_order(a).cmp(&queue_order(b)));
        let ids: Vec<ConversationId> = queue.iter().map(|c| c.id.clone()).collect();
        let (assigned, _) = routing::drain_queue(rule, &ids, &|m| self.is_available(m));
        for (conv_id, to) in assigned {
            let mut conv = self.conversations[&conv_id].clone();
            let before = self.conversation_audience(&conv);
            let reason = AssignReason::Rule;
            self.land(
                tx,
                &mut conv,
                Some(to),
                None,
                reason,
                Some(rule_id),
                now,
                metrics,
            );
            self.put_conversation(tx, conv, before);
        }
    }

    /// Tells accounts that just lost sight of pages' waiting conversations (members removed from
    /// a rule, a rule deleted) about each one, so their consoles drop them.
    fn tell_former_members(&mut self, tx: &mut Tx, pages: &[ConnectionId], former: &[AccountId]) {
        if former.is_empty() {
            return;
        }
        let mut waiting: Vec<Conversation> = self
            .conversations
            .values()
            .filter(|c| c.state == ConvState::Unclaimed && pages.contains(&c.connection_id))
            .cloned()
            .collect();
        waiting.sort_by(|a, b| queue_order(a).cmp(&queue_order(b)));
        for conv in waiting {
            self.put_conversation(tx, conv, former.to_vec());
        }
    }

    fn rule_ref(&self, rule_id: &str) -> Option<Box<RuleRef>> {
        self.rules.get(rule_id).map(|r| {
            Box::new(RuleRef {
                id: r.id.clone(),
                name: r.name.clone(),
            })
        })
    }

    fn resolve_members(&self, handles: &[String]) -> HubResult<Vec<AccountId>> {
        let mut ids = Vec::new();
        let mut unknown = Vec::new();
        for h in handles {
            match self.find_account(h) {
                Some(a) => {
                    if !ids.contains(&a.id) {
                        ids.push(a.id.clone())
                    }
                }
                None => unknown.push(h.trim().to_string()),
            }
        }
        if !unknown.is_empty() {
            return Err(HubError::Invalid(format!(
                "unknown member(s): {} — only existing accounts can receive conversations (Chỉ có thể chia hội thoại cho nhân viên đã có tài khoản)",
                unknown.join(", ")
            )));
        }
        Ok(ids)
    }
}

#[cfg(test)]
mod tests;
