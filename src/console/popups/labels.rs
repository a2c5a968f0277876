//! *Nhãn*, the customer's labels (`L` from the list or a thread): the page's labels with a mark
//! on those the customer has; typing narrows the list or names a new one; Enter puts the label
//! on or takes it off. Zalo is told by the hub; the change shows when the hub's event arrives.

use crate::console::component::Out;
use crate::console::data::Data;
use crate::console::i18n::describe;
use crate::console::keymap::Action;
use crate::console::msg::{ApiCall, Effect};
use crate::console::ui::*;
use crate::model::text::fold;
use crate::model::ConversationId;
use crate::wire::LabelChoices;
use crossterm::event::{KeyCode, KeyEvent};
use ratatui::layout::Rect;
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use tui_input::Input;

#[derive(Debug)]
pub struct Labels {
    pub conversation_id: ConversationId,
    pub input: Input,
    /// The page's labels; `None` while loading.
    pub page: Option<Vec<String>>,
    pub selected: usize,
}

/// A row of the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Row {
    /// A label of the page, and whether the customer has it.
    Label(String, bool),
    /// A new label named as typed.
    Create(String),
}

impl Labels {
    /// The popup for a conversation's customer, and the call that fills it.
    pub fn open(conversation_id: ConversationId) -> (Labels, Vec<Effect>) {
        let fx = vec![Effect::Api(ApiCall::Labels(conversation_id.clone()))];
        let popup = Labels {
            conversation_id,
            input: Input::default(),
            page: None,
            selected: 0,
        };
        (popup, fx)
    }

    pub fn loaded(&mut self, conversation_id: &str, choices: LabelChoices) {
        if self.conversation_id == conversation_id {
            self.page = Some(choices.page);
        }
    }

    /// The page's labels (and the customer's, which the page may not list yet) matching what is
    /// typed, accents and case ignored; then a new label when no name is the one typed.
    pub fn rows(&self, d: &Data) -> Vec<Row> {
        let attached: &[String] = d
            .conversations
            .get(&self.conversation_id)
            .map_or(&[], |c| &c.customer.labels);
        let mut names: Vec<&String> = self.page.iter().flatten().chain(attached).collect();
        names.sort();
        names.dedup();
        let typed = self.input.value().trim();
        let needle = fold(typed);
        let mut rows: Vec<Row> = names
            .into_iter()
            .filter(|n| fold(n).contains(&needle))
            .map(|n| Row::Label(n.clone(), attached.contains(n)))
            .collect();
        let exists = rows
            .iter()
            .any(|r| matches!(r, Row::Label(n, _) if fold(n) == needle));
        if !typed.is_empty() && !exists {
            rows.push(Row::Create(typed.to_string()));
        }
        rows
    }

    pub fn on_key(&mut self, d: &Data, k: KeyEvent) -> Out {
        let rows = self.rows(d);
        match k.code {
            KeyCode::Esc => Out::close(),
            KeyCode::Up => {
                self.selected = self.selected.saturating_sub(1);
                Out::none()
            }
            KeyCode::Down => {
                self.selected = (self.selected + 1).min(rows.len().saturating_sub(1));
                Out::none()
            }
            KeyCode::Enter => {
                let id = self.conversation_id.clone();
                let call = match rows.get(self.selected) {
                    Some(Row::Label(name, true)) => ApiCall::DetachLabel {
                        id,
                        name: name.clone(),
                    },
                    Some(Row::Label(name, false)) => ApiCall::AttachLabel {
                        id,
                        name: name.clone(),
                    },
                    Some(Row::Create(name)) => {
                        // Listed from now on (the hub makes it the page's).
                        self.page.get_or_insert_with(Vec::new).push(name.clone());
                        self.input = Input::default();
                        ApiCall::AttachLabel {
                            id,
                            name: name.clone(),
                        }
                    }
                    None => return Out::none(),
                };
                Out::effects(vec![Effect::Api(call)])
            }
            _ => {
                edit_input(&mut self.input, &k);
                self.selected = 0;
                Out::none()
            }
        }
    }

    pub fn content(&self, d: &Data, theme: &Theme, area: Rect) -> PopupContent {
        let s = d.s();
        let width = area.width.min(60);
        let inner = width.saturating_sub(2) as usize;
        let customer = d
            .conversations
            .get(&self.conversation_id)
            .map(|c| clean(c.customer.name_or_id()))
            .unwrap_or_default();
        let mut lines = vec![input_line(&self.input)];
        let rows = self.rows(d);
        let status = if self.page.is_none() {
            s.loading.to_string()
        } else if rows.is_empty() {
            s.label_hint.to_string()
        } else {
            format!("↑↓ · Enter {} · Esc", s.label_toggle)
        };
        lines.push(Line::from(Span::styled(
            truncate(&status, inner),
            theme.dim(),
        )));
        let visible = area.height.saturating_sub(6).max(1) as usize;
        let start = self.selected.saturating_sub(visible - 1);
        for (i, row) in rows.iter().enumerate().skip(start).take(visible) {
            let text = match row {
                Row::Label(name, on) => {
                    format!("[{}] {}", if *on { "x" } else { " " }, clean(name))
                }
                Row::Create(name) => format!("+ {} “{}”", s.label_create, clean(name)),
            };
            let selected = i == self.selected;
            let marker = if selected { "▸ " } else { "  " };
            let style = if selected {
                theme.selected().add_modifier(Modifier::BOLD)
            } else {
                ratatui::style::Style::default()
            };
            lines.push(Line::from(Span::styled(
                truncate(&format!("{marker}{text}"), inner),
                style,
            )));
        }
        PopupContent {
            title: truncate(
                &format!(
                    "{} · {customer} ({})",
                    describe(Action::Labels, d.lang),
                    d.keymap.hint(Action::Labels)
                ),
                inner,
            ),
            lines,
            width,
            height: (rows.len() as u16 + 5).clamp(7, area.height),
        }
    }
}
