//! The two bars around the tabs: the tab bar on top (with counts), the status line below (me,
//! availability, the link, the outbox, the last notice or the help key).

use super::data::Data;
use super::i18n::describe;
use super::keymap::Action;
use super::msg::Link;
use super::tabs::Tab;
use super::ui::{clean, Theme};
use crate::model::Availability;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

/// `waiting`: the inbox's badge (mine + unclaimed).
pub fn draw_tabs(f: &mut Frame, d: &Data, theme: &Theme, area: Rect, current: Tab, waiting: usize) {
    let s = d.s();
    let tabs = [
        (Tab::Inbox, format!("1 {} ({waiting})", s.tab_inbox)),
        (
            Tab::Connections,
            format!("2 {} ({})", s.tab_connections, d.connections.len()),
        ),
        (Tab::Rules, format!("3 {} ({})", s.tab_rules, d.rules.len())),
    ];
    let mut spans = vec![];
    for (i, (tab, label)) in tabs.into_iter().enumerate() {
        if i > 0 {
            spans.push(Span::raw(" │ "));
        }
        let style = if tab == current {
            theme.selected().add_modifier(Modifier::BOLD)
        } else {
            Style::default()
        };
        spans.push(Span::styled(format!(" {label} "), style));
    }
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

pub fn draw_status(f: &mut Frame, d: &Data, theme: &Theme, area: Rect) {
    let s = d.s();
    let mut spans = vec![];
    if let Some(me) = &d.me {
        spans.push(Span::styled(format!(" {} ", me.username), theme.bold()));
        let role = if me.is_admin() { "admin" } else { "agent" };
        spans.push(Span::raw(format!("({role}) · ")));
        let (mark, color) = match me.availability {
            Availability::Available => ("●", Color::Green),
            Availability::Away => ("○", Color::Yellow),
        };
        let text = s.availability(me.availability);
        spans.push(Span::styled(format!("{mark} {text}"), theme.fg(color)));
        spans.push(Span::raw(" · "));
    }
    let link = match d.link {
        Link::Connected => Span::styled(format!("✓ {}", s.link_connected), theme.fg(Color::Green)),
        Link::Connecting => Span::styled("… ".to_string(), theme.dim()),
        Link::Reconnecting { retry_at } => {
            let secs = ((retry_at - d.now).max(0) + 999) / 1000;
            if d.showing_cached_data() {
                Span::styled(
                    format!("✗ {} · ↻ {secs}s", s.link_offline),
                    theme.fg(Color::Red),
                )
            } else {
                Span::styled(
                    format!("↻ {} {secs}s", s.link_reconnecting),
                    theme.fg(Color::Yellow),
                )
            }
        }
        Link::Offline => Span::styled(format!("✗ {}", s.link_offline), theme.fg(Color::Red)),
    };
    spans.push(link);
    if !d.outbox.is_empty() {
        spans.push(Span::raw(format!(" · ⇪{}", d.outbox.len())));
    }
    if let Some(note) = &d.cache_note {
        spans.push(Span::styled(format!(" · {note}"), theme.dim()));
    }
    if let Some(n) = &d.notice {
        spans.push(Span::raw(" │ "));
        spans.push(Span::styled(clean(n), theme.bold()));
    } else {
        spans.push(Span::styled(
            format!(
                " │ {} {}",
                d.keymap.hint(Action::Help),
                describe(Action::Help, d.lang)
            ),
            theme.dim(),
        ));
    }
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}
