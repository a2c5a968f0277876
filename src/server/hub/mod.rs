//! The hub's core: the in-memory view of every account, connection, rule and conversation, kept
//! in step with the durable store. Every change runs under one lock, is written as one atomic
//! batch together with its events, and is acknowledged only once the group commit made it durable.

use crate::model::*;
use crate::routing::{self, visibility, Page};
use crate::store::{prefix_end, Batch, GroupCommit, Store, StoreExt};
use crate::wire::{ConnectionView, Event, EventBody, RuleRef};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{broadcast, Notify};

mod admin;
pub use admin::{OaInfo, PendingConsent};
mod conversations;
mod health;
mod metrics;
mod webhooks;

pub use conversations::{Inbound, Ingested, OutboundJob, SendOutcome};
pub use health::Health;
pub use metrics::Metrics;
pub use webhooks::DeadWebhook;

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
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
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

    /// `{"type":"event","event":…}`, as `wire::Frame::Event` serialises.
    pub fn frame_json(&self) -> &str {
        self.frame.get_or_init(|| {
            let event = serde_json::to_string(&self.event).expect("events serialise");
            format!("{{\"type\":\"event\",\"event\":{event}}}")
        })
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
struct Counters {
    account: u64,
    connection: u64,
    rule: u64,
    conversation: u64,
    message: u64,
    seq: u64,
    webhook: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Credential {
    account_id: AccountId,
    token_hash: String,
}

pub struct State {
    accounts: BTreeMap<AccountId, Account>,
    credentials: HashMap<AccountId, String>,
    token_index: HashMap<String, AccountId>,
    connections: BTreeMap<ConnectionId, Connection>,
    rules: BTreeMap<RuleId, Rule>,
    conversations: HashMap<ConversationId, Conversation>,
    by_customer: HashMap<(ConnectionId, String), ConversationId>,
    counters: Counters,
    oldest_seq: u64,
}

/// The writes and events of one change.
#[derive(Default)]
pub struct Tx {
    batch: Batch,
    events: Vec<(EventBody, Vec<AccountId>)>,
}

impl Tx {
    /// Reads a record as this change sees it: its own writes first, then the store.
    fn lookup<T: serde::de::DeserializeOwned>(
        &self,
        store: &dyn Store,
        key: &str,
    ) -> HubResult<Option<T>> {
        let raw = match self.batch.get(key.as_bytes()) {
            Some(v) => v.map(<[u8]>::to_vec),
            None => store.get(key.as_bytes())?,
        };
        match raw {
            Some(v) => Ok(Some(
                serde_json::from_slice(&v).map_err(|e| HubError::Internal(e.into()))?,
            )),
            None => Ok(None),
        }
    }

    fn emit(&mut self, body: EventBody, audience: Vec<AccountId>) {
        self.events.push((body, audience));
    }
}

pub struct Hub {
    state: Mutex<State>,
    store: Arc<dyn Store>,
    commit: GroupCommit<Arc<StoredEvent>>,
    live: broadcast::Sender<Arc<StoredEvent>>,
    published: Arc<AtomicU64>,
    /// Webhook intake: the write-ahead log and the queue the worker drains (see webhooks.rs).
    intake: webhooks::Intake,
    retention: u64,
    pub metrics: Arc<Metrics>,
    /// Woken when an outbound reply is queued (the Zalo sender listens).
    pub outbox_ready: Arc<Notify>,
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
}

fn key_conv(id: &str) -> String {
    format!("conv/{id}")
}
fn key_msg(conv: &str, n: u64) -> String {
    format!("msg/{conv}/{n:020}")
}
/// The thread's time index: messages in the customer's time order, then arrival order.
fn key_msg_time(conv: &str, at: Ms, n: u64) -> String {
    format!("mt/{conv}/{:020}/{n:020}", at.max(0))
}
fn key_evt(seq: u64) -> String {
    format!("evt/{seq:020}")
}

/// Jobs and blobs agree at start: attachments that jobs stored before blobs carried inline are
/// moved into blobs, and blobs no job refers to (a reply refused or interrupted by a crash after
/// its bytes were written) are removed.
fn settle_blobs(store: &dyn Store, blobs: &crate::store::blobs::Blobs) -> anyhow::Result<()> {
    use base64::Engine;
    let mut batch = crate::store::Batch::default();
    let mut referenced = std::collections::HashSet::new();
    for mut job in store.scan_json::<conversations::OutboundJob>("job/")? {
        let Some(a) = job.attachment.as_mut() else {
            continue;
        };
        let inline = a.content_base64.take();
        if let Some(inline) = &inline {
            let bytes = base64::engine::general_purpose::STANDARD.decode(inline)?;
            a.size = bytes.len() as u64;
            a.blob = blobs.put(&bytes)?;
        }
        referenced.insert(a.blob.clone());
        if inline.is_some() {
            batch.put_json(format!("job/{}", job.message_id), &job);
        }
    }
    if !batch.is_empty() {
        tracing::info!("moved attachments of stored replies into blob files");
        store.apply(batch)?;
        store.flush()?;
    }
    for name in blobs.names()? {
        if !referenced.contains(&name) {
            blobs.remove(&name);
        }
    }
    Ok(())
}

/// The hub's memory as the store has it: everything an API answer or routing decision reads.
fn load_state(store: &dyn Store) -> anyhow::Result<State> {
    let mut st = State {
        accounts: BTreeMap::new(),
        credentials: HashMap::new(),
        token_index: HashMap::new(),
        connections: BTreeMap::new(),
        rules: BTreeMap::new(),
        conversations: HashMap::new(),
        by_customer: HashMap::new(),
        counters: store.get_json("meta/counters")?.unwrap_or_default(),
        oldest_seq: 0,
    };
    for a in store.scan_json::<Account>("acct/")? {
        st.accounts.insert(a.id.clone(), a);
    }
    for c in store.scan_json::<Credential>("cred/")? {
        st.token_index
            .insert(c.token_hash.clone(), c.account_id.clone());
        st.credentials.insert(c.account_id, c.token_hash);
    }
    for c in store.scan_json::<Connection>("conn/")? {
        st.connections.insert(c.id.clone(), c);
    }
    for r in store.scan_json::<Rule>("rule/")? {
        st.rules.insert(r.id.clone(), r);
    }
    for c in store.scan_json::<Conversation>("conv/")? {
        st.by_customer.insert(
            (c.connection_id.clone(), c.customer.user_id.clone()),
            c.id.clone(),
        );
        st.conversations.insert(c.id.clone(), c);
    }
    let first = store.range(b"evt/", &prefix_end(b"evt/"), false, 1)?;
    st.oldest_seq = match first.first() {
        Some((_, v)) => serde_json::from_slice::<StoredEvent>(v)?.event.seq,
        None => st.counters.seq + 1,
    };
    Ok(st)
}

/// Data dirs written before the thread's time index existed get it once, at start.
fn index_message_times(store: &dyn Store) -> anyhow::Result<()> {
    const DONE: &str = "meta/index/mt";
    if store.get(DONE.as_bytes())?.is_some() {
        return Ok(());
    }
    let mut batch = Batch::default();
    for m in store.scan_json::<Message>("msg/")? {
        let (at, n) = m.thread_order();
        batch.put_json(key_msg_time(&m.conversation_id, at, n), &m.id);
    }
    tracing::info!(messages = batch.len(), "indexed messages by time");
    batch.put_json(DONE, &true);
    store.apply(batch)?;
    store.flush()
}

pub fn hash_token(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

fn new_token() -> String {
    format!("sop_{}", hex::encode(rand::random::<[u8; 24]>()))
}

impl Hub {
    /// Loads the hub's state from the store and starts its group-commit flusher.
    /// `retention` is how many events the log keeps for reconnecting consoles.
    /// `data_dir` holds the write-ahead log of webhook intake (`webhooks.log`) and the
    /// attachments waiting to be sent (`attachments/`).
    pub fn open(
        store: Arc<dyn Store>,
        data_dir: &std::path::Path,
        retention: u64,
    ) -> anyhow::Result<Arc<Hub>> {
        let webhook_log = data_dir.join("webhooks.log");
        let blobs = Arc::new(crate::store::blobs::Blobs::open(
            &data_dir.join("attachments"),
        )?);
        settle_blobs(&*store, &blobs)?;
        index_message_times(&*store)?;
        let st = load_state(&*store)?;
        let head = st.counters.seq;
        // Webhooks acknowledged but not yet applied (a crash in between) are in the log past the
        // applied watermark; numbering continues after the highest number ever used.
        let (wal, logged) = crate::store::wal::Wal::open(&webhook_log)?;
        let applied = st.counters.webhook;
        let pending: std::collections::VecDeque<(u64, Vec<u8>)> =
            logged.into_iter().filter(|(n, _)| *n > applied).collect();
        let webhook_seq = pending.back().map(|(n, _)| *n).unwrap_or(0).max(applied);
        if !pending.is_empty() {
            tracing::info!(
                count = pending.len(),
                "re-queued acknowledged webhooks from the log"
            );
        }
        let (live, _) = broadcast::channel(4096);
        let published = Arc::new(AtomicU64::new(head));
        let metrics = Arc::new(Metrics::default());
        let dead = store.range(b"dead/", &prefix_end(b"dead/"), false, usize::MAX)?;
        metrics.webhooks_dead.set(dead.len() as i64);
        let publish = {
            let live = live.clone();
            let published = published.clone();
            let metrics = metrics.clone();
            move |events: Vec<Arc<StoredEvent>>| {
                for e in events {
                    // Advance `published` before sending: a stream that subscribes and then reads
                    // `published` either replays this event from the store or receives it live.
                    published.store(e.event.seq, Ordering::SeqCst);
                    metrics.events_total.inc();
                    let _ = live.send(e);
                }
            }
        };
        let commit = GroupCommit::start(store.clone(), publish);
        tracing::info!(
            accounts = st.accounts.len(),
            connections = st.connections.len(),
            rules = st.rules.len(),
            conversations = st.conversations.len(),
            head,
            "hub state loaded"
        );
        Ok(Arc::new(Hub {
            state: Mutex::new(st),
            store,
            commit,
            live,
            published,
            intake: webhooks::Intake::new(wal, pending, webhook_seq),
            retention: retention.max(1),
            metrics,
            outbox_ready: Arc::new(Notify::new()),
            health: Health::default(),
            credentials_changed: broadcast::channel(64).0,
            echo_window_ms: std::sync::atomic::AtomicI64::new(600_000),
            blobs,
            max_pending_attachment_bytes: AtomicU64::new(u64::MAX),
        }))
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

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Runs one change under the lock and returns once it is durable.
    pub async fn write<R>(
        &self,
        f: impl FnOnce(&mut State, &mut Tx) -> HubResult<R>,
    ) -> HubResult<R> {
        let (r, ticket) = self.write_locked(f)?;
        self.commit.wait(ticket).await?;
        Ok(r)
    }

    /// `write` for command-line tools that run without an async runtime.
    pub fn write_blocking<R>(
        &self,
        f: impl FnOnce(&mut State, &mut Tx) -> HubResult<R>,
    ) -> HubResult<R> {
        let (r, ticket) = self.write_locked(f)?;
        self.commit.wait_blocking(ticket)?;
        Ok(r)
    }

    fn write_locked<R>(
        &self,
        f: impl FnOnce(&mut State, &mut Tx) -> HubResult<R>,
    ) -> HubResult<(R, u64)> {
        let mut st = self.state.lock();
        let mut tx = Tx::default();
        let r = match f(&mut st, &mut tx) {
            Ok(r) => r,
            // Most refusals change nothing; one that failed midway may have changed memory.
            Err(e) if tx.batch.is_empty() => return Err(e),
            Err(e) => return Err(self.rolled_back(&mut st, e)),
        };
        // Even a change with nothing to write waits for the flush: an idempotent repeat must not be
        // acknowledged before the original is durable.
        let now = now_ms();
        let mut events = Vec::with_capacity(tx.events.len());
        for (body, audience) in tx.events.drain(..) {
            st.counters.seq += 1;
            let stored = Arc::new(StoredEvent::new(
                Event {
                    seq: st.counters.seq,
                    at: now,
                    body,
                },
                audience,
            ));
            tx.batch.put_json(key_evt(stored.event.seq), &*stored);
            events.push(stored);
        }
        if !tx.batch.is_empty() {
            tx.batch.put_json("meta/counters", &st.counters);
            self.trim_log(&mut st, &mut tx.batch);
            if let Err(e) = self.store.apply(tx.batch) {
                return Err(self.rolled_back(&mut st, HubError::Internal(e)));
            }
        }
        let ticket = self.commit.record(events);
        Ok((r, ticket))
    }

    /// Memory never runs ahead of the store: after a change that failed midway, the state is
    /// read back from what is durable (rare, so a full reload is affordable).
    fn rolled_back(&self, st: &mut State, cause: HubError) -> HubError {
        match load_state(&*self.store) {
            Ok(fresh) => {
                *st = fresh;
                tracing::warn!("a change failed midway and was rolled back: {cause}");
                cause
            }
            Err(e) => {
                tracing::error!("cannot reload the state after a failed change ({cause}): {e}");
                HubError::Internal(e)
            }
        }
    }

    /// Drops the oldest events beyond the retention, a chunk at a time.
    fn trim_log(&self, st: &mut State, batch: &mut Batch) {
        let keep_from = st.counters.seq.saturating_sub(self.retention) + 1;
        if keep_from <= st.oldest_seq || keep_from - st.oldest_seq < 256.min(self.retention) {
            return;
        }
        for seq in st.oldest_seq..keep_from {
            batch.delete(key_evt(seq));
        }
        st.oldest_seq = keep_from;
    }

    pub fn read<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&self.state.lock())
    }

    /// Flushes everything and stops the flusher (graceful shutdown).
    pub fn shutdown(&self) {
        self.commit.shutdown();
    }

    // ----- the event log, for the stream -----

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<StoredEvent>> {
        self.live.subscribe()
    }
    /// Highest sequence number already published live (and durable).
    pub fn published_seq(&self) -> u64 {
        self.published.load(Ordering::SeqCst)
    }
    pub fn oldest_seq(&self) -> u64 {
        self.state.lock().oldest_seq
    }
    /// Events with `after < seq <= upto`, oldest first, at most `limit`.
    pub fn read_events(
        &self,
        after: u64,
        upto: u64,
        limit: usize,
    ) -> anyhow::Result<Vec<Arc<StoredEvent>>> {
        if upto <= after {
            return Ok(vec![]);
        }
        let rows = self.store.range(
            key_evt(after + 1).as_bytes(),
            key_evt(upto + 1).as_bytes(),
            false,
            limit,
        )?;
        // A record that does not read back is left out; the stream sees the gap and re-syncs.
        Ok(rows
            .into_iter()
            .filter_map(|(k, v)| match serde_json::from_slice(&v) {
                Ok(e) => Some(Arc::new(e)),
                Err(e) => {
                    let key = String::from_utf8_lossy(&k);
                    tracing::error!("unreadable event {key}: {e}");
                    None
                }
            })
            .collect())
    }

    pub fn authenticate(&self, token: &str) -> Option<Account> {
        let st = self.state.lock();
        let id = st.token_index.get(&hash_token(token))?;
        st.accounts.get(id).cloned()
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
    fn page_by_id(&self, conn_id: &str) -> Option<Page<'_>> {
        self.connections.get(conn_id).map(|c| self.page_of(c))
    }

    /// The accounts other than admins that may see this conversation (`routing::visibility`).
    pub fn conversation_audience(&self, conv: &Conversation) -> Vec<AccountId> {
        visibility::conversation_audience(conv, self.page_by_id(&conv.connection_id))
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
        tx.batch.put_json(key_conv(&conv.id), &conv);
        self.by_customer.insert(
            (conv.connection_id.clone(), conv.customer.user_id.clone()),
            conv.id.clone(),
        );
        tx.emit(
            EventBody::Conversation {
                conversation: conv.clone(),
            },
            audience,
        );
        self.conversations.insert(conv.id.clone(), conv);
    }

    fn put_connection(&mut self, tx: &mut Tx, conn: Connection, started_by: Option<AccountId>) {
        tx.batch.put_json(format!("conn/{}", conn.id), &conn);
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

    /// Persists a connection's bookkeeping (last event time, tokens) without telling consoles.
    fn put_connection_quietly(&mut self, tx: &mut Tx, conn: Connection) {
        tx.batch.put_json(format!("conn/{}", conn.id), &conn);
        self.connections.insert(conn.id.clone(), conn);
    }

    fn put_rule(&mut self, tx: &mut Tx, rule: Rule, audience_before: Vec<AccountId>) {
        let mut audience = audience_before;
        audience.extend(rule.members.iter().cloned());
        audience.sort();
        audience.dedup();
        tx.batch.put_json(format!("rule/{}", rule.id), &rule);
        tx.emit(EventBody::Rule { rule: rule.clone() }, audience);
        self.rules.insert(rule.id.clone(), rule);
    }

    /// Accounts are admin-only in the API (`GET /accounts`), so their events reach admins and the
    /// account itself; colleagues' availability reaches agents through transfer targets.
    fn put_account(&mut self, tx: &mut Tx, account: Account) {
        tx.batch.put_json(format!("acct/{}", account.id), &account);
        tx.emit(
            EventBody::Account {
                account: account.clone(),
            },
            vec![account.id.clone()],
        );
        self.accounts.insert(account.id.clone(), account);
    }

    fn put_credential(&mut self, tx: &mut Tx, account_id: &str) -> String {
        let token = new_token();
        let hash = hash_token(&token);
        if let Some(old) = self
            .credentials
            .insert(account_id.to_string(), hash.clone())
        {
            self.token_index.remove(&old);
        }
        self.token_index
            .insert(hash.clone(), account_id.to_string());
        tx.batch.put_json(
            format!("cred/{account_id}"),
            &Credential {
                account_id: account_id.to_string(),
                token_hash: hash,
            },
        );
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
                rule.cursor = Some(cursor);
                tx.batch.put_json(format!("rule/{rule_id}"), &*rule);
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
