//! Connecting a Zalo OA page, as the seed walks it: the consent link (and QR code), then who
//! chats on the page (only me, or shared by a rule), then which rule. Also the confirmation
//! before a page is removed.

use super::rule_editor::RuleEditor;
use super::Modal;
use crate::console::component::Out;
use crate::console::data::Data;
use crate::console::i18n::describe;
use crate::console::keymap::Action;
use crate::console::msg::{ApiCall, Effect};
use crate::console::ui::{clean, PopupContent, Theme};
use crate::model::*;
use crate::wire::{AuthorizeResponse, ConnectionView};
use crossterm::event::{KeyCode, KeyEvent};
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier};
use ratatui::text::{Line, Span};

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

impl AddStep {
    /// The hub gave the consent link: shown, and copied to the clipboard.
    pub fn authorized(&mut self, d: &mut Data, a: AuthorizeResponse) -> Vec<Effect> {
        *self = AddStep::Consent {
            url: a.authorization_url.clone(),
            expires_at: a.expires_at,
        };
        d.notice(d.s().copied);
        vec![Effect::Copy(a.authorization_url)]
    }

    /// A page was connected; when I started it from this popup, the next step is who chats on it.
    pub fn connected(&mut self, d: &mut Data, connection: &ConnectionView, started_by: &str) {
        if started_by == d.me_id() && matches!(self, AddStep::Consent { .. } | AddStep::Requesting)
        {
            *self = AddStep::Permission {
                connection_id: connection.id.clone(),
                choice: 0,
            };
            d.notice(format!("{}: {}", d.s().connect_success, connection.name));
        }
    }

    pub fn on_key(&mut self, d: &mut Data, k: KeyEvent) -> Out {
        if k.code == KeyCode::Esc {
            return Out::close();
        }
        match self {
            AddStep::Requesting => Out::none(),
            AddStep::Consent { url, .. } => match k.code {
                KeyCode::Char('y') => Out::effects(vec![Effect::Copy(url.clone())]),
                _ => Out::none(),
            },
            AddStep::Permission {
                connection_id,
                choice,
            } => match k.code {
                KeyCode::Up
                | KeyCode::Down
                | KeyCode::Char('j')
                | KeyCode::Char('k')
                | KeyCode::Tab => {
                    *choice = 1 - (*choice).min(1);
                    Out::none()
                }
                KeyCode::Enter if *choice == 0 => {
                    Out::close_with(vec![Effect::Api(ApiCall::SetChatMode {
                        id: connection_id.clone(),
                        mode: ChatMode::OnlyMe,
                    })])
                }
                KeyCode::Enter => {
                    *self = AddStep::PickRule {
                        connection_id: connection_id.clone(),
                        selected: 0,
                    };
                    Out::none()
                }
                _ => Out::none(),
            },
            AddStep::PickRule {
                connection_id,
                selected,
            } => {
                let rules = d.rule_list();
                match k.code {
                    KeyCode::Up | KeyCode::Char('k') => *selected = selected.saturating_sub(1),
                    KeyCode::Down | KeyCode::Char('j') => {
                        *selected = (*selected + 1).min(rules.len())
                    }
                    KeyCode::Enter if *selected == 0 => {
                        let ed = RuleEditor::new(None, vec![connection_id.clone()]);
                        return Out::open(Modal::RuleEditor(ed));
                    }
                    KeyCode::Enter => {
                        let rule = rules[*selected - 1];
                        let members = rule.members.iter().map(|m| d.account_name(m)).collect();
                        let mut ed = RuleEditor::from_rule(rule, members);
                        if !ed.sources.contains(connection_id) {
                            ed.sources.push(connection_id.clone());
                        }
                        return Out::open(Modal::RuleEditor(ed));
                    }
                    _ => {}
                }
                Out::none()
            }
        }
    }

    pub fn content(&self, d: &Data, theme: &Theme, area: Rect) -> PopupContent {
        let s = d.s();
        let popup = |lines, width, height| PopupContent {
            title: s.add_connection.to_string(),
            lines,
            width,
            height,
        };
        match self {
            AddStep::Requesting => popup(vec![Line::from(s.waiting_consent)], 50, 4),
            AddStep::Consent { url, .. } => {
                let mut lines = vec![
                    Line::from(Span::styled(s.consent_step, theme.bold())),
                    Line::from(""),
                ];
                lines.push(Line::from(Span::styled(
                    url.clone(),
                    theme.fg(Color::Blue).add_modifier(Modifier::UNDERLINED),
                )));
                lines.push(Line::from(""));
                let qr = qr_lines(url);
                // The QR code only when it fits beside the rest.
                if qr.len() as u16 + 10 <= area.height
                    && qr.first().map(|l| l.chars().count()).unwrap_or(0) as u16 + 4 <= area.width
                {
                    lines.extend(qr.into_iter().map(Line::from));
                }
                lines.push(Line::from(Span::styled(
                    format!("{} · y: copy (OSC 52) · Esc", s.waiting_consent),
                    theme.dim(),
                )));
                popup(lines, area.width.min(100), area.height)
            }
            AddStep::Permission {
                connection_id,
                choice,
            } => {
                let mut lines = vec![
                    Line::from(Span::styled(
                        format!(
                            "✓ {} — {}",
                            s.connect_success,
                            clean(&d.connection_name(connection_id))
                        ),
                        theme.fg(Color::Green),
                    )),
                    Line::from(""),
                    Line::from(Span::styled(s.chat_permission, theme.bold())),
                ];
                for (i, label) in [s.only_me_choice, s.share_choice].into_iter().enumerate() {
                    let mark = if i == *choice { "(•)" } else { "( )" };
                    lines.push(Line::from(Span::styled(
                        format!("{mark} {label}"),
                        theme.row(i == *choice),
                    )));
                }
                popup(lines, 60, 9)
            }
            AddStep::PickRule { selected, .. } => {
                let mut lines = vec![Line::from(Span::styled(s.share_choice, theme.bold()))];
                let mut options = vec![format!("+ {}", s.new_rule)];
                options.extend(
                    d.rules
                        .values()
                        .map(|r| format!("  {} — {}", s.add_to_rule, clean(&r.name))),
                );
                for (i, o) in options.into_iter().enumerate() {
                    lines.push(Line::from(Span::styled(o, theme.row(i == *selected))));
                }
                popup(lines, 64, 10)
            }
        }
    }
}

/// Removing a page: `y` confirms, any other key keeps it.
pub fn confirm_remove_key(id: &ConnectionId, k: KeyEvent) -> Out {
    match k.code {
        KeyCode::Char('y') => {
            Out::close_with(vec![Effect::Api(ApiCall::DeleteConnection(id.clone()))])
        }
        _ => Out::close(),
    }
}

pub fn confirm_remove_content(d: &Data, id: &ConnectionId) -> PopupContent {
    PopupContent {
        title: describe(Action::Remove, d.lang).into(),
        lines: vec![
            Line::from(clean(&d.connection_name(id))),
            Line::from(""),
            Line::from("y / n"),
        ],
        width: 50,
        height: 6,
    }
}

/// A QR code in half blocks (two modules per character cell).
pub fn qr_lines(data: &str) -> Vec<String> {
    let Ok(code) = qrcode::QrCode::with_error_correction_level(data.as_bytes(), qrcode::EcLevel::L)
    else {
        return vec![];
    };
    let w = code.width();
    let dark = |x: usize, y: usize| x < w && y < w && code[(x, y)] == qrcode::Color::Dark;
    let mut out = vec![];
    // One quiet module around it, rows taken two at a time.
    let mut y: isize = -1;
    while y < w as isize + 1 {
        let mut line = String::new();
        for x in -1..=w as isize {
            let top = x >= 0 && y >= 0 && dark(x as usize, y as usize);
            let bottom = x >= 0 && y + 1 >= 0 && dark(x as usize, (y + 1) as usize);
            // Light modules are drawn (inverted) so the code reads on dark terminals.
            line.push(match (top, bottom) {
                (false, false) => '█',
                (true, false) => '▄',
                (false, true) => '▀',
                (true, true) => ' ',
            });
        }
        out.push(line);
        y += 2;
    }
    out
}
