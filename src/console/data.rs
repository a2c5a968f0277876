//! What this console knows of the hub: the signed-in account, conversations, threads, pages,
//! rules, colleagues, the outbox of replies not yet acknowledged, the link. Every component reads
//! it; events from the hub change it. It draws nothing and handles no key.

use super::i18n::{strings, Lang, Strings};
use super::inbox::Inbox;
use super::keymap::Keymap;
use super::msg::{ApiCall, Effect, Link, NewsKind, Notification};
use crate::model::text::mentioned_handles;
use crate::model::*;
use crate::wire::{ConnectionView, Event, EventBody, OutboundAttachment, View};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// A reply the hub has not acknowledged yet; kept in the cache so it survives a restart.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutboxItem {
    pub client_key: String,
    pub conversation_id: ConversationId,
    pub text: String,
    pub quote_msg_id: Option<String>,
    pub attachment: Option<OutboundAttachment>,
    pub created_at: Ms,
    /// Sends that failed without an answer from the hub (network, 5xx); the next one is due at
    /// `retry_at`. The hub sends a client key once, so retrying is safe.
    #[serde(default)]
    pub attempts: u32,
    #[serde(default)]
    pub retry_at: Option<Ms>,
}

/// When the outbox tries a reply again after `attempts` failures: 1 s doubling to a minute,
/// with ±25% jitter so consoles that failed together do not retry together.
pub fn outbox_retry_at(now: Ms, attempts: u32) -> Ms {
    let base = (1_000i64 << attempts.saturating_sub(1).min(6)).min(60_000);
    let jitter = (rand::random::<u64>() % (base as u64 / 2 + 1)) as i64 - base / 4;
    now + base + jitter
}

/// Everything the console shows, as loaded from the hub (or the cache).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Snapshot {
    pub me: Option<Account>,
    pub conversations: Vec<Conversation>,
    pub connections: Vec<ConnectionView>,
    pub rules: Vec<Rule>,
    pub accounts: Vec<Account>,
    pub head: u64,
    /// Webhooks the hub set aside (admins only; `GET /webhooks/dead`).
    #[serde(default)]
    pub dead_webhooks: usize,
    /// The shared quick replies and mine.
    #[serde(default)]
    pub quick_replies: Vec<QuickReply>,
}

/// Which news notifies (the config's `notify_*`): all of it unless switched off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Notify {
    pub unclaimed: bool,
    pub mine: bool,
    pub mention: bool,
}

impl Default for Notify {
    fn default() -> Self {
        Notify {
            unclaimed: true,
            mine: true,
            mention: true,
        }
    }
}

impl Notify {
    pub fn wants(&self, kind: NewsKind) -> bool {
        match kind {
            NewsKind::Unclaimed => self.unclaimed,
            NewsKind::Mine => self.mine,
            NewsKind::Mention => self.mention,
        }
    }
}

/// A link down this long is "offline", not a blip being reconnected.
pub const OFFLINE_AFTER_MS: Ms = 30_000;

pub struct Data {
    pub lang: Lang,
    pub keymap: Keymap,
    pub notify: Notify,
    pub me: Option<Account>,
    pub link: Link,
    /// When the live link last went down; None until it has been up once. A link that never came
    /// up, or has been down for `OFFLINE_AFTER_MS`, is shown as offline with cached data.
    pub link_lost_at: Option<Ms>,
    /// Events are being replayed after a reconnect: no notifications for old news.
    pub live: bool,
    pub cache_note: Option<String>,
    pub conversations: Inbox,
    pub messages: HashMap<ConversationId, Vec<Message>>,
    pub older_cursor: HashMap<ConversationId, Option<String>>,
    pub connections: BTreeMap<ConnectionId, ConnectionView>,
    pub rules: BTreeMap<RuleId, Rule>,
    pub accounts: BTreeMap<AccountId, Account>,
    /// The shared quick replies and mine, by id.
    pub quick_replies: BTreeMap<String, QuickReply>,
    pub last_seq: u64,
    /// Webhooks the hub could not apply and set aside (shown to admins on Connections).
    pub dead_webhooks: usize,
    pub outbox: Vec<OutboxItem>,
    /// The one-line message in the status bar (an error, a confirmation).
    pub notice: Option<String>,
    pub now: Ms,
}

impl Data {
    pub fn new(lang: Lang, keymap: Keymap, notify: Notify, now: Ms) -> Data {
        Data {
            lang,
            keymap,
            notify,
            me: None,
            link: Link::Connecting,
            link_lost_at: None,
            live: false,
            cache_note: None,
            conversations: Inbox::default(),
            messages: HashMap::new(),
            older_cursor: HashMap::new(),
            connections: BTreeMap::new(),
            rules: BTreeMap::new(),
            accounts: BTreeMap::new(),
            quick_replies: BTreeMap::new(),
            last_seq: 0,
            dead_webhooks: 0,
            outbox: Vec::new(),
            notice: None,
            now,
        }
    }

    pub fn s(&self) -> &'static Strings {
        strings(self.lang)
    }

    pub fn is_admin(&self) -> bool {
        self.me.as_ref().is_some_and(|m| m.is_admin())
    }

    pub fn me_id(&self) -> &str {
        self.me.as_ref().map(|m| m.id.as_str()).unwrap_or("")
    }

    pub fn notice(&mut self, text: impl Into<String>) {
        self.notice = Some(text.into());
    }

    /// The link is down and has been for a while (or never came up): what is shown is the cache.
    pub fn showing_cached_data(&self) -> bool {
        match self.link {
            Link::Connected | Link::Connecting => false,
            Link::Offline => true,
            Link::Reconnecting { .. } => self
                .link_lost_at
                .is_none_or(|lost| self.now - lost >= OFFLINE_AFTER_MS),
        }
    }

    /// The cacheable part of the state.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            me: self.me.clone(),
            conversations: self.conversations.values().cloned().collect(),
            connections: self.connections.values().cloned().collect(),
            rules: self.rules.values().cloned().collect(),
            accounts: self.accounts.values().cloned().collect(),
            head: self.last_seq,
            dead_webhooks: self.dead_webhooks,
            quick_replies: self.quick_replies.values().cloned().collect(),
        }
    }

    pub fn load_snapshot(&mut self, s: Snapshot) {
        if s.me.is_some() {
            self.me = s.me;
        }
        self.conversations = s.conversations.into_iter().collect();
        self.connections = s
            .connections
            .into_iter()
            .map(|c| (c.id.clone(), c))
            .collect();
        self.rules = s.rules.into_iter().map(|r| (r.id.clone(), r)).collect();
        for a in s.accounts {
            self.accounts.insert(a.id.clone(), a);
        }
        if let Some(me) = &self.me {
            self.accounts.insert(me.id.clone(), me.clone());
        }
        self.last_seq = s.head;
        self.dead_webhooks = s.dead_webhooks;
        self.quick_replies = s
            .quick_replies
            .into_iter()
            .map(|q| (q.id.clone(), q))
            .collect();
    }

    /// How many conversations a view holds for me.
    pub fn count(&self, view: View) -> usize {
        self.conversations
            .count(view, self.me_id(), self.is_admin())
    }

    /// Connections split as the seed shows them: pages I connected, then pages shared with me.
    pub fn connection_rows(&self) -> (Vec<&ConnectionView>, Vec<&ConnectionView>) {
        self.connections
            .values()
            .partition(|c| c.connector == self.me_id())
    }

    pub fn connection_list(&self) -> Vec<&ConnectionView> {
        let (mine, shared) = self.connection_rows();
        mine.into_iter().chain(shared).collect()
    }

    pub fn rule_list(&self) -> Vec<&Rule> {
        self.rules.values().collect()
    }

    pub fn account_name(&self, id: &str) -> String {
        self.accounts
            .get(id)
            .map(|a| a.username.clone())
            .unwrap_or_else(|| id.to_string())
    }

    pub fn connection_name(&self, id: &str) -> String {
        self.connections
            .get(id)
            .map(|c| c.name.clone())
            .unwrap_or_else(|| id.to_string())
    }

    pub fn rule_of_connection(&self, conn_id: &str) -> Option<&Rule> {
        self.connections
            .get(conn_id)
            .and_then(|c| c.rule_id.as_ref())
            .and_then(|r| self.rules.get(r))
    }

    /// An exact email/username, or the only account starting with the text.
    pub fn resolve_account(&self, handle: &str) -> Option<String> {
        let h = handle.trim();
        if h.is_empty() {
            return None;
        }
        if let Some(a) = self.accounts.values().find(|a| a.matches_handle(h)) {
            return Some(a.username.clone());
        }
        match self.completions(h).as_slice() {
            [one] => Some(one.clone()),
            _ => None,
        }
    }

    /// Usernames of the accounts whose username or email starts with `prefix` (at most five).
    pub fn completions(&self, prefix: &str) -> Vec<String> {
        let lower = prefix.trim().to_lowercase();
        if lower.is_empty() {
            return vec![];
        }
        self.accounts
            .values()
            .filter(|a| {
                a.username.to_lowercase().starts_with(&lower)
                    || a.email.to_lowercase().starts_with(&lower)
            })
            .map(|a| a.username.clone())
            .take(5)
            .collect()
    }

    /// The hub's visibility rule (docs/api.md "Visibility"): the hub tells whoever could see a
    /// conversation before a change, and the console keeps it only while it still may.
    /// The hub's own rule (`routing::visibility`) over what this console knows.
    pub fn may_see(&self, c: &Conversation) -> bool {
        let Some(me) = &self.me else {
            return false;
        };
        let page = self
            .connections
            .get(&c.connection_id)
            .map(|p| crate::routing::Page {
                chat_mode: p.chat_mode,
                connector: &p.connector,
                rule: self.rule_of_connection(&c.connection_id),
            });
        crate::routing::visibility::may_see_conversation(me, c, page)
    }

    /// The live link changed; when it comes back, what was typed offline goes (the hub dedupes
    /// by key).
    pub fn set_link(&mut self, link: Link) -> Vec<Effect> {
        let was_live = self.link == Link::Connected;
        if was_live && link != Link::Connected {
            self.link_lost_at = Some(self.now);
        }
        self.link = link;
        self.live = link == Link::Connected;
        if link == Link::Connected && !was_live {
            return self
                .outbox
                .iter()
                .cloned()
                .map(|i| Effect::Api(ApiCall::Reply(i)))
                .collect();
        }
        vec![]
    }

    /// Messages loaded from the hub for one thread (`older`: a page before the first shown).
    pub fn add_messages(
        &mut self,
        conversation_id: ConversationId,
        items: Vec<Message>,
        next_cursor: Option<String>,
        older: bool,
    ) {
        let list = self.messages.entry(conversation_id.clone()).or_default();
        for m in items {
            upsert_message(list, m); // keeps the thread in time order
        }
        if older || !self.older_cursor.contains_key(&conversation_id) {
            self.older_cursor.insert(conversation_id, next_cursor);
        }
    }

    pub fn reply_accepted(&mut self, client_key: &str, message: Message) {
        self.outbox.retain(|o| o.client_key != client_key);
        let list = self
            .messages
            .entry(message.conversation_id.clone())
            .or_default();
        upsert_message(list, message);
    }

    /// The hub took a note: it joins its thread (the live event may come before or after).
    pub fn note_added(&mut self, note: Message) {
        let list = self
            .messages
            .entry(note.conversation_id.clone())
            .or_default();
        upsert_message(list, note);
    }

    pub fn reply_deferred(&mut self, client_key: &str, error: &str) {
        let now = self.now;
        if let Some(item) = self.outbox.iter_mut().find(|o| o.client_key == client_key) {
            item.attempts += 1;
            item.retry_at = Some(outbox_retry_at(now, item.attempts));
            tracing::info!(attempts = item.attempts, "reply deferred: {error}");
        }
    }

    pub fn reply_rejected(&mut self, client_key: &str, error: String) {
        self.outbox.retain(|o| o.client_key != client_key);
        self.notice(error);
    }

    /// A new reply for the outbox, keyed so the hub sends it once however often it is retried.
    pub fn new_outbox_item(
        &self,
        conversation_id: ConversationId,
        text: String,
        quote_msg_id: Option<String>,
        attachment: Option<OutboundAttachment>,
    ) -> OutboxItem {
        OutboxItem {
            client_key: format!("{}-{}-{}", self.me_id(), self.now, rand::random::<u32>()),
            conversation_id,
            text,
            quote_msg_id,
            attachment,
            created_at: self.now,
            attempts: 0,
            retry_at: None,
        }
    }

    /// Replies whose retry time has come go again (while the link is down they wait for it).
    pub fn retry_due_replies(&mut self) -> Vec<Effect> {
        if self.link != Link::Connected {
            return vec![];
        }
        let now = self.now;
        self.outbox
            .iter_mut()
            .filter(|o| o.retry_at.is_some_and(|t| t <= now))
            .map(|o| {
                o.retry_at = None;
                Effect::Api(ApiCall::Reply(o.clone()))
            })
            .collect()
    }

    /// Applies one event of the hub's stream; returns a notification when it is news for me.
    pub fn apply_event(&mut self, ev: Event) -> Vec<Effect> {
        let mut news = vec![];
        if ev.seq > self.last_seq {
            self.last_seq = ev.seq;
        }
        let me = self.me_id().to_string();
        match ev.body {
            EventBody::Conversation { conversation: c } => {
                let before = self.conversations.get(&c.id);
                let newly_unclaimed = c.state == ConvState::Unclaimed
                    && before.is_none_or(|b| b.state != ConvState::Unclaimed);
                let mine_by_rule = self
                    .rule_of_connection(&c.connection_id)
                    .is_some_and(|r| r.members.contains(&me));
                if newly_unclaimed && (mine_by_rule || self.is_admin()) {
                    news.push(Notification {
                        kind: NewsKind::Unclaimed,
                        conversation_id: c.id.clone(),
                        title: self.s().new_unclaimed.into(),
                        body: format!("{}: {}", customer_name(&c), c.preview),
                    });
                }
                if self.may_see(&c) {
                    self.conversations.insert(c);
                } else {
                    // It left my sight (handed over, claimed by another, I left the rule).
                    self.messages.remove(&c.id);
                    self.conversations.remove(&c.id);
                }
            }
            EventBody::Message { message } => {
                self.outbox
                    .retain(|o| Some(&o.client_key) != message.client_key.as_ref());
                let conv = self.conversations.get(&message.conversation_id);
                let is_new = self
                    .messages
                    .get(&message.conversation_id)
                    .is_none_or(|l| !l.iter().any(|m| m.id == message.id));
                if let (Some(c), true) = (conv, is_new) {
                    news.extend(self.news_of(c, &message));
                }
                if let Some(list) = self.messages.get_mut(&message.conversation_id) {
                    upsert_message(list, message);
                }
            }
            EventBody::Connection { connection, .. } => {
                self.connections.insert(connection.id.clone(), connection);
            }
            EventBody::ConnectionRemoved { id } => {
                self.connections.remove(&id);
                self.conversations.retain(|c| c.connection_id != id);
            }
            EventBody::Rule { rule } => {
                self.rules.insert(rule.id.clone(), rule);
            }
            EventBody::RuleRemoved { id } => {
                self.rules.remove(&id);
            }
            EventBody::QuickReply { quick_reply } => {
                self.quick_replies
                    .insert(quick_reply.id.clone(), quick_reply);
            }
            EventBody::QuickReplyRemoved { id } => {
                self.quick_replies.remove(&id);
            }
            EventBody::Account { account } => {
                if account.id == me {
                    self.me = Some(account.clone());
                }
                self.accounts.insert(account.id.clone(), account);
            }
        }
        if !self.live {
            return vec![];
        }
        news.into_iter()
            .filter(|n| self.notify.wants(n.kind))
            .map(Effect::Notify)
            .collect()
    }

    /// A new message is news for me when a customer writes in a conversation of mine, or a
    /// colleague's note mentions me.
    fn news_of(&self, c: &Conversation, m: &Message) -> Option<Notification> {
        let me = self.me.as_ref()?;
        let mine = c.assignee.as_deref() == Some(me.id.as_str());
        if m.kind == MessageKind::Note {
            let mentioned = mentioned_handles(&m.text).contains(&me.username.to_lowercase());
            return (mentioned && m.sender != me.id).then(|| Notification {
                kind: NewsKind::Mention,
                conversation_id: c.id.clone(),
                title: format!("{} {}", m.sender_name, self.s().mentioned_you),
                body: m.text.clone(),
            });
        }
        (mine && m.direction == Direction::Inbound).then(|| Notification {
            kind: NewsKind::Mine,
            conversation_id: c.id.clone(),
            title: customer_name(c).to_string(),
            body: if m.text.is_empty() {
                format!("[{}]", m.kind.as_str())
            } else {
                m.text.clone()
            },
        })
    }
}

/// The name a conversation's customer is shown by.
pub fn customer_name(c: &Conversation) -> &str {
    c.customer.name_or_id()
}

/// Adds or replaces a message, keeping the thread in time order (live events can arrive out of it).
fn upsert_message(list: &mut Vec<Message>, m: Message) {
    match list.iter_mut().find(|x| x.id == m.id) {
        Some(x) => *x = m,
        None => {
            let at = list.partition_point(|x| x.thread_order() <= m.thread_order());
            list.insert(at, m);
        }
    }
}
