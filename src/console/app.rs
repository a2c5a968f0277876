//! The console's single state owner: `update(msg) -> effects` is pure (no I/O, no clock); the
//! runtime turns effects into HTTP calls, bells and clipboard writes, and feeds results back as
//! messages.

use super::i18n::{strings, Lang, Strings};
use super::inbox::{is_unclaimed, view_order, Inbox};
use super::keymap::{Action, Keymap};
use crate::model::text::{char_count, fold, nfc};
use crate::model::*;
use crate::wire::{
    AuthorizeResponse, ConnectionView, Event, EventBody, OutboundAttachment, RuleInput,
    TransferTarget, View,
};
use crossterm::event::{Event as TermEvent, KeyCode, KeyEvent, KeyEventKind};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use tui_input::{Input, InputRequest};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    Inbox,
    Connections,
    Rules,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    Connecting,
    Connected,
    Reconnecting { retry_at: Ms },
    Offline,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    List,
    Conversation,
    Composer,
}

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
}

#[derive(Debug)]
pub enum AddStep {
    Requesting,
    Consent {
        url: String,
        expires_at: Ms,
    },
    Permission {
        connection_id: ConnectionId,
        choice: usize,
    },
    PickRule {
        connection_id: ConnectionId,
        selected: usize,
    },
}

#[derive(Debug, Clone)]
pub struct RuleEditor {
    pub id: Option<RuleId>,
    pub name: Input,
    pub sources: Vec<ConnectionId>,
    pub source_cursor: usize,
    pub members: Vec<String>,
    pub member_input: Input,
    pub method: Method,
    pub old: OldConversations,
    /// 0 name, 1 sources, 2 members, 3 method, 4 old conversations.
    pub field: usize,
    pub error: Option<String>,
}

#[derive(Debug)]
pub enum Modal {
    Help,
    Palette {
        input: Input,
        selected: usize,
    },
    /// Hand the conversation over; `targets` come from the hub (`None` while loading).
    Transfer {
        conversation_id: ConversationId,
        input: Input,
        targets: Option<Vec<TransferTarget>>,
    },
    Attach {
        input: Input,
    },
    AddConnection(AddStep),
    RuleEditor(RuleEditor),
    ConfirmRule(RuleEditor),
    ConfirmRemoveConnection(ConnectionId),
}

#[derive(Debug)]
pub enum Msg {
    Term(TermEvent),
    /// SIGHUP / SIGTERM: leave cleanly.
    Shutdown,
    Tick(Ms),
    Net(NetEvent),
}

#[derive(Debug)]
pub enum NetEvent {
    Snapshot(Box<Snapshot>),
    Event(Box<Event>),
    Link(Link),
    Messages {
        conversation_id: ConversationId,
        items: Vec<Message>,
        next_cursor: Option<String>,
        older: bool,
    },
    MessagesFailed {
        conversation_id: ConversationId,
        error: String,
    },
    ReplyAccepted {
        client_key: String,
        message: Box<Message>,
    },
    ReplyRejected {
        client_key: String,
        error: String,
    },
    /// The hub could not be reached or failed (5xx): the reply stays in the outbox and is tried
    /// again with backoff.
    ReplyDeferred {
        client_key: String,
        error: String,
    },
    ClaimLost {
        winner: Option<String>,
    },
    TransferTargets {
        conversation_id: ConversationId,
        targets: Vec<TransferTarget>,
    },
    Authorize(AuthorizeResponse),
    Failed(String),
    Info(String),
    EditorDone(String),
    Attachment(OutboundAttachment),
}

#[derive(Debug, Clone)]
pub enum ApiCall {
    Claim(ConversationId),
    Reply(OutboxItem),
    Transfer {
        id: ConversationId,
        to: String,
    },
    TransferTargets(ConversationId),
    Release(ConversationId),
    Done(ConversationId),
    Read(ConversationId),
    SetAvailability(Availability),
    LoadMessages {
        id: ConversationId,
        before: Option<String>,
    },
    Authorize,
    SetChatMode {
        id: ConnectionId,
        mode: ChatMode,
    },
    SaveRule {
        id: Option<RuleId>,
        input: RuleInput,
    },
    DeleteConnection(ConnectionId),
    LoadAttachment {
        path: String,
    },
}

#[derive(Debug, Clone)]
pub enum Effect {
    Api(ApiCall),
    Bell,
    Copy(String),
    OpenEditor(String),
    Quit,
}

pub struct App {
    pub lang: Lang,
    pub keymap: Keymap,
    pub bell: bool,
    pub me: Option<Account>,
    pub link: Link,
    /// When the live link last went down; None until it has been up once. A link that never came
    /// up, or has been down for `OFFLINE_AFTER_MS`, is shown as offline with cached data.
    pub link_lost_at: Option<Ms>,
    pub cache_note: Option<String>,
    pub tab: Tab,
    pub view: View,
    pub focus: Focus,
    pub conversations: Inbox,
    pub messages: HashMap<ConversationId, Vec<Message>>,
    pub older_cursor: HashMap<ConversationId, Option<String>>,
    pub connections: BTreeMap<ConnectionId, ConnectionView>,
    pub rules: BTreeMap<RuleId, Rule>,
    pub accounts: BTreeMap<AccountId, Account>,
    pub last_seq: u64,
    pub selected: usize,
    pub open: Option<ConversationId>,
    /// Lines scrolled up from the newest message.
    pub scroll: usize,
    pub conn_selected: usize,
    pub rule_selected: usize,
    pub filter: Option<Input>,
    /// Keys go to the filter while typing it.
    pub filter_typing: bool,
    /// Webhooks the hub could not apply and set aside (shown to admins on Connections).
    pub dead_webhooks: usize,
    /// The thread being loaded for the pane beside the list (one at a time, so holding `j` over
    /// a long list does not queue a load per row).
    preview_loading: Option<ConversationId>,
    pub composer: Input,
    pub quote: Option<String>,
    pub modal: Option<Modal>,
    pub notice: Option<String>,
    pub outbox: Vec<OutboxItem>,
    pub now: Ms,
    /// Set by anything that changes what is on screen; the runtime clears it after drawing.
    pub dirty: bool,
    /// Events are being replayed after a reconnect: no bells for old news.
    pub live: bool,
}

/// A link down this long is "offline", not a blip being reconnected.
pub const OFFLINE_AFTER_MS: Ms = 30_000;

pub const MIN_WIDTH: u16 = 60;
pub const MIN_HEIGHT: u16 = 16;

impl App {
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

    pub fn new(lang: Lang, keymap: Keymap, bell: bool, now: Ms) -> App {
        App {
            lang,
            keymap,
            bell,
            me: None,
            link: Link::Connecting,
            link_lost_at: None,
            cache_note: None,
            tab: Tab::Inbox,
            view: View::Mine,
            focus: Focus::List,
            conversations: Inbox::default(),
            messages: HashMap::new(),
            older_cursor: HashMap::new(),
            connections: BTreeMap::new(),
            rules: BTreeMap::new(),
            accounts: BTreeMap::new(),
            last_seq: 0,
            selected: 0,
            open: None,
            scroll: 0,
            conn_selected: 0,
            rule_selected: 0,
            filter: None,
            filter_typing: false,
            dead_webhooks: 0,
            preview_loading: None,
            composer: Input::default(),
            quote: None,
            modal: None,
            notice: None,
            outbox: Vec::new(),
            now,
            dirty: true,
            live: false,
        }
    }

    pub fn s(&self) -> &'static Strings {
        strings(self.lang)
    }

    pub fn is_admin(&self) -> bool {
        self.me.as_ref().is_some_and(|m| m.is_admin())
    }

    fn me_id(&self) -> &str {
        self.me.as_ref().map(|m| m.id.as_str()).unwrap_or("")
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
        self.clamp_selection();
        self.dirty = true;
    }

    // ----- derived views -----

    pub fn in_view(&self, view: View, c: &Conversation) -> bool {
        match view {
            View::Mine => c.assignee.as_deref() == Some(self.me_id()),
            View::Unclaimed => is_unclaimed(c),
            View::All => self.is_admin(),
        }
    }

    pub fn count(&self, view: View) -> usize {
        self.conversations
            .count(view, self.me_id(), self.is_admin())
    }

    /// Everything the inbox draws: the counts of every view and the visible rows
    /// `start..start + rows` of the current one.
    pub fn inbox_frame(&self, start: usize, rows: usize) -> InboxFrame<'_> {
        let counts = [
            self.count(View::Mine),
            self.count(View::Unclaimed),
            self.count(View::All),
        ];
        let (window, total) = self.visible_window(start, rows);
        let selected = self
            .selected
            .checked_sub(start)
            .and_then(|i| window.get(i).copied());
        InboxFrame {
            counts,
            window,
            total,
            selected,
        }
    }

    /// The text typed in the `/` filter, folded (`text::fold`); empty when there is none.
    fn filter_needle(&self) -> String {
        self.filter
            .as_ref()
            .map(|f| fold(f.value().trim()))
            .unwrap_or_default()
    }

    /// The conversations of the current view and filter, unsorted.
    fn matching(&self, needle: &str) -> Vec<&Conversation> {
        self.conversations
            .values()
            .filter(|c| self.in_view(self.view, c))
            .filter(|c| matches_filter(c, needle))
            .collect()
    }

    /// The conversations of the current view, filtered and sorted as the hub sorts them.
    pub fn visible(&self) -> Vec<&Conversation> {
        let needle = self.filter_needle();
        if needle.is_empty() {
            return self
                .conversations
                .ordered(self.view, self.me_id(), self.is_admin())
                .collect();
        }
        let mut list = self.matching(&needle);
        list.sort_unstable_by(view_order(self.view));
        list
    }

    /// Rows `start..start + count` of `visible()` and its length. Without a filter the inbox's
    /// index gives them directly; with one, an O(n) select over the matches (never a full sort).
    pub fn visible_window(&self, start: usize, count: usize) -> (Vec<&Conversation>, usize) {
        let needle = self.filter_needle();
        if needle.is_empty() {
            let window = self
                .conversations
                .ordered(self.view, self.me_id(), self.is_admin())
                .skip(start)
                .take(count)
                .collect();
            return (window, self.count(self.view));
        }
        let list = self.matching(&needle);
        let len = list.len();
        (window_of(list, start, count, view_order(self.view)), len)
    }

    pub fn selected_conversation(&self) -> Option<&Conversation> {
        self.visible_window(self.selected, 1).0.into_iter().next()
    }

    pub fn open_conversation(&self) -> Option<&Conversation> {
        self.open.as_ref().and_then(|id| self.conversations.get(id))
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

    fn clamp_selection(&mut self) {
        let n = self.visible().len();
        if self.selected >= n {
            self.selected = n.saturating_sub(1);
        }
        let n = self.connections.len();
        if self.conn_selected >= n {
            self.conn_selected = n.saturating_sub(1);
        }
        let n = self.rules.len();
        if self.rule_selected >= n {
            self.rule_selected = n.saturating_sub(1);
        }
    }

    fn notice(&mut self, text: impl Into<String>) {
        self.notice = Some(text.into());
    }

    // ----- update -----

    pub fn update(&mut self, msg: Msg) -> Vec<Effect> {
        self.dirty = true;
        let mut fx = self.update_inner(msg);
        fx.extend(self.load_preview());
        fx
    }

    /// The thread beside the list follows the cursor: the selected conversation's latest
    /// messages are loaded when it has none yet.
    fn load_preview(&mut self) -> Vec<Effect> {
        if self.tab != Tab::Inbox || self.focus != Focus::List || self.preview_loading.is_some() {
            return vec![];
        }
        let Some(id) = self.selected_conversation().map(|c| c.id.clone()) else {
            return vec![];
        };
        if self.messages.contains_key(&id) || self.link != Link::Connected {
            return vec![];
        }
        self.preview_loading = Some(id.clone());
        vec![Effect::Api(ApiCall::LoadMessages { id, before: None })]
    }

    fn update_inner(&mut self, msg: Msg) -> Vec<Effect> {
        match msg {
            Msg::Tick(now) => {
                // Only the clock moved: redraw when a countdown is on screen.
                let retrying = self.outbox.iter().any(|o| o.retry_at.is_some());
                self.dirty = matches!(self.link, Link::Reconnecting { .. })
                    || retrying
                    || now / 60_000 != self.now / 60_000;
                self.now = now;
                self.retry_due_replies()
            }
            Msg::Net(e) => self.on_net(e),
            Msg::Shutdown => vec![Effect::Quit],
            Msg::Term(TermEvent::Key(k)) if k.kind != KeyEventKind::Release => self.on_key(k),
            Msg::Term(TermEvent::Paste(text)) => {
                self.on_paste(&text);
                vec![]
            }
            Msg::Term(TermEvent::Resize(..)) => vec![],
            Msg::Term(_) => {
                self.dirty = false;
                vec![]
            }
        }
    }

    fn on_paste(&mut self, text: &str) {
        let input = match (&mut self.modal, self.focus) {
            (Some(Modal::Transfer { input, .. }), _)
            | (Some(Modal::Attach { input }), _)
            | (Some(Modal::Palette { input, .. }), _) => input,
            (Some(Modal::RuleEditor(ed)), _) => {
                if ed.field == 0 {
                    &mut ed.name
                } else {
                    &mut ed.member_input
                }
            }
            (None, Focus::Composer) => &mut self.composer,
            _ => return,
        };
        let mut value = input.value().to_string();
        value.push_str(&nfc(text));
        *input = Input::new(value);
    }

    fn on_net(&mut self, e: NetEvent) -> Vec<Effect> {
        let mut fx = vec![];
        match e {
            NetEvent::Snapshot(s) => self.load_snapshot(*s),
            NetEvent::Event(ev) => fx.extend(self.apply_event(*ev)),
            NetEvent::Link(link) => {
                let was_live = self.link == Link::Connected;
                if was_live && link != Link::Connected {
                    self.link_lost_at = Some(self.now);
                }
                self.link = link;
                self.live = link == Link::Connected;
                if !self.live {
                    self.preview_loading = None;
                }
                if link == Link::Connected && !was_live {
                    // The link is back: send what was typed offline (the hub dedupes by key).
                    fx.extend(
                        self.outbox
                            .iter()
                            .cloned()
                            .map(|i| Effect::Api(ApiCall::Reply(i))),
                    );
                    if let Some(id) = self.open.clone() {
                        fx.push(Effect::Api(ApiCall::LoadMessages { id, before: None }));
                    }
                }
            }
            NetEvent::Messages {
                conversation_id,
                items,
                next_cursor,
                older,
            } => {
                if self.preview_loading.as_ref() == Some(&conversation_id) {
                    self.preview_loading = None;
                }
                let list = self.messages.entry(conversation_id.clone()).or_default();
                for m in items {
                    upsert_message(list, m); // keeps the thread in time order
                }
                if older || !self.older_cursor.contains_key(&conversation_id) {
                    self.older_cursor.insert(conversation_id, next_cursor);
                }
            }
            NetEvent::MessagesFailed {
                conversation_id,
                error,
            } => {
                if self.preview_loading.as_ref() == Some(&conversation_id) {
                    self.preview_loading = None;
                    // Not again for this one until the link comes back.
                    self.messages.entry(conversation_id).or_default();
                }
                self.notice(error);
            }
            NetEvent::ReplyAccepted {
                client_key,
                message,
            } => {
                self.outbox.retain(|o| o.client_key != client_key);
                let list = self
                    .messages
                    .entry(message.conversation_id.clone())
                    .or_default();
                upsert_message(list, *message);
            }
            NetEvent::ReplyDeferred { client_key, error } => {
                let now = self.now;
                if let Some(item) = self.outbox.iter_mut().find(|o| o.client_key == client_key) {
                    item.attempts += 1;
                    item.retry_at = Some(outbox_retry_at(now, item.attempts));
                    tracing::info!(attempts = item.attempts, "reply deferred: {error}");
                }
            }
            NetEvent::ReplyRejected { client_key, error } => {
                self.outbox.retain(|o| o.client_key != client_key);
                self.notice(error);
            }
            NetEvent::ClaimLost { winner } => {
                let w = winner.unwrap_or_default();
                self.notice(format!("{} {w}", self.s().claimed_by));
            }
            NetEvent::TransferTargets {
                conversation_id,
                targets: list,
            } => {
                if let Some(Modal::Transfer {
                    conversation_id: open,
                    targets,
                    ..
                }) = &mut self.modal
                {
                    if *open == conversation_id {
                        *targets = Some(list);
                    }
                }
            }
            NetEvent::Authorize(a) => {
                if let Some(Modal::AddConnection(step)) = &mut self.modal {
                    *step = AddStep::Consent {
                        url: a.authorization_url.clone(),
                        expires_at: a.expires_at,
                    };
                    fx.push(Effect::Copy(a.authorization_url));
                    self.notice = Some(self.s().copied.into());
                }
            }
            NetEvent::Failed(text) => self.notice(text),
            NetEvent::Info(text) => self.notice(text),
            NetEvent::EditorDone(text) => {
                self.composer = Input::new(nfc(&text));
                self.focus = Focus::Composer;
            }
            NetEvent::Attachment(att) => {
                if let Some(conv) = self.open.clone() {
                    let item = self.new_outbox_item(conv, String::new(), Some(att));
                    fx.push(Effect::Api(ApiCall::Reply(item)));
                }
            }
        }
        self.clamp_selection();
        fx
    }

    fn apply_event(&mut self, ev: Event) -> Vec<Effect> {
        let mut fx = vec![];
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
                if self.live && self.bell && newly_unclaimed && (mine_by_rule || self.is_admin()) {
                    fx.push(Effect::Bell);
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
                let ours = self
                    .outbox
                    .iter()
                    .any(|o| Some(&o.client_key) == message.client_key.as_ref());
                if ours {
                    self.outbox
                        .retain(|o| Some(&o.client_key) != message.client_key.as_ref());
                }
                let mine = self
                    .conversations
                    .get(&message.conversation_id)
                    .is_some_and(|c| c.assignee.as_deref() == Some(me.as_str()));
                let is_new = self
                    .messages
                    .get(&message.conversation_id)
                    .is_none_or(|l| !l.iter().any(|m| m.id == message.id));
                if self.live
                    && self.bell
                    && mine
                    && is_new
                    && message.direction == Direction::Inbound
                {
                    fx.push(Effect::Bell);
                }
                if let Some(list) = self.messages.get_mut(&message.conversation_id) {
                    upsert_message(list, message);
                }
            }
            EventBody::Connection {
                connection,
                started_by,
            } => {
                if let (Some(Modal::AddConnection(step)), Some(by)) = (&mut self.modal, &started_by)
                {
                    if by == &me && matches!(step, AddStep::Consent { .. } | AddStep::Requesting) {
                        *step = AddStep::Permission {
                            connection_id: connection.id.clone(),
                            choice: 0,
                        };
                        self.notice = Some(format!(
                            "{}: {}",
                            strings(self.lang).connect_success,
                            connection.name
                        ));
                    }
                }
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
            EventBody::Account { account } => {
                if account.id == me {
                    self.me = Some(account.clone());
                }
                self.accounts.insert(account.id.clone(), account);
            }
        }
        fx
    }

    /// The hub's visibility rule (docs/api.md "Visibility"): the hub tells whoever could see a
    /// conversation before a change, and the console keeps it only while it still may.
    /// The hub's own rule (`routing::visibility`) over what this console knows.
    fn may_see(&self, c: &Conversation) -> bool {
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

    fn rule_of_connection(&self, conn_id: &str) -> Option<&Rule> {
        self.connections
            .get(conn_id)
            .and_then(|c| c.rule_id.as_ref())
            .and_then(|r| self.rules.get(r))
    }

    /// Replies whose retry time has come go again (while the link is down they wait for it).
    fn retry_due_replies(&mut self) -> Vec<Effect> {
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

    fn new_outbox_item(
        &self,
        conversation_id: ConversationId,
        text: String,
        attachment: Option<OutboundAttachment>,
    ) -> OutboxItem {
        OutboxItem {
            client_key: format!("{}-{}-{}", self.me_id(), self.now, rand::random::<u32>()),
            conversation_id,
            text,
            quote_msg_id: self.quote.clone(),
            attachment,
            created_at: self.now,
            attempts: 0,
            retry_at: None,
        }
    }

    // ----- keys -----

    fn on_key(&mut self, k: KeyEvent) -> Vec<Effect> {
        if self.modal.is_some() {
            return self.on_modal_key(k);
        }
        if self.focus == Focus::Composer {
            return self.on_composer_key(k);
        }
        if self.filter_typing {
            let filter = self.filter.get_or_insert_with(Input::default);
            match k.code {
                KeyCode::Esc => {
                    self.filter = None;
                    self.filter_typing = false;
                }
                KeyCode::Enter => {
                    // Typing ends; a non-empty filter stays applied until Esc.
                    self.filter_typing = false;
                    if filter.value().is_empty() {
                        self.filter = None;
                    }
                }
                _ => {
                    edit_input(filter, &k);
                    self.selected = 0;
                }
            }
            return vec![];
        }
        let actions = self.keymap.actions(&k);
        for a in actions {
            if let Some(fx) = self.run_action(a) {
                return fx;
            }
        }
        self.dirty = false;
        vec![]
    }

    /// Runs an action if it applies in the current context.
    pub fn run_action(&mut self, a: Action) -> Option<Vec<Effect>> {
        use Action::*;
        let admin = self.is_admin();
        let fx = match (a, self.tab, self.focus) {
            (Quit, ..) => vec![Effect::Quit],
            (Help, ..) => {
                self.modal = Some(Modal::Help);
                vec![]
            }
            (Palette, ..) => {
                self.modal = Some(Modal::Palette {
                    input: Input::default(),
                    selected: 0,
                });
                vec![]
            }
            (NextTab, ..) | (PrevTab, ..) => {
                let order = [Tab::Inbox, Tab::Connections, Tab::Rules];
                let i = order.iter().position(|t| *t == self.tab).unwrap_or(0);
                self.tab = order[if a == NextTab {
                    (i + 1) % 3
                } else {
                    (i + 2) % 3
                }];
                vec![]
            }
            (TabInbox, ..) => self.switch_tab(Tab::Inbox),
            (TabConnections, ..) => self.switch_tab(Tab::Connections),
            (TabRules, ..) => self.switch_tab(Tab::Rules),
            (ToggleAvailability, ..) => {
                let next = match self.me.as_ref()?.availability {
                    Availability::Available => Availability::Away,
                    Availability::Away => Availability::Available,
                };
                vec![Effect::Api(ApiCall::SetAvailability(next))]
            }
            (Up, Tab::Inbox, Focus::Conversation) => {
                self.scroll += 1;
                vec![]
            }
            (Down, Tab::Inbox, Focus::Conversation) => {
                self.scroll = self.scroll.saturating_sub(1);
                vec![]
            }
            (PageUp, Tab::Inbox, Focus::Conversation) => {
                self.scroll += 10;
                vec![]
            }
            (PageDown, Tab::Inbox, Focus::Conversation) => {
                self.scroll = self.scroll.saturating_sub(10);
                vec![]
            }
            (Up | Down | PageUp | PageDown, ..) => {
                let step: isize = match a {
                    Up => -1,
                    Down => 1,
                    PageUp => -10,
                    _ => 10,
                };
                let visible = self.visible().len();
                let (cur, len) = match self.tab {
                    Tab::Inbox => (&mut self.selected, visible),
                    Tab::Connections => (&mut self.conn_selected, self.connections.len()),
                    Tab::Rules => (&mut self.rule_selected, self.rules.len()),
                };
                *cur = (*cur as isize + step).clamp(0, len.saturating_sub(1) as isize) as usize;
                vec![]
            }
            (Filter, Tab::Inbox, Focus::List) => {
                self.filter = Some(Input::default());
                self.filter_typing = true;
                vec![]
            }
            (Back, Tab::Inbox, Focus::Conversation) => {
                self.focus = Focus::List;
                vec![]
            }
            (Back, Tab::Inbox, Focus::List) if self.filter.is_some() => {
                self.filter = None;
                vec![]
            }
            (ViewMine, Tab::Inbox, _) => self.switch_view(View::Mine),
            (ViewUnclaimed, Tab::Inbox, _) => self.switch_view(View::Unclaimed),
            (ViewAll, Tab::Inbox, _) if admin => self.switch_view(View::All),
            (Urgent, ..) => self.jump_urgent(),
            (Open, Tab::Inbox, Focus::List) => self.open_selected(),
            (Claim, Tab::Inbox, _) => {
                let id = self.current_conversation()?.id.clone();
                // Claimed from the list, it leaves *Chưa ai nhận* and the cursor moves on: it is
                // opened, so the thread and the next `r` stay with the customer just claimed.
                let mut fx = match self.focus {
                    Focus::List => self.open_selected(),
                    _ => vec![],
                };
                fx.push(Effect::Api(ApiCall::Claim(id)));
                fx
            }
            (Reply, Tab::Inbox, _) | (QuoteReply, Tab::Inbox, _) => {
                // From the list, the reply is for the conversation under the cursor (the one the
                // thread pane shows), not one opened earlier.
                if self.open.is_none() || self.focus == Focus::List {
                    self.open_selected();
                }
                self.open.as_ref()?;
                self.quote = if a == QuoteReply {
                    self.last_inbound_msg_id()
                } else {
                    None
                };
                self.focus = Focus::Composer;
                vec![]
            }
            (Attach, Tab::Inbox, Focus::Conversation) => {
                self.modal = Some(Modal::Attach {
                    input: Input::default(),
                });
                vec![]
            }
            (Editor, Tab::Inbox, Focus::Conversation) => {
                vec![Effect::OpenEditor(self.composer.value().to_string())]
            }
            (Transfer, Tab::Inbox, _) => {
                let id = self.current_conversation()?.id.clone();
                self.modal = Some(Modal::Transfer {
                    conversation_id: id.clone(),
                    input: Input::default(),
                    targets: None,
                });
                vec![Effect::Api(ApiCall::TransferTargets(id))]
            }
            (Release, Tab::Inbox, _) => vec![Effect::Api(ApiCall::Release(
                self.current_conversation()?.id.clone(),
            ))],
            (Done, Tab::Inbox, _) => vec![Effect::Api(ApiCall::Done(
                self.current_conversation()?.id.clone(),
            ))],
            (Older, Tab::Inbox, Focus::Conversation) => {
                let id = self.open.clone()?;
                let before = self.older_cursor.get(&id).cloned().flatten()?;
                vec![Effect::Api(ApiCall::LoadMessages {
                    id,
                    before: Some(before),
                })]
            }
            (AddConnection, Tab::Connections, _) if admin => {
                self.modal = Some(Modal::AddConnection(AddStep::Requesting));
                vec![Effect::Api(ApiCall::Authorize)]
            }
            (Reconnect, Tab::Connections, _) if admin => {
                self.modal = Some(Modal::AddConnection(AddStep::Requesting));
                vec![Effect::Api(ApiCall::Authorize)]
            }
            (Remove, Tab::Connections, _) if admin => {
                let c = self.connection_list().get(self.conn_selected)?.id.clone();
                self.modal = Some(Modal::ConfirmRemoveConnection(c));
                vec![]
            }
            (ChatMode, Tab::Connections, _) if admin => {
                let c = self.connection_list().get(self.conn_selected)?.id.clone();
                self.modal = Some(Modal::AddConnection(AddStep::Permission {
                    connection_id: c,
                    choice: 0,
                }));
                vec![]
            }
            (NewRule, Tab::Rules, _) if admin => {
                self.modal = Some(Modal::RuleEditor(RuleEditor::new(None, vec![])));
                vec![]
            }
            (EditRule | Open, Tab::Rules, _) if admin => {
                let rule = (*self.rule_list().get(self.rule_selected)?).clone();
                let members = rule.members.iter().map(|m| self.account_name(m)).collect();
                self.modal = Some(Modal::RuleEditor(RuleEditor::from_rule(&rule, members)));
                vec![]
            }
            _ => return None,
        };
        Some(fx)
    }

    fn switch_tab(&mut self, tab: Tab) -> Vec<Effect> {
        self.tab = tab;
        vec![]
    }

    fn switch_view(&mut self, view: View) -> Vec<Effect> {
        self.view = view;
        self.selected = 0;
        self.focus = Focus::List;
        vec![]
    }

    fn current_conversation(&self) -> Option<&Conversation> {
        match self.focus {
            Focus::List => self.selected_conversation(),
            _ => self.open_conversation(),
        }
    }

    fn last_inbound_msg_id(&self) -> Option<String> {
        let id = self.open.as_ref()?;
        self.messages
            .get(id)?
            .iter()
            .rev()
            .find(|m| m.direction == Direction::Inbound)
            .and_then(|m| m.zalo_msg_id.clone())
    }

    fn open_selected(&mut self) -> Vec<Effect> {
        let Some(c) = self.selected_conversation() else {
            return vec![];
        };
        let id = c.id.clone();
        let unread = c.unread_for(self.me_id()) > 0;
        self.open = Some(id.clone());
        self.focus = Focus::Conversation;
        self.scroll = 0;
        let mut fx = vec![Effect::Api(ApiCall::LoadMessages {
            id: id.clone(),
            before: None,
        })];
        if unread {
            fx.push(Effect::Api(ApiCall::Read(id)));
        }
        fx
    }

    /// The most urgent conversation: the unclaimed one waiting longest, else my oldest unread.
    fn jump_urgent(&mut self) -> Vec<Effect> {
        self.tab = Tab::Inbox;
        self.filter = None;
        if self.count(View::Unclaimed) > 0 {
            self.view = View::Unclaimed;
            self.selected = 0;
        } else {
            self.view = View::Mine;
            let me = self.me_id().to_string();
            let pos = self.visible().iter().position(|c| c.unread_for(&me) > 0);
            let Some(pos) = pos else {
                self.notice(self.s().nothing_here);
                return vec![];
            };
            self.selected = pos;
        }
        self.focus = Focus::List;
        self.open_selected()
    }

    fn on_composer_key(&mut self, k: KeyEvent) -> Vec<Effect> {
        match k.code {
            KeyCode::Esc => {
                self.focus = Focus::Conversation;
                self.quote = None;
                vec![]
            }
            KeyCode::Enter => self.send_composer(),
            _ => {
                edit_input(&mut self.composer, &k);
                vec![]
            }
        }
    }

    fn send_composer(&mut self) -> Vec<Effect> {
        let text = nfc(self.composer.value().trim());
        if text.is_empty() {
            return vec![];
        }
        let n = char_count(&text);
        if n > MAX_TEXT_CHARS {
            self.notice(format!("{n}/{MAX_TEXT_CHARS}"));
            return vec![];
        }
        let Some(conv) = self.open.clone() else {
            return vec![];
        };
        let item = self.new_outbox_item(conv, text, None);
        self.outbox.push(item.clone());
        self.composer = Input::default();
        self.quote = None;
        if self.link != Link::Connected {
            self.notice(self.s().offline_queued);
        }
        vec![Effect::Api(ApiCall::Reply(item))]
    }

    fn on_modal_key(&mut self, k: KeyEvent) -> Vec<Effect> {
        let Some(modal) = self.modal.take() else {
            return vec![];
        };
        let (keep, fx) = self.modal_key(modal, k);
        if self.modal.is_none() {
            self.modal = keep;
        }
        fx
    }

    /// Returns the modal to keep open (None closes it) and the effects.
    fn modal_key(&mut self, modal: Modal, k: KeyEvent) -> (Option<Modal>, Vec<Effect>) {
        let esc = k.code == KeyCode::Esc;
        match modal {
            Modal::Help => (None, vec![]),
            Modal::ConfirmRemoveConnection(id) => match k.code {
                KeyCode::Char('y') => (None, vec![Effect::Api(ApiCall::DeleteConnection(id))]),
                _ => (None, vec![]),
            },
            Modal::Palette {
                mut input,
                mut selected,
            } => {
                let matches = self.palette_matches(input.value());
                match k.code {
                    KeyCode::Esc => (None, vec![]),
                    KeyCode::Up => {
                        selected = selected.saturating_sub(1);
                        (Some(Modal::Palette { input, selected }), vec![])
                    }
                    KeyCode::Down => {
                        selected = (selected + 1).min(matches.len().saturating_sub(1));
                        (Some(Modal::Palette { input, selected }), vec![])
                    }
                    KeyCode::Enter => match matches.get(selected) {
                        Some(a) => (None, self.run_action(*a).unwrap_or_default()),
                        None => (None, vec![]),
                    },
                    _ => {
                        edit_input(&mut input, &k);
                        (Some(Modal::Palette { input, selected: 0 }), vec![])
                    }
                }
            }
            Modal::Transfer {
                conversation_id,
                mut input,
                targets,
            } => {
                let candidates = transfer_candidates(targets.as_deref(), input.value());
                match k.code {
                    KeyCode::Esc => return (None, vec![]),
                    KeyCode::Tab => {
                        if let Some(first) = candidates.first() {
                            input = Input::new(first.username.clone());
                        }
                    }
                    KeyCode::Enter => match candidates.as_slice() {
                        [one] => {
                            let fx = Effect::Api(ApiCall::Transfer {
                                id: conversation_id,
                                to: one.username.clone(),
                            });
                            return (None, vec![fx]);
                        }
                        _ if targets.is_some() => {
                            self.notice(format!("{}: {}", self.s().unknown_member, input.value()))
                        }
                        _ => {}
                    },
                    _ => edit_input(&mut input, &k),
                }
                let modal = Modal::Transfer {
                    conversation_id,
                    input,
                    targets,
                };
                (Some(modal), vec![])
            }
            Modal::Attach { mut input } => match k.code {
                KeyCode::Esc => (None, vec![]),
                KeyCode::Enter => (
                    None,
                    vec![Effect::Api(ApiCall::LoadAttachment {
                        path: input.value().trim().to_string(),
                    })],
                ),
                _ => {
                    edit_input(&mut input, &k);
                    (Some(Modal::Attach { input }), vec![])
                }
            },
            Modal::AddConnection(step) => self.add_connection_key(step, k),
            Modal::RuleEditor(ed) if esc => {
                let _ = ed;
                (None, vec![])
            }
            Modal::RuleEditor(ed) => self.rule_editor_key(ed, k),
            Modal::ConfirmRule(ed) => match k.code {
                KeyCode::Char('y') | KeyCode::Enter => (None, vec![ed.save_effect()]),
                _ => (Some(Modal::RuleEditor(ed)), vec![]),
            },
        }
    }

    pub fn palette_matches(&self, query: &str) -> Vec<Action> {
        let q = query.to_lowercase();
        super::keymap::ALL_ACTIONS
            .iter()
            .filter(|(a, name)| {
                name.contains(&q)
                    || super::i18n::describe(*a, self.lang)
                        .to_lowercase()
                        .contains(&q)
            })
            .map(|(a, _)| *a)
            .collect()
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
        let lower = h.to_lowercase();
        let candidates: Vec<&Account> = self
            .accounts
            .values()
            .filter(|a| {
                a.username.to_lowercase().starts_with(&lower)
                    || a.email.to_lowercase().starts_with(&lower)
            })
            .collect();
        match candidates.as_slice() {
            [one] => Some(one.username.clone()),
            _ => None,
        }
    }

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

    fn add_connection_key(&mut self, step: AddStep, k: KeyEvent) -> (Option<Modal>, Vec<Effect>) {
        if k.code == KeyCode::Esc {
            return (None, vec![]);
        }
        match step {
            AddStep::Requesting => (Some(Modal::AddConnection(AddStep::Requesting)), vec![]),
            AddStep::Consent { url, expires_at } => {
                let fx = if matches!(k.code, KeyCode::Char('y')) {
                    vec![Effect::Copy(url.clone())]
                } else {
                    vec![]
                };
                (
                    Some(Modal::AddConnection(AddStep::Consent { url, expires_at })),
                    fx,
                )
            }
            AddStep::Permission {
                connection_id,
                choice,
            } => match k.code {
                KeyCode::Up
                | KeyCode::Down
                | KeyCode::Char('j')
                | KeyCode::Char('k')
                | KeyCode::Tab => (
                    Some(Modal::AddConnection(AddStep::Permission {
                        connection_id,
                        choice: 1 - choice.min(1),
                    })),
                    vec![],
                ),
                KeyCode::Enter if choice == 0 => (
                    None,
                    vec![Effect::Api(ApiCall::SetChatMode {
                        id: connection_id,
                        mode: ChatMode::OnlyMe,
                    })],
                ),
                KeyCode::Enter => (
                    Some(Modal::AddConnection(AddStep::PickRule {
                        connection_id,
                        selected: 0,
                    })),
                    vec![],
                ),
                _ => (
                    Some(Modal::AddConnection(AddStep::Permission {
                        connection_id,
                        choice,
                    })),
                    vec![],
                ),
            },
            AddStep::PickRule {
                connection_id,
                mut selected,
            } => {
                let rules: Vec<Rule> = self.rules.values().cloned().collect();
                match k.code {
                    KeyCode::Up | KeyCode::Char('k') => selected = selected.saturating_sub(1),
                    KeyCode::Down | KeyCode::Char('j') => {
                        selected = (selected + 1).min(rules.len())
                    }
                    KeyCode::Enter if selected == 0 => {
                        return (None, {
                            self.modal = Some(Modal::RuleEditor(RuleEditor::new(
                                None,
                                vec![connection_id],
                            )));
                            vec![]
                        });
                    }
                    KeyCode::Enter => {
                        let rule = &rules[selected - 1];
                        let mut ed = RuleEditor::from_rule(
                            rule,
                            rule.members.iter().map(|m| self.account_name(m)).collect(),
                        );
                        if !ed.sources.contains(&connection_id) {
                            ed.sources.push(connection_id);
                        }
                        self.modal = Some(Modal::RuleEditor(ed));
                        return (None, vec![]);
                    }
                    _ => {}
                }
                (
                    Some(Modal::AddConnection(AddStep::PickRule {
                        connection_id,
                        selected,
                    })),
                    vec![],
                )
            }
        }
    }

    fn rule_editor_key(&mut self, mut ed: RuleEditor, k: KeyEvent) -> (Option<Modal>, Vec<Effect>) {
        let save = self.keymap.actions(&k).contains(&Action::Save);
        if save {
            if let Err(e) = ed.validate(self) {
                ed.error = Some(e);
                return (Some(Modal::RuleEditor(ed)), vec![]);
            }
            if ed.old != OldConversations::None {
                return (Some(Modal::ConfirmRule(ed)), vec![]);
            }
            return (None, vec![ed.save_effect()]);
        }
        ed.error = None;
        match k.code {
            KeyCode::Tab | KeyCode::Down if ed.field != 1 || k.code == KeyCode::Tab => {
                ed.field = (ed.field + 1) % 5
            }
            KeyCode::BackTab | KeyCode::Up if ed.field != 1 || k.code == KeyCode::BackTab => {
                ed.field = (ed.field + 4) % 5
            }
            _ => match ed.field {
                0 => {
                    edit_input(&mut ed.name, &k);
                }
                1 => {
                    let conns: Vec<String> = self.connections.keys().cloned().collect();
                    match k.code {
                        KeyCode::Up => ed.source_cursor = ed.source_cursor.saturating_sub(1),
                        KeyCode::Down => {
                            ed.source_cursor =
                                (ed.source_cursor + 1).min(conns.len().saturating_sub(1))
                        }
                        KeyCode::Char(' ') | KeyCode::Enter => {
                            if let Some(c) = conns.get(ed.source_cursor) {
                                if let Some(p) = ed.sources.iter().position(|s| s == c) {
                                    ed.sources.remove(p);
                                } else {
                                    ed.sources.push(c.clone());
                                }
                            }
                        }
                        _ => {}
                    }
                }
                2 => match k.code {
                    KeyCode::Enter => {
                        let typed = ed.member_input.value().to_string();
                        match self.resolve_account(&typed) {
                            Some(u) => {
                                if !ed.members.contains(&u) {
                                    ed.members.push(u);
                                }
                                ed.member_input = Input::default();
                            }
                            None => {
                                ed.error =
                                    Some(format!("{}: {}", self.s().unknown_member, typed.trim()))
                            }
                        }
                    }
                    KeyCode::Backspace if ed.member_input.value().is_empty() => {
                        ed.members.pop();
                    }
                    _ => {
                        edit_input(&mut ed.member_input, &k);
                    }
                },
                3 => {
                    if matches!(
                        k.code,
                        KeyCode::Char(' ') | KeyCode::Left | KeyCode::Right | KeyCode::Enter
                    ) {
                        ed.method = match ed.method {
                            Method::RoundRobin => Method::SelfClaim,
                            Method::SelfClaim => Method::RoundRobin,
                        };
                    }
                }
                _ => {
                    let order = [
                        OldConversations::None,
                        OldConversations::Available,
                        OldConversations::All,
                    ];
                    let i = order.iter().position(|o| *o == ed.old).unwrap_or(0);
                    match k.code {
                        KeyCode::Char(' ') | KeyCode::Right | KeyCode::Enter => {
                            ed.old = order[(i + 1) % 3]
                        }
                        KeyCode::Left => ed.old = order[(i + 2) % 3],
                        _ => {}
                    }
                }
            },
        }
        (Some(Modal::RuleEditor(ed)), vec![])
    }
}

impl RuleEditor {
    pub fn new(id: Option<RuleId>, sources: Vec<ConnectionId>) -> RuleEditor {
        RuleEditor {
            id,
            name: Input::default(),
            sources,
            source_cursor: 0,
            members: vec![],
            member_input: Input::default(),
            method: Method::RoundRobin,
            old: OldConversations::None,
            field: 0,
            error: None,
        }
    }

    pub fn from_rule(rule: &Rule, members: Vec<String>) -> RuleEditor {
        RuleEditor {
            id: Some(rule.id.clone()),
            name: Input::new(rule.name.clone()),
            sources: rule.sources.clone(),
            members,
            method: rule.method,
            old: rule.old_conversations,
            ..RuleEditor::new(None, vec![])
        }
    }

    fn validate(&self, app: &App) -> Result<(), String> {
        let s = app.s();
        if self.name.value().trim().is_empty() {
            return Err(format!("{} ?", s.rule_name));
        }
        if self.sources.is_empty() {
            return Err(format!("{} ?", s.sources));
        }
        if self.members.is_empty() {
            return Err(format!("{} ?", s.members));
        }
        Ok(())
    }

    fn save_effect(&self) -> Effect {
        Effect::Api(ApiCall::SaveRule {
            id: self.id.clone(),
            input: RuleInput {
                name: nfc(self.name.value().trim()),
                sources: self.sources.clone(),
                members: self.members.clone(),
                method: self.method,
                old_conversations: self.old,
            },
        })
    }
}

/// What one inbox frame shows.
pub struct InboxFrame<'a> {
    /// Mine, unclaimed, all.
    pub counts: [usize; 3],
    pub window: Vec<&'a Conversation>,
    pub total: usize,
    pub selected: Option<&'a Conversation>,
}

/// Whom a transfer dialog offers for what was typed: an exact username alone, else every target
/// whose username or name starts with it (accents and case ignored).
pub fn transfer_candidates<'a>(
    targets: Option<&'a [TransferTarget]>,
    typed: &str,
) -> Vec<&'a TransferTarget> {
    let targets = targets.unwrap_or_default();
    let typed = typed.trim();
    if let Some(exact) = targets
        .iter()
        .find(|t| t.username.eq_ignore_ascii_case(typed))
    {
        return vec![exact];
    }
    let needle = fold(typed);
    targets
        .iter()
        .filter(|t| fold(&t.username).starts_with(&needle) || fold(&t.name).starts_with(&needle))
        .collect()
}

/// Accent- and case-insensitive: agents type "vo" for "Võ", "d" for "Đ".
fn matches_filter(c: &Conversation, needle: &str) -> bool {
    fold(&c.customer.display_name).contains(needle)
        || c.customer.user_id.contains(needle)
        || fold(&c.preview).contains(needle)
}

/// Rows `start..start + count` of `list` in `order`, in O(n) (select, then sort only the window).
fn window_of(
    mut list: Vec<&Conversation>,
    start: usize,
    count: usize,
    order: impl Fn(&&Conversation, &&Conversation) -> std::cmp::Ordering,
) -> Vec<&Conversation> {
    if start >= list.len() || count == 0 {
        return vec![];
    }
    list.select_nth_unstable_by(start, &order);
    let rest = &mut list[start..];
    let end = count.min(rest.len());
    if end < rest.len() {
        rest.select_nth_unstable_by(end, &order);
    }
    let window = &mut rest[..end];
    window.sort_unstable_by(&order);
    window.to_vec()
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

/// Line editing keys for every text field (tui-input requests, independent of the terminal crate).
pub fn edit_input(input: &mut Input, k: &KeyEvent) {
    use crossterm::event::KeyModifiers;
    let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
    let req = match k.code {
        KeyCode::Char('a') if ctrl => InputRequest::GoToStart,
        KeyCode::Char('e') if ctrl => InputRequest::GoToEnd,
        KeyCode::Char('w') if ctrl => InputRequest::DeletePrevWord,
        KeyCode::Char('u') if ctrl => InputRequest::DeleteLine,
        KeyCode::Char('k') if ctrl => InputRequest::DeleteTillEnd,
        KeyCode::Char(_) if ctrl => return,
        KeyCode::Char(c) => InputRequest::InsertChar(c),
        KeyCode::Backspace if ctrl => InputRequest::DeletePrevWord,
        KeyCode::Backspace => InputRequest::DeletePrevChar,
        KeyCode::Delete => InputRequest::DeleteNextChar,
        KeyCode::Left if ctrl => InputRequest::GoToPrevWord,
        KeyCode::Right if ctrl => InputRequest::GoToNextWord,
        KeyCode::Left => InputRequest::GoToPrevChar,
        KeyCode::Right => InputRequest::GoToNextChar,
        KeyCode::Home => InputRequest::GoToStart,
        KeyCode::End => InputRequest::GoToEnd,
        _ => return,
    };
    input.handle(req);
}
