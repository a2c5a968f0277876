//! Tab 1, *Hộp thư*: the views (mine, unclaimed, all), the list with its `/` filter, the thread
//! beside it and the composer.

use crate::console::component::{Jump, Out};
use crate::console::data::{customer_name, Data};
use crate::console::i18n::{describe, Strings};
use crate::console::inbox::{is_unclaimed, view_order};
use crate::console::keymap::Action;
use crate::console::msg::{ApiCall, Effect, Link};
use crate::console::popups::{attach, customer, labels, transfer, Modal};
use crate::console::ui::*;
use crate::model::text::{char_count, fold, nfc, sanitize_for_terminal};
use crate::model::QuickReply;
use crate::model::*;
use crate::wire::{OutboundAttachment, TransferTarget, View};
use crossterm::event::{KeyCode, KeyEvent};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Block, Borders, Paragraph};
use ratatui::Frame;
use tui_input::Input;
use unicode_width::UnicodeWidthStr;

/// The actions this tab handles, in help order.
pub const HELP: &[Action] = &[
    Action::Filter,
    Action::ViewMine,
    Action::ViewUnclaimed,
    Action::ViewAll,
    Action::Urgent,
    Action::Claim,
    Action::Reply,
    Action::QuoteReply,
    Action::Note,
    Action::Customer,
    Action::Labels,
    Action::Send,
    Action::Attach,
    Action::Editor,
    Action::Transfer,
    Action::Release,
    Action::Done,
    Action::Older,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    List,
    Conversation,
    Composer,
}

/// What the composer writes: a reply to the customer, or a private note for the staff.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compose {
    #[default]
    Reply,
    Note,
}

pub struct InboxTab {
    pub view: View,
    pub focus: Focus,
    pub selected: usize,
    pub open: Option<ConversationId>,
    /// Lines scrolled up from the newest message.
    pub scroll: usize,
    pub filter: Option<Input>,
    /// Keys go to the filter while typing it.
    pub filter_typing: bool,
    /// The thread being loaded for the pane beside the list (one at a time, so holding `j` over
    /// a long list does not queue a load per row).
    preview_loading: Option<ConversationId>,
    pub composer: Input,
    pub compose: Compose,
    pub quote: Option<String>,
    /// Who may see the open conversation (whom a note can mention), from the hub.
    pub colleagues: Option<(ConversationId, Vec<TransferTarget>)>,
    /// The client key of the note on its way to the hub.
    pending_note: Option<String>,
    /// The quick reply picked in the list `/` + letters opens in the composer.
    pub quick_selected: usize,
    /// The image or file of the quick reply inserted in the composer (its id and how it is
    /// shown): sent as its own reply after the text.
    pub quick_file: Option<(String, String)>,
    /// The message the thread was opened at (a search result): shown marked, the thread
    /// scrolled to it; older pages are loaded until it is there.
    pub anchor: Option<Anchor>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    pub conversation_id: ConversationId,
    pub message_id: String,
    /// Older pages still allowed to be loaded looking for it.
    pub pages_left: u32,
}

/// What one inbox frame shows.
pub struct InboxFrame<'a> {
    /// Mine, unclaimed, all.
    pub counts: [usize; 3],
    pub window: Vec<&'a Conversation>,
    pub total: usize,
    pub selected: Option<&'a Conversation>,
}

/// Whether a conversation is in a view, for me.
pub fn in_view(d: &Data, view: View, c: &Conversation) -> bool {
    match view {
        View::Mine => c.assignee.as_deref() == Some(d.me_id()),
        View::Unclaimed => is_unclaimed(c),
        View::All => d.is_admin(),
    }
}

impl Default for InboxTab {
    fn default() -> Self {
        InboxTab {
            view: View::Mine,
            focus: Focus::List,
            selected: 0,
            open: None,
            scroll: 0,
            filter: None,
            filter_typing: false,
            preview_loading: None,
            composer: Input::default(),
            compose: Compose::Reply,
            quote: None,
            colleagues: None,
            pending_note: None,
            quick_selected: 0,
            quick_file: None,
            anchor: None,
        }
    }
}

impl InboxTab {
    // ----- derived views -----

    /// Everything the inbox draws: the counts of every view and the visible rows
    /// `start..start + rows` of the current one.
    pub fn frame<'a>(&self, d: &'a Data, start: usize, rows: usize) -> InboxFrame<'a> {
        let counts = [
            d.count(View::Mine),
            d.count(View::Unclaimed),
            d.count(View::All),
        ];
        let (window, total) = self.visible_window(d, start, rows);
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
    fn matching<'a>(&self, d: &'a Data, needle: &str) -> Vec<&'a Conversation> {
        d.conversations
            .values()
            .filter(|c| in_view(d, self.view, c))
            .filter(|c| matches_filter(c, needle))
            .collect()
    }

    /// The conversations of the current view, filtered and sorted as the hub sorts them.
    pub fn visible<'a>(&self, d: &'a Data) -> Vec<&'a Conversation> {
        let needle = self.filter_needle();
        if needle.is_empty() {
            return d
                .conversations
                .ordered(self.view, d.me_id(), d.is_admin())
                .collect();
        }
        let mut list = self.matching(d, &needle);
        list.sort_unstable_by(view_order(self.view));
        list
    }

    /// Rows `start..start + count` of `visible()` and its length. Without a filter the inbox's
    /// index gives them directly; with one, an O(n) select over the matches (never a full sort).
    pub fn visible_window<'a>(
        &self,
        d: &'a Data,
        start: usize,
        count: usize,
    ) -> (Vec<&'a Conversation>, usize) {
        let needle = self.filter_needle();
        if needle.is_empty() {
            let window = d
                .conversations
                .ordered(self.view, d.me_id(), d.is_admin())
                .skip(start)
                .take(count)
                .collect();
            return (window, d.count(self.view));
        }
        let list = self.matching(d, &needle);
        let len = list.len();
        (window_of(list, start, count, view_order(self.view)), len)
    }

    pub fn selected_conversation<'a>(&self, d: &'a Data) -> Option<&'a Conversation> {
        self.visible_window(d, self.selected, 1)
            .0
            .into_iter()
            .next()
    }

    pub fn open_conversation<'a>(&self, d: &'a Data) -> Option<&'a Conversation> {
        self.open.as_ref().and_then(|id| d.conversations.get(id))
    }

    /// The conversation an action is for: the one under the cursor in the list, else the open one.
    fn current_conversation<'a>(&self, d: &'a Data) -> Option<&'a Conversation> {
        match self.focus {
            Focus::List => self.selected_conversation(d),
            _ => self.open_conversation(d),
        }
    }

    pub fn clamp_selection(&mut self, d: &Data) {
        let n = self.visible(d).len();
        if self.selected >= n {
            self.selected = n.saturating_sub(1);
        }
    }

    // ----- what the hub says -----

    /// The thread beside the list follows the cursor: the selected conversation's latest
    /// messages are loaded when it has none yet.
    pub fn load_preview(&mut self, d: &Data) -> Vec<Effect> {
        if self.focus != Focus::List || self.preview_loading.is_some() {
            return vec![];
        }
        let Some(id) = self.selected_conversation(d).map(|c| c.id.clone()) else {
            return vec![];
        };
        if d.messages.contains_key(&id) || d.link != Link::Connected {
            return vec![];
        }
        self.preview_loading = Some(id.clone());
        vec![Effect::Api(ApiCall::LoadMessages { id, before: None })]
    }

    /// The live link changed: a load in flight is forgotten when it went down; the open thread
    /// is loaded again when it came back.
    pub fn link_changed(&mut self, link: Link, came_back: bool) -> Vec<Effect> {
        if link != Link::Connected {
            self.preview_loading = None;
        }
        match (&self.open, came_back) {
            (Some(id), true) => vec![Effect::Api(ApiCall::LoadMessages {
                id: id.clone(),
                before: None,
            })],
            _ => vec![],
        }
    }

    pub fn messages_loaded(&mut self, conversation_id: &str) {
        if self.preview_loading.as_deref() == Some(conversation_id) {
            self.preview_loading = None;
        }
    }

    /// The anchor's thread got a page: when the message is not in it yet, the page before.
    pub fn follow_anchor(&mut self, d: &Data, conversation_id: &str) -> Vec<Effect> {
        let Some(a) = &mut self.anchor else {
            return vec![];
        };
        if a.conversation_id != conversation_id || a.pages_left == 0 {
            return vec![];
        }
        let thread = d.messages.get(conversation_id);
        if thread.is_some_and(|l| l.iter().any(|m| m.id == a.message_id)) {
            return vec![];
        }
        let Some(before) = d.older_cursor.get(conversation_id).cloned().flatten() else {
            return vec![];
        };
        a.pages_left -= 1;
        vec![Effect::Api(ApiCall::LoadMessages {
            id: conversation_id.to_string(),
            before: Some(before),
        })]
    }

    /// Opens a conversation found elsewhere (search), at a message when given; the list moves to
    /// the view that holds it, if one does.
    pub fn open_at(&mut self, d: &mut Data, jump: Jump) -> Vec<Effect> {
        let id = jump.conversation.id.clone();
        if d.conversations.get(&id).is_none() {
            // The hub just said it is visible; this console had not heard of it yet.
            d.conversations.insert(jump.conversation);
        }
        self.filter = None;
        self.filter_typing = false;
        if let Some(c) = d.conversations.get(&id) {
            if let Some(view) = [View::Mine, View::Unclaimed, View::All]
                .into_iter()
                .find(|v| in_view(d, *v, c))
            {
                self.view = view;
            }
        }
        if let Some(pos) = self.visible(d).iter().position(|c| c.id == id) {
            self.selected = pos;
        }
        let fx = self.open(d, &id);
        self.anchor = jump.message.map(|message_id| Anchor {
            conversation_id: id,
            message_id,
            pages_left: 20,
        });
        fx
    }

    pub fn messages_failed(&mut self, d: &mut Data, conversation_id: ConversationId) {
        if self.preview_loading.as_ref() == Some(&conversation_id) {
            self.preview_loading = None;
            // Not again for this one until the link comes back.
            d.messages.entry(conversation_id).or_default();
        }
    }

    pub fn editor_done(&mut self, text: &str) {
        self.composer = Input::new(nfc(text));
        self.focus = Focus::Composer;
    }

    /// A file read for a thread (picked, or a quick reply's) goes out as its own reply there,
    /// quoting what its thread's composer quotes if that thread is still open.
    pub fn attachment(
        &self,
        d: &Data,
        conversation: ConversationId,
        att: OutboundAttachment,
    ) -> Vec<Effect> {
        let quote = if self.open.as_ref() == Some(&conversation) {
            self.quote.clone()
        } else {
            None
        };
        let item = d.new_outbox_item(conversation, String::new(), quote, Some(att));
        vec![Effect::Api(ApiCall::Reply(item))]
    }

    /// The field pasted text goes to, if one has the keys.
    pub fn paste_target(&mut self) -> Option<&mut Input> {
        (self.focus == Focus::Composer).then_some(&mut self.composer)
    }

    // ----- keys -----

    /// Keys go to a text field (the composer, the filter being typed) rather than the keymap.
    pub fn takes_text(&self) -> bool {
        self.focus == Focus::Composer || self.filter_typing
    }

    pub fn on_text_key(&mut self, d: &mut Data, k: KeyEvent) -> Out {
        if self.focus == Focus::Composer {
            return match k.code {
                KeyCode::Esc => {
                    self.focus = Focus::Conversation;
                    self.quote = None;
                    self.quick_file = None;
                    self.compose = Compose::Reply;
                    Out::none()
                }
                KeyCode::Enter if self.compose == Compose::Note => Out::effects(self.send_note(d)),
                KeyCode::Enter => Out::effects(self.send_composer(d)),
                KeyCode::Tab if self.compose == Compose::Note => {
                    self.complete_mention();
                    Out::none()
                }
                KeyCode::Tab => {
                    self.insert_quick_reply(d);
                    Out::none()
                }
                KeyCode::Up | KeyCode::Down if !self.quick_candidates(d).is_empty() => {
                    let n = self.quick_candidates(d).len();
                    self.quick_selected = match k.code {
                        KeyCode::Up => self.quick_selected.saturating_sub(1),
                        _ => (self.quick_selected + 1).min(n - 1),
                    };
                    Out::none()
                }
                _ => {
                    edit_input(&mut self.composer, &k);
                    self.quick_selected = 0;
                    Out::none()
                }
            };
        }
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
        Out::none()
    }

    /// Runs an action if it applies here, now.
    pub fn run_action(&mut self, d: &mut Data, a: Action) -> Option<Out> {
        use Action::*;
        let fx = match (a, self.focus) {
            (Up, Focus::Conversation) => {
                self.scroll += 1;
                vec![]
            }
            (Down, Focus::Conversation) => {
                if self.scroll == 0 {
                    // Below the message found: back to the newest.
                    self.anchor = None;
                }
                self.scroll = self.scroll.saturating_sub(1);
                vec![]
            }
            (PageUp, Focus::Conversation) => {
                self.scroll += 10;
                vec![]
            }
            (PageDown, Focus::Conversation) => {
                self.scroll = self.scroll.saturating_sub(10);
                vec![]
            }
            (Up | Down | PageUp | PageDown, _) => {
                let len = self.visible(d).len();
                self.selected = step_selection(self.selected, a, len);
                vec![]
            }
            (Filter, Focus::List) => {
                self.filter = Some(Input::default());
                self.filter_typing = true;
                vec![]
            }
            (Back, Focus::Conversation) => {
                self.focus = Focus::List;
                self.anchor = None;
                vec![]
            }
            (Back, Focus::List) if self.filter.is_some() => {
                self.filter = None;
                vec![]
            }
            (ViewMine, _) => self.switch_view(View::Mine),
            (ViewUnclaimed, _) => self.switch_view(View::Unclaimed),
            (ViewAll, _) if d.is_admin() => self.switch_view(View::All),
            (Urgent, _) => self.jump_urgent(d),
            (Open, Focus::List) => self.open_selected(d),
            (Claim, _) => {
                let id = self.current_conversation(d)?.id.clone();
                // Claimed from the list, it leaves *Chưa ai nhận* and the cursor moves on: it is
                // opened, so the thread and the next `r` stay with the customer just claimed.
                let mut fx = match self.focus {
                    Focus::List => self.open_selected(d),
                    _ => vec![],
                };
                fx.push(Effect::Api(ApiCall::Claim(id)));
                fx
            }
            (Reply | QuoteReply, _) => {
                // From the list, the reply is for the conversation under the cursor (the one the
                // thread pane shows), not one opened earlier.
                if self.open.is_none() || self.focus == Focus::List {
                    self.open_selected(d);
                }
                self.open.as_ref()?;
                self.quote = if a == QuoteReply {
                    self.last_inbound_msg_id(d)
                } else {
                    None
                };
                self.focus = Focus::Composer;
                vec![]
            }
            (Note, _) => {
                if self.open.is_none() || self.focus == Focus::List {
                    self.open_selected(d);
                }
                let id = self.open.clone()?;
                self.quote = None;
                self.compose = Compose::Note;
                self.focus = Focus::Composer;
                let known = self.colleagues.as_ref().is_some_and(|(c, _)| *c == id);
                if known {
                    vec![]
                } else {
                    vec![Effect::Api(ApiCall::Colleagues(id))]
                }
            }
            (Customer, _) => {
                let id = self.current_conversation(d)?.id.clone();
                let (card, fx) = customer::CustomerCard::open(id);
                return Some(Out {
                    effects: fx,
                    ..Out::open(Modal::Customer(card))
                });
            }
            (Labels, _) => {
                let id = self.current_conversation(d)?.id.clone();
                let (popup, fx) = labels::Labels::open(id);
                return Some(Out {
                    effects: fx,
                    ..Out::open(Modal::Labels(popup))
                });
            }
            (Attach, Focus::Conversation) => {
                let conversation = self.open.clone()?;
                return Some(Out::open(Modal::Attach(attach::Attach::new(conversation))));
            }
            (Editor, Focus::Conversation) => {
                vec![Effect::OpenEditor(self.composer.value().to_string())]
            }
            (Transfer, _) => {
                let id = self.current_conversation(d)?.id.clone();
                return Some(Out {
                    effects: vec![Effect::Api(ApiCall::TransferTargets(id.clone()))],
                    ..Out::open(Modal::Transfer(transfer::Transfer::new(id)))
                });
            }
            (Release, _) => vec![Effect::Api(ApiCall::Release(
                self.current_conversation(d)?.id.clone(),
            ))],
            (Done, _) => vec![Effect::Api(ApiCall::Done(
                self.current_conversation(d)?.id.clone(),
            ))],
            (Older, Focus::Conversation) => {
                let id = self.open.clone()?;
                let before = d.older_cursor.get(&id).cloned().flatten()?;
                vec![Effect::Api(ApiCall::LoadMessages {
                    id,
                    before: Some(before),
                })]
            }
            _ => return None,
        };
        Some(Out::effects(fx))
    }

    fn switch_view(&mut self, view: View) -> Vec<Effect> {
        self.view = view;
        self.selected = 0;
        self.focus = Focus::List;
        vec![]
    }

    fn last_inbound_msg_id(&self, d: &Data) -> Option<String> {
        let id = self.open.as_ref()?;
        d.messages
            .get(id)?
            .iter()
            .rev()
            .find(|m| m.direction == Direction::Inbound)
            .and_then(|m| m.zalo_msg_id.clone())
    }

    fn open_selected(&mut self, d: &Data) -> Vec<Effect> {
        let Some(id) = self.selected_conversation(d).map(|c| c.id.clone()) else {
            return vec![];
        };
        self.open(d, &id)
    }

    /// Opens a thread at its newest message: loads it and marks it read.
    fn open(&mut self, d: &Data, id: &str) -> Vec<Effect> {
        let unread = d
            .conversations
            .get(id)
            .is_some_and(|c| c.unread_for(d.me_id()) > 0);
        self.open = Some(id.to_string());
        self.focus = Focus::Conversation;
        self.scroll = 0;
        self.anchor = None;
        let mut fx = vec![Effect::Api(ApiCall::LoadMessages {
            id: id.to_string(),
            before: None,
        })];
        if unread {
            fx.push(Effect::Api(ApiCall::Read(id.to_string())));
        }
        fx
    }

    /// The most urgent conversation: the unclaimed one waiting longest, else my oldest unread.
    pub fn jump_urgent(&mut self, d: &mut Data) -> Vec<Effect> {
        self.filter = None;
        if d.count(View::Unclaimed) > 0 {
            self.view = View::Unclaimed;
            self.selected = 0;
        } else {
            self.view = View::Mine;
            let me = d.me_id().to_string();
            let pos = self.visible(d).iter().position(|c| c.unread_for(&me) > 0);
            let Some(pos) = pos else {
                d.notice(d.s().nothing_here);
                return vec![];
            };
            self.selected = pos;
        }
        self.focus = Focus::List;
        self.open_selected(d)
    }

    /// The `/letters` being typed in a reply (the last word, starting with `/`), without the `/`.
    fn quick_prefix(&self) -> Option<&str> {
        if self.compose != Compose::Reply {
            return None;
        }
        let text = self.composer.value();
        let word = text.rsplit(char::is_whitespace).next()?;
        word.strip_prefix('/')
    }

    /// The quick replies matching the `/letters` typed, best first (by shortcut, then title;
    /// accents and case ignored, letters in order).
    pub fn quick_candidates<'a>(&self, d: &'a Data) -> Vec<&'a QuickReply> {
        let Some(prefix) = self.quick_prefix() else {
            return vec![];
        };
        let needle = fold(prefix);
        let mut ranked: Vec<(usize, &QuickReply)> = d
            .quick_replies
            .values()
            .filter_map(|q| {
                let by_shortcut = fuzzy_rank(&needle, &fold(&q.shortcut));
                let by_title = fuzzy_rank(&needle, &fold(&q.title)).map(|r| r + 1_000);
                let rank = match (by_shortcut, by_title) {
                    (Some(a), Some(b)) => a.min(b),
                    (a, b) => a.or(b)?,
                };
                Some((rank, q))
            })
            .collect();
        ranked.sort_by(|a, b| (a.0, &a.1.shortcut).cmp(&(b.0, &b.1.shortcut)));
        ranked.into_iter().map(|(_, q)| q).take(6).collect()
    }

    /// Tab on `/letters`: the picked quick reply's text, its variables filled for the open
    /// conversation, in place of the `/letters`.
    fn insert_quick_reply(&mut self, d: &Data) {
        let Some(q) = self
            .quick_candidates(d)
            .get(self.quick_selected)
            .copied()
            .cloned()
        else {
            return;
        };
        let Some(conv) = self.open_conversation(d) else {
            return;
        };
        let agent = d.me.as_ref().map(|m| m.name.as_str()).unwrap_or_default();
        let filled = q.filled(
            customer_name(conv),
            agent,
            &d.connection_name(&conv.connection_id),
        );
        let text = self.composer.value();
        let word_start = text
            .rfind(char::is_whitespace)
            .map(|i| i + text[i..].chars().next().map_or(1, char::len_utf8))
            .unwrap_or(0);
        self.composer = Input::new(format!("{}{filled}", &text[..word_start]));
        self.quick_selected = 0;
        self.quick_file = q.attachment.as_ref().map(|a| (q.id.clone(), file_label(a)));
    }

    /// The hub took a note: when it is the one being sent from here, the composer is done.
    pub fn note_added(&mut self, note: &Message) {
        if note.client_key.is_some() && note.client_key == self.pending_note {
            self.pending_note = None;
            self.composer = Input::default();
            self.compose = Compose::Reply;
            self.focus = Focus::Conversation;
        }
    }

    pub fn colleagues_loaded(
        &mut self,
        conversation_id: ConversationId,
        list: Vec<TransferTarget>,
    ) {
        self.colleagues = Some((conversation_id, list));
    }

    /// The `@name` being typed at the end of a note, if any (without the `@`).
    fn mention_prefix(&self) -> Option<&str> {
        let text = self.composer.value();
        let at = text.rfind('@')?;
        let prefix = &text[at + 1..];
        let starts_word = text[..at]
            .chars()
            .next_back()
            .is_none_or(|c| !c.is_alphanumeric());
        (starts_word && !prefix.contains(char::is_whitespace)).then_some(prefix)
    }

    /// The colleagues whose username starts with the `@name` being typed (accents, case ignored).
    pub fn mention_candidates(&self) -> Vec<&TransferTarget> {
        let (Some(prefix), Some((conv, list))) = (self.mention_prefix(), &self.colleagues) else {
            return vec![];
        };
        if self.open.as_ref() != Some(conv) {
            return vec![];
        }
        let needle = fold(prefix);
        list.iter()
            .filter(|t| fold(&t.username).starts_with(&needle))
            .collect()
    }

    /// Tab in a note: the `@name` being typed becomes the first candidate's username.
    fn complete_mention(&mut self) {
        let Some(first) = self
            .mention_candidates()
            .first()
            .map(|t| t.username.clone())
        else {
            return;
        };
        let text = self.composer.value();
        let at = text.rfind('@').unwrap_or(text.len());
        self.composer = Input::new(format!("{}@{first} ", &text[..at]));
    }

    fn send_note(&mut self, d: &mut Data) -> Vec<Effect> {
        let text = nfc(self.composer.value().trim());
        let Some(conv) = self.open.clone() else {
            return vec![];
        };
        if text.is_empty() {
            return vec![];
        }
        if d.link != Link::Connected {
            // Notes are not kept for later like replies: say so rather than lose it silently.
            d.notice(d.s().link_offline);
            return vec![];
        }
        // The text stays in the composer until the hub has the note (a refusal leaves it there).
        let client_key = format!("{}-{}-{}", d.me_id(), d.now, rand::random::<u32>());
        self.pending_note = Some(client_key.clone());
        vec![Effect::Api(ApiCall::Note {
            conversation_id: conv,
            client_key,
            text,
        })]
    }

    /// Enter in a reply: the text, then the inserted quick reply's file (fetched from the hub,
    /// sent as its own reply).
    fn send_composer(&mut self, d: &mut Data) -> Vec<Effect> {
        let text = nfc(self.composer.value().trim());
        if text.is_empty() && self.quick_file.is_none() {
            return vec![];
        }
        let n = char_count(&text);
        if n > MAX_TEXT_CHARS {
            d.notice(format!("{n}/{MAX_TEXT_CHARS}"));
            return vec![];
        }
        let Some(conv) = self.open.clone() else {
            return vec![];
        };
        let mut fx = vec![];
        if !text.is_empty() {
            let item = d.new_outbox_item(conv.clone(), text, self.quote.take(), None);
            d.outbox.push(item.clone());
            if d.link != Link::Connected {
                d.notice(d.s().offline_queued);
            }
            fx.push(Effect::Api(ApiCall::Reply(item)));
        }
        if let Some((id, _)) = self.quick_file.take() {
            fx.push(Effect::Api(ApiCall::QuickReplyFile {
                id,
                conversation: conv,
            }));
        }
        self.composer = Input::default();
        fx
    }

    // ----- view -----

    /// The rows of the list that fit in `main` (two lines each), for the frame the app reads.
    pub fn rows_for(main: Rect) -> usize {
        (main.height.saturating_sub(1) as usize / 2).max(1)
    }

    pub fn draw(&self, f: &mut Frame, d: &Data, theme: &Theme, area: Rect, frame: &InboxFrame) {
        let s = d.s();
        let [views, body] =
            Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(area);
        let mut spans = vec![];
        let mut views_list = vec![
            (View::Mine, s.view_mine, Action::ViewMine),
            (View::Unclaimed, s.view_unclaimed, Action::ViewUnclaimed),
        ];
        if d.is_admin() {
            views_list.push((View::All, s.view_all, Action::ViewAll));
        }
        for (i, (v, label, action)) in views_list.into_iter().enumerate() {
            let text = format!(
                " {} {} ({}) ",
                d.keymap.hint(action),
                label,
                frame.counts[i]
            );
            spans.push(Span::styled(text, theme.row(v == self.view)));
        }
        if let Some(fl) = &self.filter {
            spans.push(Span::raw(format!("  /{}", clean(fl.value()))));
            if self.filter_typing {
                spans.push(Span::styled("▏", theme.bold()));
            }
        }
        f.render_widget(Paragraph::new(Line::from(spans)), views);

        let list_width = (body.width * 2 / 5).clamp(26, 48);
        let [list, pane] =
            Layout::horizontal([Constraint::Length(list_width), Constraint::Min(20)]).areas(body);
        self.draw_list(f, d, theme, list, frame);
        self.draw_conversation(f, d, theme, pane, frame.selected);
    }

    fn draw_list(&self, f: &mut Frame, d: &Data, theme: &Theme, area: Rect, frame: &InboxFrame) {
        let block = Block::default().borders(Borders::RIGHT);
        let inner = block.inner(area);
        f.render_widget(block, area);
        let rows = (inner.height as usize / 2).max(1);
        let start = self.selected.saturating_sub(rows - 1);
        let items = &frame.window;
        if frame.total == 0 {
            f.render_widget(Paragraph::new(d.s().nothing_here).style(theme.dim()), inner);
            return;
        }
        let me = d.me_id();
        let w = inner.width as usize;
        let mut lines = vec![];
        for (i, c) in items
            .iter()
            .take(rows)
            .enumerate()
            .map(|(k, c)| (start + k, c))
        {
            let unread = c.unread_for(me);
            let marker = if unread > 0 { "●" } else { " " };
            let name = customer_name(c);
            let when = match self.view {
                View::Unclaimed => fmt_duration(d.now - c.waiting_at()),
                _ => fmt_time(theme, c.last_activity_at, false),
            };
            let badge = if unread > 0 {
                format!(" [{unread}]")
            } else {
                String::new()
            };
            let right = format!("{when}{badge}");
            let name = truncate(&clean(name), w.saturating_sub(right.width() + 3));
            let pad = w.saturating_sub(2 + name.width() + right.width());
            let mut style = if unread > 0 {
                theme.bold()
            } else {
                Style::default()
            };
            if i == self.selected {
                style = style.patch(theme.selected());
            }
            lines.push(Line::from(vec![Span::styled(
                format!("{marker} {name}{}{right}", " ".repeat(pad)),
                style,
            )]));
            let state = match (c.state, c.status) {
                (_, ConvStatus::Done) => format!("✔ {}", d.s().done),
                (ConvState::Unclaimed, _) => format!("◌ {}", d.s().unclaimed),
                (ConvState::Unattended, _) => format!("◇ {}", d.s().unattended),
                (ConvState::Assigned, _) => match &c.assignee {
                    Some(a) if a == me => String::new(),
                    Some(a) => format!("→ {}", d.account_name(a)),
                    None => String::new(),
                },
            };
            let head: Vec<String> = [state, hashtags(&c.customer.labels)]
                .into_iter()
                .filter(|part| !part.is_empty())
                .collect();
            let sep = if head.is_empty() { "" } else { " · " };
            let preview = truncate(
                &format!("  {}{sep}{}", head.join(" · "), clean(&c.preview)),
                w,
            );
            let pstyle = if i == self.selected {
                theme.selected()
            } else {
                theme.dim()
            };
            lines.push(Line::from(Span::styled(preview, pstyle)));
        }
        f.render_widget(Paragraph::new(lines), inner);
    }

    fn draw_conversation(
        &self,
        f: &mut Frame,
        d: &Data,
        theme: &Theme,
        area: Rect,
        selected: Option<&Conversation>,
    ) {
        let s = d.s();
        // In the list the pane follows the cursor; inside a thread it shows the open one.
        let c = match self.focus {
            Focus::List => selected.or(self.open_conversation(d)),
            _ => self.open_conversation(d).or(selected),
        };
        let Some(c) = c else {
            f.render_widget(Paragraph::new(s.no_conversation).style(theme.dim()), area);
            return;
        };
        let composer_h = if self.focus == Focus::Composer { 3 } else { 1 };
        let [header, msgs, composer] = Layout::vertical([
            Constraint::Length(2),
            Constraint::Min(1),
            Constraint::Length(composer_h),
        ])
        .areas(area);
        f.render_widget(Paragraph::new(thread_header(d, theme, c)), header);
        self.draw_messages(f, d, theme, msgs, c);
        if self.focus == Focus::Composer {
            self.draw_quick_replies(f, d, theme, msgs);
        }
        if self.focus == Focus::Composer {
            self.draw_composer(f, d, theme, composer);
        } else {
            let k = &d.keymap;
            let hint = [
                Action::Reply,
                Action::Claim,
                Action::Transfer,
                Action::Done,
                Action::Urgent,
            ]
            .map(|a| format!("{} {}", k.hint(a), describe(a, d.lang)))
            .join(" · ");
            f.render_widget(
                Paragraph::new(truncate(&hint, composer.width as usize)).style(theme.dim()),
                composer,
            );
        }
    }

    /// Messages, newest at the bottom, scrolled by `self.scroll` lines; then the replies still
    /// in the outbox.
    fn draw_messages(&self, f: &mut Frame, d: &Data, theme: &Theme, area: Rect, c: &Conversation) {
        let s = d.s();
        let name = customer_name(c);
        let width = area.width.max(10) as usize;
        let mut lines: Vec<Line> = vec![];
        let list = d.messages.get(&c.id).map(|v| v.as_slice()).unwrap_or(&[]);
        if d.older_cursor.get(&c.id).cloned().flatten().is_some() {
            lines.push(Line::from(Span::styled(
                format!(
                    "↑ {} {}",
                    d.keymap.hint(Action::Older),
                    describe(Action::Older, d.lang)
                ),
                theme.dim(),
            )));
        }
        let mut anchor_line = None;
        for m in list {
            let anchored = self
                .anchor
                .as_ref()
                .is_some_and(|a| a.conversation_id == c.id && a.message_id == m.id);
            if anchored {
                anchor_line = Some(lines.len());
            }
            let sender = match m.direction {
                Direction::Inbound => clean(if m.sender_name.is_empty() {
                    name
                } else {
                    &m.sender_name
                }),
                // History synced from Zalo has no staff name: it was the page that answered.
                Direction::Outbound if m.sender_name.is_empty() => {
                    format!("→ {}", clean(&d.connection_name(&c.connection_id)))
                }
                Direction::Outbound => format!("→ {}", clean(&m.sender_name)),
            };
            let note = m.kind == MessageKind::Note;
            let sender = if note {
                // Said in words, not only in colour: staff only, never sent to the customer.
                format!("✎ {} · {}", s.note, clean(&m.sender_name))
            } else {
                sender
            };
            let head_style = match m.direction {
                _ if note => theme.fg(Color::Yellow).add_modifier(Modifier::BOLD),
                Direction::Inbound => theme.bold(),
                Direction::Outbound => theme.fg(Color::Cyan).add_modifier(Modifier::BOLD),
            };
            let mut head = vec![
                Span::styled(fmt_time(theme, m.created_at, false), theme.dim()),
                Span::raw(" "),
                Span::styled(sender, head_style),
            ];
            if anchored {
                // Marked in text, not only by style: the message the search found.
                head.insert(0, Span::styled("▶ ", theme.selected()));
            }
            let mark = delivery_mark(s, m);
            if !mark.is_empty() {
                let st = if matches!(m.delivery, Some(Delivery::Failed | Delivery::Unknown)) {
                    theme.fg(Color::Red).add_modifier(Modifier::BOLD)
                } else {
                    theme.dim()
                };
                head.push(Span::styled(format!(" {}", clean(&mark)), st));
            }
            lines.push(Line::from(head));
            if m.quote_msg_id.is_some() {
                lines.push(Line::from(Span::styled(
                    format!("  ↪ ({})", s.quoted),
                    theme.dim(),
                )));
            }
            if !m.text.is_empty() {
                let bar = if note { "┃ " } else { "  " };
                for l in sanitize_for_terminal(&m.text, true).lines() {
                    lines.extend(
                        wrap(l, width.saturating_sub(2))
                            .into_iter()
                            .map(|w| Line::from(format!("{bar}{w}"))),
                    );
                }
            }
            for a in &m.attachments {
                let label = format!(
                    "  [{}] {} {}",
                    clean(&a.kind),
                    clean(&a.name),
                    clean(&a.url)
                );
                lines.extend(
                    wrap(&label, width)
                        .into_iter()
                        .map(|l| Line::from(Span::styled(l, theme.fg(Color::Blue)))),
                );
            }
            if m.kind == MessageKind::Other && m.text.is_empty() {
                lines.push(Line::from(Span::styled(
                    format!("  [{}]", s.stored_raw),
                    theme.dim(),
                )));
            }
        }
        for o in d.outbox.iter().filter(|o| {
            o.conversation_id == c.id
                && !list
                    .iter()
                    .any(|m| m.client_key.as_ref() == Some(&o.client_key))
        }) {
            let waiting = match o.retry_at {
                Some(at) => format!(
                    "⇪ {} {}s · ",
                    s.outbox_retry,
                    ((at - d.now).max(0) + 999) / 1000
                ),
                None => "⇪ → ".to_string(),
            };
            let room = width.saturating_sub(waiting.width());
            lines.push(Line::from(Span::styled(
                format!("{waiting}{}", truncate(&clean(&o.text), room)),
                theme.dim(),
            )));
        }
        let h = area.height as usize;
        // The newest lines at the bottom; with an anchor, its message one line from the top.
        let bottom = match anchor_line {
            Some(l) => (l.saturating_sub(1) + h).min(lines.len()),
            None => lines.len(),
        };
        let end = bottom.saturating_sub(self.scroll.min(bottom.saturating_sub(h)));
        let start = end.saturating_sub(h);
        f.render_widget(Paragraph::new(Text::from(lines[start..end].to_vec())), area);
    }

    /// The quick replies for the `/letters` typed, over the bottom of the thread.
    fn draw_quick_replies(&self, f: &mut Frame, d: &Data, theme: &Theme, area: Rect) {
        let list = self.quick_candidates(d);
        if list.is_empty() || area.height < 4 {
            return;
        }
        let height = (list.len() as u16 + 2).min(area.height);
        let rect = Rect {
            y: area.y + area.height - height,
            height,
            ..area
        };
        let width = rect.width.saturating_sub(2) as usize;
        let lines: Vec<Line> = list
            .iter()
            .enumerate()
            .map(|(i, q)| {
                let file = q.attachment.as_ref().map(file_label).unwrap_or_default();
                let head = format!("/{} · {}{file} — ", clean(&q.shortcut), clean(&q.title));
                let text = truncate(
                    &format!("{head}{}", clean(&q.text)),
                    width.saturating_sub(2),
                );
                let marker = if i == self.quick_selected {
                    "▸ "
                } else {
                    "  "
                };
                Line::from(Span::styled(
                    format!("{marker}{text}"),
                    theme.row(i == self.quick_selected),
                ))
            })
            .collect();
        f.render_widget(ratatui::widgets::Clear, rect);
        let block = Block::default().borders(Borders::ALL).title(Span::styled(
            format!(" {} · ↑↓ Tab ", d.s().quick_replies),
            theme.bold(),
        ));
        f.render_widget(Paragraph::new(lines).block(block), rect);
    }

    fn draw_composer(&self, f: &mut Frame, d: &Data, theme: &Theme, area: Rect) {
        let count = char_count(&nfc(self.composer.value()));
        let quote = if self.quote.is_some() { "↪ " } else { "" };
        let title = match self.compose {
            Compose::Reply => {
                let file = self.quick_file.as_ref().map(|f| f.1.as_str());
                format!(
                    "{quote}{count}/{MAX_TEXT_CHARS}{}",
                    file.unwrap_or_default()
                )
            }
            Compose::Note => {
                let names: Vec<String> = self
                    .mention_candidates()
                    .iter()
                    .take(4)
                    .map(|t| format!("@{}", clean(&t.username)))
                    .collect();
                let hint = if names.is_empty() {
                    "@ Tab".to_string()
                } else {
                    format!("{} (Tab)", names.join(" "))
                };
                format!("✎ {} · {hint}", d.s().note)
            }
        };
        let block = Block::default().borders(Borders::TOP).title(Span::styled(
            title,
            if count > MAX_TEXT_CHARS && self.compose == Compose::Reply {
                theme.fg(Color::Red).add_modifier(Modifier::BOLD)
            } else if self.compose == Compose::Note {
                theme.fg(Color::Yellow).add_modifier(Modifier::BOLD)
            } else {
                theme.dim()
            },
        ));
        let inner = block.inner(area);
        f.render_widget(block, area);
        let scroll = self
            .composer
            .visual_scroll(inner.width.saturating_sub(1) as usize);
        let text = sanitize_for_terminal(self.composer.value(), false);
        f.render_widget(Paragraph::new(text).scroll((0, scroll as u16)), inner);
        let x = self.composer.visual_cursor().saturating_sub(scroll) as u16;
        f.set_cursor_position((inner.x + x.min(inner.width.saturating_sub(1)), inner.y));
    }
}

/// The cursor moved by one of the list-moving actions, kept inside `0..len`.
pub fn step_selection(cur: usize, a: Action, len: usize) -> usize {
    let step: isize = match a {
        Action::Up => -1,
        Action::Down => 1,
        Action::PageUp => -10,
        _ => 10,
    };
    (cur as isize + step).clamp(0, len.saturating_sub(1) as isize) as usize
}

/// The thread's two header lines: who, which page, who has it, and the reply window.
fn thread_header(d: &Data, theme: &Theme, c: &Conversation) -> Vec<Line<'static>> {
    let s = d.s();
    let who = match (&c.assignee, c.state) {
        (_, ConvState::Unclaimed) => format!(
            "◌ {} — {} {}",
            s.unclaimed,
            d.keymap.hint(Action::Claim),
            s.claim
        ),
        (_, ConvState::Unattended) => format!("◇ {}", s.unattended),
        (Some(a), _) => format!("{}: {}", s.assigned_to, d.account_name(a)),
        (None, _) => String::new(),
    };
    let window = match c.reply_window(d.now) {
        ReplyWindow::Free { left_ms } => Span::styled(
            format!("{} {}", s.window_free, fmt_duration(left_ms)),
            theme.fg(Color::Green),
        ),
        ReplyWindow::Billed { left_ms } => Span::styled(
            format!("$ {} {}", s.window_billed, fmt_duration(left_ms)),
            theme.fg(Color::Yellow),
        ),
        ReplyWindow::Closed => Span::styled(format!("✗ {}", s.window_closed), theme.fg(Color::Red)),
    };
    let done = if c.status == ConvStatus::Done {
        format!(" · ✔ {}", s.done)
    } else {
        String::new()
    };
    vec![
        Line::from(vec![
            Span::styled(clean(customer_name(c)), theme.bold()),
            Span::raw(format!(
                " · {}{done}",
                clean(&d.connection_name(&c.connection_id))
            )),
        ]),
        Line::from(vec![Span::raw(format!("{who} · ")), window]),
    ]
}

fn delivery_mark(s: &Strings, m: &Message) -> String {
    let reason = |fallback| m.error_reason.as_deref().unwrap_or(fallback);
    match m.delivery {
        Some(Delivery::Pending) => "⋯".into(),
        Some(Delivery::Unknown) => format!("? {}", reason(s.delivery_unknown)),
        Some(Delivery::Sent) => "✓".into(),
        Some(Delivery::Delivered) => "✓✓".into(),
        Some(Delivery::Seen) => format!("✓✓ {}", s.seen),
        Some(Delivery::Failed) => format!("✗ {}", reason(s.delivery_failed)),
        None => String::new(),
    }
}

/// How well `needle` matches `hay` (both folded), lower is better: a prefix, else a substring
/// (by where), else its letters in order (by how spread out); `None` when it does not match.
fn fuzzy_rank(needle: &str, hay: &str) -> Option<usize> {
    if hay.starts_with(needle) {
        return Some(0);
    }
    if let Some(at) = hay.find(needle) {
        return Some(1 + at);
    }
    let mut chars = hay.char_indices();
    let mut first = None;
    let mut last = 0;
    for n in needle.chars() {
        let (i, _) = chars.find(|(_, h)| *h == n)?;
        first.get_or_insert(i);
        last = i;
    }
    Some(100 + last - first.unwrap_or(0))
}

/// Accent- and case-insensitive: agents type "vo" for "Võ", "d" for "Đ". `#name` keeps the
/// conversations whose customer has a label starting with `name`.
fn matches_filter(c: &Conversation, needle: &str) -> bool {
    let labels = || c.customer.labels.iter().map(|l| fold(l));
    if let Some(label) = needle.strip_prefix('#') {
        return labels().any(|l| l.starts_with(label));
    }
    labels().any(|l| l.contains(needle))
        || fold(&c.customer.display_name).contains(needle)
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

/// An attachment as the composer and the quick reply list show it: ` + [image] name`.
fn file_label(a: &Attachment) -> String {
    format!(" + [{}] {}", clean(&a.kind), clean(&a.name))
}
