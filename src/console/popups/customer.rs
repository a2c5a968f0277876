//! *Khách hàng*, the customer panel (`p` from a thread): the profile, what the customer shared
//! with the page, the staff's notes about them, their conversations (Enter opens one).

use crate::console::component::{Jump, Out, PopupChange};
use crate::console::data::Data;
use crate::console::i18n::describe;
use crate::console::keymap::Action;
use crate::console::msg::{ApiCall, Effect};
use crate::console::ui::*;
use crate::model::{ConvState, ConvStatus, ConversationId};
use crate::wire::CustomerPanel;
use crossterm::event::{KeyCode, KeyEvent};
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};

#[derive(Debug)]
pub struct CustomerCard {
    pub conversation_id: ConversationId,
    /// From the hub; `None` while loading.
    pub panel: Option<Box<CustomerPanel>>,
    /// The conversation under the cursor.
    pub selected: usize,
}

impl CustomerCard {
    /// The panel of the customer of a conversation, and the call that fills it.
    pub fn open(conversation_id: ConversationId) -> (CustomerCard, Vec<Effect>) {
        let fx = vec![Effect::Api(ApiCall::CustomerPanel(conversation_id.clone()))];
        let card = CustomerCard {
            conversation_id,
            panel: None,
            selected: 0,
        };
        (card, fx)
    }

    pub fn loaded(&mut self, conversation_id: &str, panel: Box<CustomerPanel>) {
        if self.conversation_id == conversation_id {
            self.panel = Some(panel);
        }
    }

    pub fn on_key(&mut self, k: KeyEvent) -> Out {
        let count = self.panel.as_ref().map_or(0, |p| p.conversations.len());
        match k.code {
            KeyCode::Esc | KeyCode::Char('q') => Out::close(),
            KeyCode::Up | KeyCode::Char('k') => {
                self.selected = self.selected.saturating_sub(1);
                Out::none()
            }
            KeyCode::Down | KeyCode::Char('j') => {
                self.selected = (self.selected + 1).min(count.saturating_sub(1));
                Out::none()
            }
            KeyCode::Enter => match self
                .panel
                .as_ref()
                .and_then(|p| p.conversations.get(self.selected))
            {
                Some(c) => Out {
                    popup: PopupChange::Close,
                    jump: Some(Jump {
                        conversation: c.clone(),
                        message: None,
                    }),
                    ..Out::none()
                },
                None => Out::none(),
            },
            _ => Out::none(),
        }
    }

    pub fn content(&self, d: &Data, theme: &Theme, area: Rect) -> PopupContent {
        let s = d.s();
        let width = area.width.min(90);
        let inner = width.saturating_sub(2);
        let title = describe(Action::Customer, d.lang).to_string();
        let Some(p) = &self.panel else {
            return PopupContent {
                title,
                lines: vec![Line::from(Span::styled(s.loading, theme.dim()))],
                width,
                height: 5,
            };
        };
        let section = |text: &str| Line::from(Span::styled(text.to_string(), theme.bold()));
        let c = &p.customer;
        let mut lines = vec![Line::from(vec![
            Span::styled(clean(c.name_or_id()), theme.bold()),
            Span::raw(format!("  Zalo: {}", clean(&c.user_id))),
        ])];
        // Live: a label put on (or an unfollow) meanwhile shows here too.
        let live = d
            .conversations
            .get(&self.conversation_id)
            .map_or(c, |conv| &conv.customer);
        let follows = match live.follows.or(c.follows) {
            Some(true) => Some(s.follower),
            Some(false) => Some(s.not_follower),
            None => None,
        };
        if let Some(text) = follows {
            lines.push(Line::from(Span::raw(text)));
        }
        let labels = &live.labels;
        if !labels.is_empty() {
            let text = format!("{}: {}", describe(Action::Labels, d.lang), hashtags(labels));
            lines.extend(wrapped_lines(&text, inner, "", "  ", theme.bold()));
        }
        if !c.avatar.is_empty() {
            lines.extend(wrapped_lines(
                &clean(&c.avatar),
                inner,
                "",
                "  ",
                theme.dim(),
            ));
        }
        if !p.shared_info.is_empty() {
            lines.push(Line::from(""));
            lines.push(section(s.shared_info));
            for info in p.shared_info.iter().take(3) {
                let fields: Vec<String> = info
                    .fields
                    .iter()
                    .map(|(k, v)| format!("{}: {}", clean(k), clean(v)))
                    .collect();
                let text = format!(
                    "{} · {}",
                    fmt_time(theme, info.at, true),
                    fields.join(" · ")
                );
                lines.extend(wrapped_lines(
                    &text,
                    inner,
                    "  ",
                    "    ",
                    ratatui::style::Style::default(),
                ));
            }
        }
        if !p.notes.is_empty() {
            lines.push(Line::from(""));
            lines.push(section(&format!("✎ {}", s.note)));
            for n in p.notes.iter().take(5) {
                let text = format!(
                    "{} {}: {}",
                    fmt_time(theme, n.created_at, true),
                    clean(&n.sender_name),
                    clean(n.text.lines().next().unwrap_or_default())
                );
                lines.push(Line::from(format!(
                    "┃ {}",
                    truncate(&text, inner as usize - 2)
                )));
            }
        }
        lines.push(Line::from(""));
        lines.push(section(&format!(
            "{} ({})",
            s.conversations,
            p.conversations.len()
        )));
        for (i, conv) in p.conversations.iter().enumerate() {
            let state = match (conv.state, conv.status) {
                (_, ConvStatus::Done) => format!("✔ {}", s.done),
                (ConvState::Unclaimed, _) => format!("◌ {}", s.unclaimed),
                (ConvState::Unattended, _) => format!("◇ {}", s.unattended),
                (ConvState::Assigned, _) => conv
                    .assignee
                    .as_deref()
                    .map(|a| format!("→ {}", d.account_name(a)))
                    .unwrap_or_default(),
            };
            let text = format!(
                "{} · {} · {state} · {}",
                fmt_time(theme, conv.last_activity_at, true),
                clean(&d.connection_name(&conv.connection_id)),
                clean(&conv.preview)
            );
            let marker = if i == self.selected { "▸ " } else { "  " };
            lines.push(Line::from(Span::styled(
                truncate(&format!("{marker}{text}"), inner as usize),
                theme.row(i == self.selected),
            )));
        }
        lines.push(Line::from(Span::styled("↑↓ · Enter · Esc", theme.dim())));
        PopupContent {
            title: format!("{title} · {}", clean(c.name_or_id())),
            lines,
            width,
            height: 8,
        }
    }
}
