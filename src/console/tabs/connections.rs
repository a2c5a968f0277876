//! Tab 2, *Kết nối*: the pages I connected and those shared with me, each with its token and
//! webhook health; admins add, reconnect, share and remove pages here.

use super::inbox::step_selection;
use crate::console::component::Out;
use crate::console::data::Data;
use crate::console::i18n::describe;
use crate::console::keymap::Action;
use crate::console::msg::{ApiCall, Effect};
use crate::console::popups::add_connection::AddStep;
use crate::console::popups::Modal;
use crate::console::ui::*;
use crate::model::*;
use crate::wire::ConnectionView;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};
use ratatui::Frame;

/// The actions this tab handles, in help order.
pub const HELP: &[Action] = &[
    Action::AddConnection,
    Action::Reconnect,
    Action::Remove,
    Action::ChatMode,
];

#[derive(Default)]
pub struct ConnectionsTab {
    pub selected: usize,
}

impl ConnectionsTab {
    pub fn clamp_selection(&mut self, d: &Data) {
        self.selected = self.selected.min(d.connections.len().saturating_sub(1));
    }

    pub fn run_action(&mut self, d: &mut Data, a: Action) -> Option<Out> {
        use Action::*;
        let admin = d.is_admin();
        let selected = || d.connection_list().get(self.selected).map(|c| c.id.clone());
        let out = match a {
            Up | Down | PageUp | PageDown => {
                self.selected = step_selection(self.selected, a, d.connections.len());
                Out::none()
            }
            AddConnection | Reconnect if admin => Out {
                effects: vec![Effect::Api(ApiCall::Authorize)],
                ..Out::open(Modal::AddConnection(AddStep::Requesting))
            },
            Remove if admin => Out::open(Modal::ConfirmRemoveConnection(selected()?)),
            ChatMode if admin => Out::open(Modal::AddConnection(AddStep::Permission {
                connection_id: selected()?,
                choice: 0,
            })),
            _ => return None,
        };
        Some(out)
    }

    pub fn draw(&self, f: &mut Frame, d: &Data, theme: &Theme, area: Rect) {
        let s = d.s();
        let (mine, shared) = d.connection_rows();
        let mut lines: Vec<Line> = vec![];
        let mut index = 0;
        for (title, list) in [(s.my_pages, &mine), (s.shared_with_me, &shared)] {
            lines.push(Line::from(Span::styled(
                format!("{title} ({})", list.len()),
                theme.bold(),
            )));
            for c in list.iter() {
                let sel = index == self.selected;
                index += 1;
                lines.extend(connection_card(d, theme, c, sel, area.width));
            }
            lines.push(Line::from(""));
        }
        if d.is_admin() && d.dead_webhooks > 0 {
            lines.push(Line::from(Span::styled(
                format!("⚠ {} {}", d.dead_webhooks, s.dead_webhooks),
                theme.fg(Color::Red),
            )));
        }
        let k = &d.keymap;
        if d.is_admin() {
            lines.push(Line::from(Span::styled(
                format!(
                    "{} {} · {} {} · {} {} · {} {}",
                    k.hint(Action::AddConnection),
                    s.add_connection,
                    k.hint(Action::Reconnect),
                    describe(Action::Reconnect, d.lang),
                    k.hint(Action::ChatMode),
                    describe(Action::ChatMode, d.lang),
                    k.hint(Action::Remove),
                    describe(Action::Remove, d.lang),
                ),
                theme.dim(),
            )));
        }
        f.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), area);
    }
}

/// One page: its name and status on one line (the name gives way), then its card.
fn connection_card(
    d: &Data,
    theme: &Theme,
    c: &ConnectionView,
    selected: bool,
    width: u16,
) -> Vec<Line<'static>> {
    let s = d.s();
    let mode = match c.chat_mode {
        ChatMode::OnlyMe => s.only_me,
        ChatMode::Shared => s.share,
    };
    let status = status_label(d, theme, c);
    let room = (width as usize).saturating_sub(status.width() + 4);
    let mut lines = vec![Line::from(vec![
        row_title(theme, selected, &truncate(&c.name, room)),
        Span::raw("  "),
        status,
    ])];
    let rule = c
        .rule_id
        .as_ref()
        .and_then(|r| d.rules.get(r))
        .map(|r| format!(" · {}", clean(&r.name)))
        .unwrap_or_default();
    let card = format!(
        "{}: {} · {} {} · {mode}{rule}",
        s.connector,
        d.account_name(&c.connector),
        s.last_connected,
        fmt_time(theme, c.last_connected_at, true)
    );
    let indent = "   ";
    lines.extend(wrapped_lines(
        &card,
        width,
        indent,
        indent,
        Style::default(),
    ));
    let mut detail = vec![];
    if let Some(t) = c.token_expires_at {
        detail.push(format!("{} {}", s.token_expires, fmt_time(theme, t, true)));
    }
    if let Some(t) = c.last_event_at {
        detail.push(format!("{} {}", s.last_event, fmt_time(theme, t, true)));
    }
    if !detail.is_empty() {
        let text = detail.join(" · ");
        lines.extend(wrapped_lines(&text, width, indent, indent, theme.dim()));
    }
    if let Some(reason) = &c.status_reason {
        let style = theme.fg(Color::Red);
        lines.extend(wrapped_lines(&clean(reason), width, indent, indent, style));
    }
    lines
}

fn status_label(d: &Data, theme: &Theme, c: &ConnectionView) -> Span<'static> {
    let s = d.s();
    let expiring = c.token_expires_at.is_some_and(|t| t - d.now < HOUR_MS);
    match c.status {
        ConnectionStatus::Connected if expiring => {
            Span::styled(format!("! {}", s.token_expiring), theme.fg(Color::Yellow))
        }
        ConnectionStatus::Connected => {
            Span::styled(format!("✓ {}", s.connected), theme.fg(Color::Green))
        }
        ConnectionStatus::NeedsReauth => Span::styled(
            format!("✗ {}", s.needs_reauth),
            theme.fg(Color::Red).add_modifier(Modifier::BOLD),
        ),
        ConnectionStatus::Disconnected => {
            Span::styled(format!("✗ {}", s.disconnected), theme.fg(Color::Red))
        }
    }
}
