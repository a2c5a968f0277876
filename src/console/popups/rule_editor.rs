//! Creating or editing a distribution rule: name, source pages, members (completed from the
//! accounts), method, and what happens to old conversations, confirmed when history is shared.

use super::Modal;
use crate::console::component::Out;
use crate::console::data::Data;
use crate::console::i18n::{describe, Strings};
use crate::console::keymap::Action;
use crate::console::msg::{ApiCall, Effect};
use crate::console::ui::*;
use crate::model::text::nfc;
use crate::model::*;
use crate::wire::RuleInput;
use crossterm::event::{KeyCode, KeyEvent};
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier};
use ratatui::text::{Line, Span};
use tui_input::Input;
use unicode_width::UnicodeWidthStr;

/// The actions this popup handles besides its own field keys.
pub const HELP: &[Action] = &[Action::Save];

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

pub fn method_label(s: &Strings, m: Method) -> &'static str {
    match m {
        Method::RoundRobin => s.round_robin,
        Method::SelfClaim => s.self_claim,
    }
}

pub fn old_label(s: &Strings, o: OldConversations) -> &'static str {
    match o {
        OldConversations::None => s.old_none,
        OldConversations::Available => s.old_available,
        OldConversations::All => s.old_all,
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

    /// The text field that has the keys (for a paste).
    pub fn text_field(&mut self) -> &mut Input {
        if self.field == 0 {
            &mut self.name
        } else {
            &mut self.member_input
        }
    }

    fn validate(&self, s: &Strings) -> Result<(), String> {
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

    pub fn on_key(&mut self, d: &mut Data, k: KeyEvent) -> Out {
        if k.code == KeyCode::Esc {
            return Out::close();
        }
        if d.keymap.actions(&k).contains(&Action::Save) {
            if let Err(e) = self.validate(d.s()) {
                self.error = Some(e);
                return Out::none();
            }
            if self.old != OldConversations::None {
                return Out::open(Modal::ConfirmRule(self.clone()));
            }
            return Out::close_with(vec![self.save_effect()]);
        }
        self.error = None;
        match k.code {
            KeyCode::Tab | KeyCode::Down if self.field != 1 || k.code == KeyCode::Tab => {
                self.field = (self.field + 1) % 5
            }
            KeyCode::BackTab | KeyCode::Up if self.field != 1 || k.code == KeyCode::BackTab => {
                self.field = (self.field + 4) % 5
            }
            _ => match self.field {
                0 => edit_input(&mut self.name, &k),
                1 => self.sources_key(d, k),
                2 => self.members_key(d, k),
                3 => {
                    if matches!(
                        k.code,
                        KeyCode::Char(' ') | KeyCode::Left | KeyCode::Right | KeyCode::Enter
                    ) {
                        self.method = match self.method {
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
                    let i = order.iter().position(|o| *o == self.old).unwrap_or(0);
                    match k.code {
                        KeyCode::Char(' ') | KeyCode::Right | KeyCode::Enter => {
                            self.old = order[(i + 1) % 3]
                        }
                        KeyCode::Left => self.old = order[(i + 2) % 3],
                        _ => {}
                    }
                }
            },
        }
        Out::none()
    }

    fn sources_key(&mut self, d: &Data, k: KeyEvent) {
        let conns: Vec<&ConnectionId> = d.connections.keys().collect();
        match k.code {
            KeyCode::Up => self.source_cursor = self.source_cursor.saturating_sub(1),
            KeyCode::Down => {
                self.source_cursor = (self.source_cursor + 1).min(conns.len().saturating_sub(1))
            }
            KeyCode::Char(' ') | KeyCode::Enter => {
                if let Some(c) = conns.get(self.source_cursor) {
                    if let Some(p) = self.sources.iter().position(|s| s == *c) {
                        self.sources.remove(p);
                    } else {
                        self.sources.push((*c).clone());
                    }
                }
            }
            _ => {}
        }
    }

    fn members_key(&mut self, d: &Data, k: KeyEvent) {
        match k.code {
            KeyCode::Enter => {
                let typed = self.member_input.value().to_string();
                match d.resolve_account(&typed) {
                    Some(u) => {
                        if !self.members.contains(&u) {
                            self.members.push(u);
                        }
                        self.member_input = Input::default();
                    }
                    None => {
                        self.error = Some(format!("{}: {}", d.s().unknown_member, typed.trim()))
                    }
                }
            }
            KeyCode::Backspace if self.member_input.value().is_empty() => {
                self.members.pop();
            }
            _ => edit_input(&mut self.member_input, &k),
        }
    }

    /// The confirmation before saving a rule that shares old conversations: `y` or Enter saves,
    /// anything else goes back to the editor.
    pub fn confirm_key(&self, k: KeyEvent) -> Out {
        match k.code {
            KeyCode::Char('y') | KeyCode::Enter => Out::close_with(vec![self.save_effect()]),
            _ => Out::open(Modal::RuleEditor(self.clone())),
        }
    }

    pub fn confirm_content(&self, d: &Data, theme: &Theme) -> PopupContent {
        let s = d.s();
        PopupContent {
            title: s.old_conversations.into(),
            lines: vec![
                Line::from(Span::styled(
                    format!("{}: {}", s.old_conversations, old_label(s, self.old)),
                    theme.bold(),
                )),
                Line::from(""),
                Line::from(Span::styled(
                    s.history_warning,
                    theme.fg(Color::Yellow).add_modifier(Modifier::BOLD),
                )),
                Line::from(""),
                Line::from(s.confirm),
            ],
            width: 60,
            height: 9,
        }
    }

    pub fn content(&self, d: &Data, theme: &Theme, area: Rect) -> PopupContent {
        let s = d.s();
        let field = |i: usize, label: &str| -> Span<'static> {
            if self.field == i {
                Span::styled(
                    format!("▸ {label}: "),
                    theme.bold().add_modifier(Modifier::UNDERLINED),
                )
            } else {
                Span::raw(format!("  {label}: "))
            }
        };
        let width = area.width.min(90);
        let inner = width.saturating_sub(2) as usize;
        // A long name shows its end, where the cursor is.
        let name_room = inner.saturating_sub(s.rule_name.width() + 5);
        let mut lines = vec![Line::from(vec![
            field(0, s.rule_name),
            Span::raw(truncate_start(&clean(self.name.value()), name_room)),
            Span::raw(if self.field == 0 { "▏" } else { "" }),
        ])];
        lines.push(Line::from(field(1, s.sources)));
        for (i, c) in d.connections.values().enumerate() {
            let checked = if self.sources.contains(&c.id) {
                "[x]"
            } else {
                "[ ]"
            };
            let name = truncate(&clean(&c.name), inner.saturating_sub(8));
            lines.push(Line::from(Span::styled(
                format!("    {checked} {name}"),
                theme.row(self.field == 1 && i == self.source_cursor),
            )));
        }
        lines.push(Line::from(vec![
            field(2, s.members),
            Span::raw(self.members.join(", ")),
        ]));
        if self.field == 2 {
            lines.push(Line::from(format!(
                "    + {}▏",
                clean(self.member_input.value())
            )));
            let comps = d.completions(self.member_input.value());
            if !comps.is_empty() {
                lines.push(Line::from(Span::styled(
                    format!("      {}", comps.join("  ")),
                    theme.dim(),
                )));
            }
        }
        let radio = |on: bool, label: &str| format!("{} {label}  ", if on { "(•)" } else { "( )" });
        lines.push(Line::from(vec![
            field(3, s.method),
            Span::raw(radio(self.method == Method::RoundRobin, s.round_robin)),
            Span::raw(radio(self.method == Method::SelfClaim, s.self_claim)),
        ]));
        lines.push(Line::from(field(4, s.old_conversations)));
        lines.push(Line::from(format!(
            "    {}{}{}",
            radio(self.old == OldConversations::None, s.old_none),
            radio(self.old == OldConversations::Available, s.old_available),
            radio(self.old == OldConversations::All, s.old_all)
        )));
        if self.old != OldConversations::None {
            let style = theme.fg(Color::Yellow);
            let inner = width.saturating_sub(2);
            lines.extend(wrapped_lines(
                s.history_warning,
                inner,
                "    ! ",
                "      ",
                style,
            ));
        }
        if let Some(e) = &self.error {
            lines.push(Line::from(Span::styled(
                format!("✗ {}", clean(e)),
                theme.fg(Color::Red).add_modifier(Modifier::BOLD),
            )));
        }
        lines.push(Line::from(Span::styled(
            format!(
                "Tab ↹ · Space · Enter · {} {} · Esc",
                d.keymap.hint(Action::Save),
                describe(Action::Save, d.lang)
            ),
            theme.dim(),
        )));
        let title = if self.id.is_some() {
            describe(Action::EditRule, d.lang)
        } else {
            s.new_rule
        };
        PopupContent {
            title: title.to_string(),
            lines,
            width,
            height: area.height,
        }
    }
}
