//! The console's state: what it knows of the hub (`Data`) and its components (three tabs, the
//! popup on top). `update(msg) -> effects` is pure (no I/O, no clock): it routes each message to
//! the component it is for; the runtime turns effects into HTTP calls, bells and clipboard writes,
//! and feeds results back as messages. `draw` lays the components out.

use super::bars;
use super::component::{Out, PopupChange};
use super::data::{Data, Notify, Snapshot};
use super::i18n::Lang;
use super::keymap::{Action, Keymap};
use super::msg::{ApiCall, Effect, Link, Msg, NetEvent};
use super::popups::{help, palette, rule_editor, search, Modal};
use super::tabs::{connections, connections::ConnectionsTab, inbox, inbox::InboxTab, rules};
use super::tabs::{inbox::Focus, rules::RulesTab, Tab};
use super::ui::{paste_into, Theme};
use crate::model::{Availability, Ms};
use crate::wire::{Event, EventBody};
use crossterm::event::{Event as TermEvent, KeyEvent, KeyEventKind};
use ratatui::layout::{Constraint, Layout};
use ratatui::text::Line;
use ratatui::widgets::{Paragraph, Wrap};
use ratatui::Frame;

pub const MIN_WIDTH: u16 = 60;
pub const MIN_HEIGHT: u16 = 16;

/// The actions the app handles itself, whatever the tab, in help order.
pub const HELP: &[Action] = &[
    Action::Quit,
    Action::Help,
    Action::Palette,
    Action::NextTab,
    Action::PrevTab,
    Action::TabInbox,
    Action::TabConnections,
    Action::TabRules,
    Action::Up,
    Action::Down,
    Action::PageUp,
    Action::PageDown,
    Action::Open,
    Action::Back,
    Action::ToggleAvailability,
    Action::Search,
    Action::Mentions,
];

/// Every component's help entries.
pub fn help_entries() -> Vec<Action> {
    [
        HELP,
        inbox::HELP,
        connections::HELP,
        rules::HELP,
        rule_editor::HELP,
    ]
    .concat()
}

/// What the help popup lists on a tab: the app's keys and that tab's (with its popups').
pub fn help_for(tab: Tab) -> Vec<Action> {
    let tab_keys: &[&[Action]] = match tab {
        Tab::Inbox => &[inbox::HELP],
        Tab::Connections => &[connections::HELP],
        Tab::Rules => &[rules::HELP, rule_editor::HELP],
    };
    [&[HELP][..], tab_keys].concat().concat()
}

pub struct App {
    pub data: Data,
    pub tab: Tab,
    pub inbox: InboxTab,
    pub connections: ConnectionsTab,
    pub rules: RulesTab,
    /// The popup on top, if any: it has every key while it is open.
    pub modal: Option<Modal>,
    /// Set by anything that changes what is on screen; the runtime clears it after drawing.
    pub dirty: bool,
}

impl App {
    pub fn new(lang: Lang, keymap: Keymap, notify: Notify, now: Ms) -> App {
        App {
            data: Data::new(lang, keymap, notify, now),
            tab: Tab::Inbox,
            inbox: InboxTab::default(),
            connections: ConnectionsTab::default(),
            rules: RulesTab::default(),
            modal: None,
            dirty: true,
        }
    }

    pub fn load_snapshot(&mut self, s: Snapshot) {
        self.data.load_snapshot(s);
        self.clamp_selection();
        self.dirty = true;
    }

    fn clamp_selection(&mut self) {
        self.inbox.clamp_selection(&self.data);
        self.connections.clamp_selection(&self.data);
        self.rules.clamp_selection(&self.data);
    }

    // ----- update -----

    pub fn update(&mut self, msg: Msg) -> Vec<Effect> {
        self.dirty = true;
        let mut fx = self.update_inner(msg);
        if self.tab == Tab::Inbox {
            fx.extend(self.inbox.load_preview(&self.data));
        }
        fx
    }

    fn update_inner(&mut self, msg: Msg) -> Vec<Effect> {
        match msg {
            Msg::Tick(now) => {
                // Only the clock moved: redraw when a countdown is on screen.
                let d = &mut self.data;
                let retrying = d.outbox.iter().any(|o| o.retry_at.is_some());
                self.dirty = matches!(d.link, Link::Reconnecting { .. })
                    || retrying
                    || now / 60_000 != d.now / 60_000;
                d.now = now;
                d.retry_due_replies()
            }
            Msg::Net(e) => self.on_net(e),
            Msg::Shutdown => vec![Effect::Quit],
            Msg::Term(TermEvent::Key(k)) if k.kind != KeyEventKind::Release => self.on_key(k),
            Msg::Term(TermEvent::Paste(text)) => {
                let field = match &mut self.modal {
                    Some(m) => m.paste_target(),
                    None => self.inbox.paste_target(),
                };
                if let Some(field) = field {
                    paste_into(field, &text);
                }
                vec![]
            }
            Msg::Term(TermEvent::Resize(..)) => vec![],
            Msg::Term(_) => {
                self.dirty = false;
                vec![]
            }
        }
    }

    fn on_net(&mut self, e: NetEvent) -> Vec<Effect> {
        let d = &mut self.data;
        let mut fx = vec![];
        match e {
            NetEvent::Snapshot(s) => d.load_snapshot(*s),
            NetEvent::Event(ev) => fx.extend(self.apply_event(*ev)),
            NetEvent::Link(link) => {
                let came_back = link == Link::Connected && d.link != Link::Connected;
                fx.extend(d.set_link(link));
                fx.extend(self.inbox.link_changed(link, came_back));
            }
            NetEvent::Messages {
                conversation_id,
                items,
                next_cursor,
                older,
            } => {
                self.inbox.messages_loaded(&conversation_id);
                d.add_messages(conversation_id.clone(), items, next_cursor, older);
                fx.extend(self.inbox.follow_anchor(d, &conversation_id));
            }
            NetEvent::MessagesFailed {
                conversation_id,
                error,
            } => {
                self.inbox.messages_failed(d, conversation_id);
                d.notice(error);
            }
            NetEvent::ReplyAccepted {
                client_key,
                message,
            } => d.reply_accepted(&client_key, *message),
            NetEvent::ReplyDeferred { client_key, error } => d.reply_deferred(&client_key, &error),
            NetEvent::ReplyRejected { client_key, error } => d.reply_rejected(&client_key, error),
            NetEvent::ClaimLost { winner } => {
                let w = winner.unwrap_or_default();
                d.notice(format!("{} {w}", d.s().claimed_by));
            }
            NetEvent::TransferTargets {
                conversation_id,
                targets,
            } => {
                if let Some(Modal::Transfer(t)) = &mut self.modal {
                    t.targets_loaded(&conversation_id, targets);
                }
            }
            NetEvent::SearchResults { query, more, page } => {
                if let Some(Modal::Search(s)) = &mut self.modal {
                    s.results_arrived(Some(&query), more, page);
                }
            }
            NetEvent::Mentions { more, page } => {
                if let Some(Modal::Search(s)) = &mut self.modal {
                    s.results_arrived(None, more, page);
                }
            }
            NetEvent::CustomerPanel {
                conversation_id,
                panel,
            } => {
                if let Some(Modal::Customer(c)) = &mut self.modal {
                    c.loaded(&conversation_id, panel);
                }
            }
            NetEvent::Labels {
                conversation_id,
                choices,
            } => {
                if let Some(Modal::Labels(l)) = &mut self.modal {
                    l.loaded(&conversation_id, choices);
                }
            }
            NetEvent::NoteAdded(note) => {
                self.inbox.note_added(&note);
                d.note_added(*note);
            }
            NetEvent::Colleagues {
                conversation_id,
                list,
            } => self.inbox.colleagues_loaded(conversation_id, list),
            NetEvent::Authorize(a) => {
                if let Some(Modal::AddConnection(step)) = &mut self.modal {
                    fx.extend(step.authorized(d, a));
                }
            }
            NetEvent::Failed(text) | NetEvent::Info(text) => d.notice(text),
            NetEvent::EditorDone(text) => self.inbox.editor_done(&text),
            NetEvent::Attachment {
                conversation,
                attachment,
            } => fx.extend(self.inbox.attachment(d, conversation, attachment)),
        }
        self.clamp_selection();
        fx
    }

    fn apply_event(&mut self, ev: Event) -> Vec<Effect> {
        if let (
            EventBody::Connection {
                connection,
                started_by: Some(by),
            },
            Some(Modal::AddConnection(step)),
        ) = (&ev.body, &mut self.modal)
        {
            step.connected(&mut self.data, connection, by);
        }
        let mut fx = self.data.apply_event(ev);
        // No notification for the thread being read.
        let reading = (self.tab == Tab::Inbox && self.inbox.focus != Focus::List)
            .then_some(self.inbox.open.as_deref())
            .flatten();
        fx.retain(
            |e| !matches!(e, Effect::Notify(n) if Some(n.conversation_id.as_str()) == reading),
        );
        // Also on screen, for whoever missed the bell.
        if let Some(Effect::Notify(n)) = fx.iter().rev().find(|e| matches!(e, Effect::Notify(_))) {
            self.data.notice = Some(format!("✉ {}: {}", n.title, n.body));
        }
        fx
    }

    // ----- keys -----

    fn on_key(&mut self, k: KeyEvent) -> Vec<Effect> {
        if let Some(modal) = &mut self.modal {
            let out = modal.on_key(&mut self.data, k);
            return self.apply(out);
        }
        if self.tab == Tab::Inbox && self.inbox.takes_text() {
            let out = self.inbox.on_text_key(&mut self.data, k);
            return self.apply(out);
        }
        for a in self.data.keymap.actions(&k) {
            if let Some(fx) = self.run_action(a) {
                return fx;
            }
        }
        self.dirty = false;
        vec![]
    }

    /// Does what a component asked for.
    fn apply(&mut self, out: Out) -> Vec<Effect> {
        match out.popup {
            PopupChange::Keep => {}
            PopupChange::Close => self.modal = None,
            PopupChange::Open(m) => self.modal = Some(m),
        }
        let mut fx = out.effects;
        if let Some(jump) = out.jump {
            self.tab = Tab::Inbox;
            fx.extend(self.inbox.open_at(&mut self.data, jump));
        }
        if let Some(a) = out.run {
            fx.extend(self.run_action(a).unwrap_or_default());
        }
        fx
    }

    /// Runs an action if it applies in the current context: the app's own, else the tab's.
    pub fn run_action(&mut self, a: Action) -> Option<Vec<Effect>> {
        use Action::*;
        let fx = match a {
            Quit => vec![Effect::Quit],
            Help => {
                self.modal = Some(Modal::Help(help::Help {
                    entries: help_for(self.tab),
                }));
                vec![]
            }
            Palette => {
                self.modal = Some(Modal::Palette(palette::Palette::default()));
                vec![]
            }
            Search => {
                self.modal = Some(Modal::Search(search::Search::default()));
                vec![]
            }
            Mentions => {
                let (popup, fx) = search::Search::mentions();
                self.modal = Some(Modal::Search(popup));
                fx
            }
            NextTab | PrevTab => {
                let order = [Tab::Inbox, Tab::Connections, Tab::Rules];
                let i = order.iter().position(|t| *t == self.tab).unwrap_or(0);
                self.tab = order[if a == NextTab {
                    (i + 1) % 3
                } else {
                    (i + 2) % 3
                }];
                vec![]
            }
            TabInbox => self.switch_tab(Tab::Inbox),
            TabConnections => self.switch_tab(Tab::Connections),
            TabRules => self.switch_tab(Tab::Rules),
            ToggleAvailability => {
                let next = match self.data.me.as_ref()?.availability {
                    Availability::Available => Availability::Away,
                    Availability::Away => Availability::Available,
                };
                vec![Effect::Api(ApiCall::SetAvailability(next))]
            }
            _ => {
                if a == Urgent {
                    self.tab = Tab::Inbox;
                }
                let d = &mut self.data;
                let out = match self.tab {
                    Tab::Inbox => self.inbox.run_action(d, a),
                    Tab::Connections => self.connections.run_action(d, a),
                    Tab::Rules => self.rules.run_action(d, a),
                }?;
                return Some(self.apply(out));
            }
        };
        Some(fx)
    }

    fn switch_tab(&mut self, tab: Tab) -> Vec<Effect> {
        self.tab = tab;
        vec![]
    }

    // ----- view -----

    /// Draws a frame: a pure function of the state.
    pub fn draw(&self, f: &mut Frame, theme: &Theme) {
        let area = f.area();
        let d = &self.data;
        if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
            let msg = Paragraph::new(vec![
                Line::from(d.s().too_small),
                Line::from(format!("{}×{}", area.width, area.height)),
            ])
            .wrap(Wrap { trim: true });
            f.render_widget(msg, area);
            return;
        }
        let [tabs, main, status] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Min(1),
            Constraint::Length(1),
        ])
        .areas(area);
        // One pass over the conversations serves the tab badge, the view counts and the list.
        let rows = InboxTab::rows_for(main);
        let frame = self
            .inbox
            .frame(d, self.inbox.selected.saturating_sub(rows - 1), rows);
        bars::draw_tabs(
            f,
            d,
            theme,
            tabs,
            self.tab,
            frame.counts[0] + frame.counts[1],
        );
        match self.tab {
            Tab::Inbox => self.inbox.draw(f, d, theme, main, &frame),
            Tab::Connections => self.connections.draw(f, d, theme, main),
            Tab::Rules => self.rules.draw(f, d, theme, main),
        }
        bars::draw_status(f, d, theme, status);
        if let Some(m) = &self.modal {
            m.draw(f, d, theme, main);
        }
    }
}
