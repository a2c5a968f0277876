//! Drawing: a pure function of the state. Sixteen ANSI colours plus modifiers; every state is also
//! spelled out in text or symbols so nothing depends on colour (NO_COLOR turns colours off).
//! Customer text is sanitised before it reaches the terminal.

use super::app::*;
use super::i18n::{describe, Strings};
use super::keymap::Action;
use crate::model::text::{char_count, sanitize_for_terminal};
use crate::model::*;
use crate::wire::{ConnectionView, View};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};
use ratatui::Frame;
use unicode_width::UnicodeWidthStr;

/// Colours are optional (NO_COLOR); modifiers always carry the meaning too.
#[derive(Debug, Clone, Copy)]
pub struct Theme {
    pub color: bool,
    /// Minutes east of UTC used to show times.
    pub utc_offset_min: i32,
}

impl Theme {
    fn fg(&self, c: Color) -> Style {
        if self.color {
            Style::default().fg(c)
        } else {
            Style::default()
        }
    }
    fn selected(&self) -> Style {
        Style::default().add_modifier(Modifier::REVERSED)
    }
    fn dim(&self) -> Style {
        Style::default().add_modifier(Modifier::DIM)
    }
    fn bold(&self) -> Style {
        Style::default().add_modifier(Modifier::BOLD)
    }
}

fn clean(s: &str) -> String {
    sanitize_for_terminal(s, false)
}

fn fmt_time(t: &Theme, ms: Ms, with_date: bool) -> String {
    let Some(dt) = chrono::DateTime::from_timestamp_millis(ms + t.utc_offset_min as i64 * 60_000)
    else {
        return "—".into();
    };
    if with_date {
        dt.format("%d-%m-%Y %H:%M").to_string()
    } else {
        dt.format("%H:%M").to_string()
    }
}

fn fmt_duration(ms: Ms) -> String {
    let m = (ms / 60_000).max(0);
    match m {
        0..=59 => format!("{m}p"),
        60..=4319 => format!("{}h", m / 60),
        _ => format!("{}d", m / 1440),
    }
}

pub fn draw(f: &mut Frame, app: &App, theme: &Theme) {
    let area = f.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        let msg = Paragraph::new(vec![
            Line::from(app.s().too_small),
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
    // One pass over the conversations serves the tab badges, the view counts and the list.
    let rows = (main.height.saturating_sub(1) as usize / 2).max(1);
    let frame = app.inbox_frame(app.selected.saturating_sub(rows - 1), rows);
    draw_tabs(f, app, theme, tabs, &frame);
    match app.tab {
        Tab::Inbox => draw_inbox(f, app, theme, main, &frame),
        Tab::Connections => draw_connections(f, app, theme, main),
        Tab::Rules => draw_rules(f, app, theme, main),
    }
    draw_status(f, app, theme, status);
    if let Some(m) = &app.modal {
        draw_modal(f, app, theme, m, main);
    }
}

fn draw_tabs(f: &mut Frame, app: &App, theme: &Theme, area: Rect, frame: &InboxFrame) {
    let s = app.s();
    let tabs = [
        (
            Tab::Inbox,
            format!("1 {} ({})", s.tab_inbox, frame.counts[0] + frame.counts[1]),
        ),
        (
            Tab::Connections,
            format!("2 {} ({})", s.tab_connections, app.connections.len()),
        ),
        (
            Tab::Rules,
            format!("3 {} ({})", s.tab_rules, app.rules.len()),
        ),
    ];
    let mut spans = vec![];
    for (i, (tab, label)) in tabs.into_iter().enumerate() {
        if i > 0 {
            spans.push(Span::raw(" │ "));
        }
        let style = if tab == app.tab {
            theme.selected().add_modifier(Modifier::BOLD)
        } else {
            Style::default()
        };
        spans.push(Span::styled(format!(" {label} "), style));
    }
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn draw_status(f: &mut Frame, app: &App, theme: &Theme, area: Rect) {
    let s = app.s();
    let mut spans = vec![];
    if let Some(me) = &app.me {
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
    let link = match app.link {
        Link::Connected => Span::styled(format!("✓ {}", s.link_connected), theme.fg(Color::Green)),
        Link::Connecting => Span::styled("… ".to_string(), theme.dim()),
        Link::Reconnecting { retry_at } => {
            let secs = ((retry_at - app.now).max(0) + 999) / 1000;
            if app.showing_cached_data() {
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
    if !app.outbox.is_empty() {
        spans.push(Span::raw(format!(" · ⇪{}", app.outbox.len())));
    }
    if let Some(note) = &app.cache_note {
        spans.push(Span::styled(format!(" · {note}"), theme.dim()));
    }
    if let Some(n) = &app.notice {
        spans.push(Span::raw(" │ "));
        spans.push(Span::styled(clean(n), theme.bold()));
    } else {
        spans.push(Span::styled(
            format!(
                " │ {} {}",
                app.keymap.hint(Action::Help),
                describe(Action::Help, app.lang)
            ),
            theme.dim(),
        ));
    }
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn draw_inbox(f: &mut Frame, app: &App, theme: &Theme, area: Rect, frame: &InboxFrame) {
    let s = app.s();
    let [views, body] = Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(area);
    let mut spans = vec![];
    let mut views_list = vec![
        (View::Mine, s.view_mine, Action::ViewMine),
        (View::Unclaimed, s.view_unclaimed, Action::ViewUnclaimed),
    ];
    if app.is_admin() {
        views_list.push((View::All, s.view_all, Action::ViewAll));
    }
    for (i, (v, label, action)) in views_list.into_iter().enumerate() {
        let text = format!(
            " {} {} ({}) ",
            app.keymap.hint(action),
            label,
            frame.counts[i]
        );
        let style = if v == app.view {
            theme.selected()
        } else {
            Style::default()
        };
        spans.push(Span::styled(text, style));
    }
    if let Some(fl) = &app.filter {
        spans.push(Span::raw(format!("  /{}", clean(fl.value()))));
        if app.filter_typing {
            spans.push(Span::styled("▏", theme.bold()));
        }
    }
    f.render_widget(Paragraph::new(Line::from(spans)), views);

    let list_width = (body.width * 2 / 5).clamp(26, 48);
    let [list, pane] =
        Layout::horizontal([Constraint::Length(list_width), Constraint::Min(20)]).areas(body);
    draw_list(f, app, theme, list, frame);
    draw_conversation(f, app, theme, pane, frame.selected);
}

fn draw_list(f: &mut Frame, app: &App, theme: &Theme, area: Rect, frame: &InboxFrame) {
    let block = Block::default().borders(Borders::RIGHT);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let rows = (inner.height as usize / 2).max(1);
    let start = app.selected.saturating_sub(rows - 1);
    let items = &frame.window;
    if frame.total == 0 {
        f.render_widget(
            Paragraph::new(app.s().nothing_here).style(theme.dim()),
            inner,
        );
        return;
    }
    let me = app.me.as_ref().map(|m| m.id.as_str()).unwrap_or("");
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
        let name = if c.customer.display_name.is_empty() {
            c.customer.user_id.clone()
        } else {
            c.customer.display_name.clone()
        };
        let when = match app.view {
            View::Unclaimed => fmt_duration(app.now - c.waiting_at()),
            _ => fmt_time(theme, c.last_activity_at, false),
        };
        let badge = if unread > 0 {
            format!(" [{unread}]")
        } else {
            String::new()
        };
        let right = format!("{when}{badge}");
        let name = truncate(&clean(&name), w.saturating_sub(right.width() + 3));
        let pad = w.saturating_sub(2 + name.width() + right.width());
        let mut style = if unread > 0 {
            theme.bold()
        } else {
            Style::default()
        };
        if i == app.selected {
            style = style.patch(theme.selected());
        }
        lines.push(Line::from(vec![Span::styled(
            format!("{marker} {name}{}{right}", " ".repeat(pad)),
            style,
        )]));
        let state = match (c.state, c.status) {
            (_, ConvStatus::Done) => format!("✔ {}", app.s().done),
            (ConvState::Unclaimed, _) => format!("◌ {}", app.s().unclaimed),
            (ConvState::Unattended, _) => format!("◇ {}", app.s().unattended),
            (ConvState::Assigned, _) => match &c.assignee {
                Some(a) if a == me => String::new(),
                Some(a) => format!("→ {}", app.account_name(a)),
                None => String::new(),
            },
        };
        let sep = if state.is_empty() { "" } else { " · " };
        let preview = truncate(&format!("  {state}{sep}{}", clean(&c.preview)), w);
        let pstyle = if i == app.selected {
            theme.selected()
        } else {
            theme.dim()
        };
        lines.push(Line::from(Span::styled(preview, pstyle)));
    }
    f.render_widget(Paragraph::new(lines), inner);
}

/// The end of `s` in at most `max` columns, with `…` in front when cut.
fn truncate_start(s: &str, max: usize) -> String {
    use unicode_truncate::UnicodeTruncateStr;
    if s.width() <= max {
        return s.to_string();
    }
    let (kept, _) = s.unicode_truncate_start(max.saturating_sub(1));
    format!("…{kept}")
}

/// At most `max` columns of display width, with `…` when cut (wide characters count double).
fn truncate(s: &str, max: usize) -> String {
    use unicode_truncate::UnicodeTruncateStr;
    if s.width() <= max {
        return s.to_string();
    }
    let (kept, _) = s.unicode_truncate(max.saturating_sub(1));
    format!("{kept}…")
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

fn draw_conversation(
    f: &mut Frame,
    app: &App,
    theme: &Theme,
    area: Rect,
    selected: Option<&Conversation>,
) {
    let s = app.s();
    // In the list the pane follows the cursor; inside a thread it shows the open one.
    let c = match app.focus {
        Focus::List => selected.or(app.open_conversation()),
        _ => app.open_conversation().or(selected),
    };
    let Some(c) = c else {
        f.render_widget(Paragraph::new(s.no_conversation).style(theme.dim()), area);
        return;
    };
    let composer_h = if app.focus == Focus::Composer { 3 } else { 1 };
    let [header, msgs, composer] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Min(1),
        Constraint::Length(composer_h),
    ])
    .areas(area);

    let name = if c.customer.display_name.is_empty() {
        &c.customer.user_id
    } else {
        &c.customer.display_name
    };
    let who = match (&c.assignee, c.state) {
        (_, ConvState::Unclaimed) => format!(
            "◌ {} — {} {}",
            s.unclaimed,
            app.keymap.hint(Action::Claim),
            s.claim
        ),
        (_, ConvState::Unattended) => format!("◇ {}", s.unattended),
        (Some(a), _) => format!("{}: {}", s.assigned_to, app.account_name(a)),
        (None, _) => String::new(),
    };
    let window = match c.reply_window(app.now) {
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
    f.render_widget(
        Paragraph::new(vec![
            Line::from(vec![
                Span::styled(clean(name), theme.bold()),
                Span::raw(format!(
                    " · {}{done}",
                    clean(&app.connection_name(&c.connection_id))
                )),
            ]),
            Line::from(vec![Span::raw(format!("{who} · ")), window]),
        ]),
        header,
    );

    // Messages, newest at the bottom, scrolled by `app.scroll` lines.
    let width = msgs.width.max(10) as usize;
    let mut lines: Vec<Line> = vec![];
    let list = app.messages.get(&c.id).map(|v| v.as_slice()).unwrap_or(&[]);
    if app.older_cursor.get(&c.id).cloned().flatten().is_some() {
        lines.push(Line::from(Span::styled(
            format!(
                "↑ {} {}",
                app.keymap.hint(Action::Older),
                describe(Action::Older, app.lang)
            ),
            theme.dim(),
        )));
    }
    for m in list {
        let sender = match m.direction {
            Direction::Inbound => clean(if m.sender_name.is_empty() {
                name
            } else {
                &m.sender_name
            }),
            // History synced from Zalo has no staff name: it was the page that answered.
            Direction::Outbound if m.sender_name.is_empty() => {
                format!("→ {}", clean(&app.connection_name(&c.connection_id)))
            }
            Direction::Outbound => format!("→ {}", clean(&m.sender_name)),
        };
        let head_style = match m.direction {
            Direction::Inbound => theme.bold(),
            Direction::Outbound => theme.fg(Color::Cyan).add_modifier(Modifier::BOLD),
        };
        let mut head = vec![
            Span::styled(fmt_time(theme, m.created_at, false), theme.dim()),
            Span::raw(" "),
            Span::styled(sender, head_style),
        ];
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
            for l in sanitize_for_terminal(&m.text, true).lines() {
                lines.extend(
                    wrap(l, width.saturating_sub(2))
                        .into_iter()
                        .map(|w| Line::from(format!("  {w}"))),
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
    for o in app.outbox.iter().filter(|o| {
        o.conversation_id == c.id
            && !list
                .iter()
                .any(|m| m.client_key.as_ref() == Some(&o.client_key))
    }) {
        let waiting = match o.retry_at {
            Some(at) => format!(
                "⇪ {} {}s · ",
                s.outbox_retry,
                ((at - app.now).max(0) + 999) / 1000
            ),
            None => "⇪ → ".to_string(),
        };
        let room = width.saturating_sub(waiting.width());
        lines.push(Line::from(Span::styled(
            format!("{waiting}{}", truncate(&clean(&o.text), room)),
            theme.dim(),
        )));
    }
    let h = msgs.height as usize;
    let end = lines
        .len()
        .saturating_sub(app.scroll.min(lines.len().saturating_sub(h)));
    let start = end.saturating_sub(h);
    f.render_widget(Paragraph::new(Text::from(lines[start..end].to_vec())), msgs);

    // Composer.
    if app.focus == Focus::Composer {
        let count = char_count(&crate::model::text::nfc(app.composer.value()));
        let quote = if app.quote.is_some() { "↪ " } else { "" };
        let title = format!("{quote}{}/{}", count, MAX_TEXT_CHARS);
        let block = Block::default().borders(Borders::TOP).title(Span::styled(
            title,
            if count > MAX_TEXT_CHARS {
                theme.fg(Color::Red).add_modifier(Modifier::BOLD)
            } else {
                theme.dim()
            },
        ));
        let inner = block.inner(composer);
        f.render_widget(block, composer);
        let scroll = app
            .composer
            .visual_scroll(inner.width.saturating_sub(1) as usize);
        let text = sanitize_for_terminal(app.composer.value(), false);
        f.render_widget(Paragraph::new(text).scroll((0, scroll as u16)), inner);
        let x = app.composer.visual_cursor().saturating_sub(scroll) as u16;
        f.set_cursor_position((inner.x + x.min(inner.width.saturating_sub(1)), inner.y));
    } else {
        let k = &app.keymap;
        let hint = format!(
            "{} {} · {} {} · {} {} · {} {} · {} {}",
            k.hint(Action::Reply),
            describe(Action::Reply, app.lang),
            k.hint(Action::Claim),
            describe(Action::Claim, app.lang),
            k.hint(Action::Transfer),
            describe(Action::Transfer, app.lang),
            k.hint(Action::Done),
            describe(Action::Done, app.lang),
            k.hint(Action::Urgent),
            describe(Action::Urgent, app.lang),
        );
        f.render_widget(
            Paragraph::new(truncate(&hint, composer.width as usize)).style(theme.dim()),
            composer,
        );
    }
}

/// Wraps by display width (Vietnamese, emoji and CJK widths included), at spaces when it can.
fn wrap(s: &str, width: usize) -> Vec<String> {
    wrap_indented(s, width, "", "")
}

/// `wrap`, with the first line starting with `first` and the others with `rest`, so a wrapped
/// card line or warning stays aligned under its item.
fn wrap_indented(s: &str, width: usize, first: &str, rest: &str) -> Vec<String> {
    let options = textwrap::Options::new(width.max(1))
        .initial_indent(first)
        .subsequent_indent(rest)
        .break_words(true);
    textwrap::wrap(s, options)
        .into_iter()
        .map(|l| l.into_owned())
        .collect()
}

/// Styled lines of `wrap_indented`.
fn wrapped_lines(s: &str, width: u16, first: &str, rest: &str, style: Style) -> Vec<Line<'static>> {
    wrap_indented(s, width as usize, first, rest)
        .into_iter()
        .map(|l| Line::from(Span::styled(l, style)))
        .collect()
}

fn status_label(app: &App, theme: &Theme, c: &ConnectionView) -> Span<'static> {
    let s = app.s();
    let expiring = c.token_expires_at.is_some_and(|t| t - app.now < HOUR_MS);
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

fn draw_connections(f: &mut Frame, app: &App, theme: &Theme, area: Rect) {
    let s = app.s();
    let (mine, shared) = app.connection_rows();
    let mut lines: Vec<Line> = vec![];
    let mut index = 0;
    for (title, list) in [(s.my_pages, &mine), (s.shared_with_me, &shared)] {
        lines.push(Line::from(Span::styled(
            format!("{title} ({})", list.len()),
            theme.bold(),
        )));
        for c in list.iter() {
            let sel = index == app.conn_selected;
            index += 1;
            let mode = match c.chat_mode {
                ChatMode::OnlyMe => s.only_me,
                ChatMode::Shared => s.share,
            };
            // One line: the name gives way to the status.
            let status = status_label(app, theme, c);
            let room = (area.width as usize).saturating_sub(status.width() + 4);
            lines.push(Line::from(vec![
                row_title(theme, sel, &truncate(&c.name, room)),
                Span::raw("  "),
                status,
            ]));
            let rule = c
                .rule_id
                .as_ref()
                .and_then(|r| app.rules.get(r))
                .map(|r| format!(" · {}", clean(&r.name)))
                .unwrap_or_default();
            let card = format!(
                "{}: {} · {} {} · {mode}{rule}",
                s.connector,
                app.account_name(&c.connector),
                s.last_connected,
                fmt_time(theme, c.last_connected_at, true)
            );
            let indent = "   ";
            lines.extend(wrapped_lines(
                &card,
                area.width,
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
                lines.extend(wrapped_lines(
                    &text,
                    area.width,
                    indent,
                    indent,
                    theme.dim(),
                ));
            }
            if let Some(reason) = &c.status_reason {
                let style = theme.fg(Color::Red);
                lines.extend(wrapped_lines(
                    &clean(reason),
                    area.width,
                    indent,
                    indent,
                    style,
                ));
            }
        }
        lines.push(Line::from(""));
    }
    if app.is_admin() && app.dead_webhooks > 0 {
        lines.push(Line::from(Span::styled(
            format!("⚠ {} {}", app.dead_webhooks, s.dead_webhooks),
            theme.fg(Color::Red),
        )));
    }
    let k = &app.keymap;
    if app.is_admin() {
        lines.push(Line::from(Span::styled(
            format!(
                "{} {} · {} {} · {} {} · {} {}",
                k.hint(Action::AddConnection),
                s.add_connection,
                k.hint(Action::Reconnect),
                describe(Action::Reconnect, app.lang),
                k.hint(Action::ChatMode),
                describe(Action::ChatMode, app.lang),
                k.hint(Action::Remove),
                describe(Action::Remove, app.lang),
            ),
            theme.dim(),
        )));
    }
    f.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), area);
}

/// The first line of a selectable entry (a page, a rule): a marker and the name, bold.
fn row_title(theme: &Theme, selected: bool, name: &str) -> Span<'static> {
    let style = if selected {
        theme.selected().add_modifier(Modifier::BOLD)
    } else {
        theme.bold()
    };
    Span::styled(
        format!("{} {}", if selected { "▸" } else { " " }, clean(name)),
        style,
    )
}

fn method_label(app: &App, m: Method) -> &'static str {
    match m {
        Method::RoundRobin => app.s().round_robin,
        Method::SelfClaim => app.s().self_claim,
    }
}

fn old_label(app: &App, o: OldConversations) -> &'static str {
    match o {
        OldConversations::None => app.s().old_none,
        OldConversations::Available => app.s().old_available,
        OldConversations::All => app.s().old_all,
    }
}

fn draw_rules(f: &mut Frame, app: &App, theme: &Theme, area: Rect) {
    let s = app.s();
    let mut lines = vec![Line::from(Span::styled(s.rules_title, theme.bold()))];
    if app.rules.is_empty() {
        lines.push(Line::from(Span::styled(s.nothing_here, theme.dim())));
    }
    for (i, r) in app.rule_list().into_iter().enumerate() {
        let sel = i == app.rule_selected;
        lines.push(Line::from(vec![
            row_title(theme, sel, &r.name),
            Span::raw(format!(
                "  {} · {}",
                method_label(app, r.method),
                old_label(app, r.old_conversations)
            )),
        ]));
        let sources: Vec<String> = r
            .sources
            .iter()
            .map(|c| clean(&app.connection_name(c)))
            .collect();
        lines.push(Line::from(format!(
            "   {}: {}",
            s.sources,
            sources.join(", ")
        )));
        let members: Vec<String> = r.members.iter().map(|m| app.account_name(m)).collect();
        lines.push(Line::from(format!(
            "   {}: {}",
            s.members,
            members.join(", ")
        )));
    }
    if app.is_admin() {
        let k = &app.keymap;
        lines.push(Line::from(""));
        lines.push(Line::from(Span::styled(
            format!(
                "{} {} · {} {}",
                k.hint(Action::NewRule),
                s.new_rule,
                k.hint(Action::EditRule),
                describe(Action::EditRule, app.lang)
            ),
            theme.dim(),
        )));
    }
    f.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), area);
}

fn popup(area: Rect, width: u16, height: u16) -> Rect {
    let w = width.min(area.width);
    let h = height.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

fn draw_modal(f: &mut Frame, app: &App, theme: &Theme, modal: &Modal, area: Rect) {
    let s = app.s();
    let (title, lines, width, height): (String, Vec<Line>, u16, u16) = match modal {
        Modal::Help => {
            // Two columns whenever they fit, so every action shows at 80×24.
            let cols: usize = if area.width >= 76 { 2 } else { 1 };
            let width = if cols == 2 {
                area.width.min(100)
            } else {
                area.width.min(56)
            };
            let col_w = (width as usize - 2) / cols;
            let cells: Vec<(String, &str)> = super::keymap::ALL_ACTIONS
                .iter()
                .map(|(a, _)| (app.keymap.keys_for(*a).join(" "), describe(*a, app.lang)))
                .collect();
            let rows = cells.len().div_ceil(cols);
            let mut lines = vec![];
            for r in 0..rows {
                let mut spans = vec![];
                for c in 0..cols {
                    if let Some((keys, desc)) = cells.get(c * rows + r) {
                        let keys = truncate(keys, 11);
                        let desc = truncate(desc, col_w.saturating_sub(13));
                        spans.push(Span::styled(format!("{keys:>11} "), theme.bold()));
                        spans.push(Span::raw(format!(
                            "{desc:<w$}",
                            w = col_w.saturating_sub(12)
                        )));
                    }
                }
                lines.push(Line::from(spans));
            }
            (s.help_title.to_string(), lines, width, rows as u16 + 2)
        }
        Modal::Palette { input, selected } => {
            let mut lines = vec![Line::from(format!("> {}", clean(input.value())))];
            for (i, a) in app
                .palette_matches(input.value())
                .into_iter()
                .enumerate()
                .take(12)
            {
                let st = if i == *selected {
                    theme.selected()
                } else {
                    Style::default()
                };
                lines.push(Line::from(Span::styled(
                    format!("{:<24} {}", describe(a, app.lang), app.keymap.hint(a)),
                    st,
                )));
            }
            (describe(Action::Palette, app.lang).into(), lines, 50, 16)
        }
        Modal::Transfer { input, targets, .. } => {
            let mut lines = vec![Line::from(format!("> {}▏", clean(input.value())))];
            if targets.is_none() {
                lines.push(Line::from(Span::styled(s.loading, theme.dim())));
            }
            for t in transfer_candidates(targets.as_deref(), input.value())
                .into_iter()
                .take(6)
            {
                let availability = s.availability(t.availability);
                lines.push(Line::from(Span::styled(
                    format!(
                        "  {} · {} · {availability}",
                        clean(&t.username),
                        clean(&t.name)
                    ),
                    theme.dim(),
                )));
            }
            (s.transfer_to.into(), lines, 52, 10)
        }
        Modal::Attach { input } => (
            s.attach_path.into(),
            vec![Line::from(format!("> {}▏", clean(input.value())))],
            60,
            4,
        ),
        Modal::ConfirmRemoveConnection(id) => (
            describe(Action::Remove, app.lang).into(),
            vec![
                Line::from(clean(&app.connection_name(id))),
                Line::from(""),
                Line::from("y / n"),
            ],
            50,
            6,
        ),
        Modal::AddConnection(step) => add_connection_lines(app, theme, step, area),
        Modal::RuleEditor(ed) => rule_editor_lines(app, theme, ed, area),
        Modal::ConfirmRule(ed) => (
            s.old_conversations.into(),
            vec![
                Line::from(Span::styled(
                    format!("{}: {}", s.old_conversations, old_label(app, ed.old)),
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
            60,
            9,
        ),
    };
    let rect = popup(area, width, height.max(lines.len() as u16 + 2));
    f.render_widget(Clear, rect);
    let block = Block::default()
        .borders(Borders::ALL)
        .title(Span::styled(format!(" {title} "), theme.bold()));
    f.render_widget(
        Paragraph::new(lines)
            .block(block)
            .wrap(Wrap { trim: false }),
        rect,
    );
}

fn add_connection_lines(
    app: &App,
    theme: &Theme,
    step: &AddStep,
    area: Rect,
) -> (String, Vec<Line<'static>>, u16, u16) {
    let s = app.s();
    let title = s.add_connection.to_string();
    match step {
        AddStep::Requesting => (title, vec![Line::from(s.waiting_consent)], 50, 4),
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
            (title, lines, area.width.min(100), area.height)
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
                        clean(&app.connection_name(connection_id))
                    ),
                    theme.fg(Color::Green),
                )),
                Line::from(""),
                Line::from(Span::styled(s.chat_permission, theme.bold())),
            ];
            for (i, label) in [s.only_me_choice, s.share_choice].into_iter().enumerate() {
                let mark = if i == *choice { "(•)" } else { "( )" };
                let st = if i == *choice {
                    theme.selected()
                } else {
                    Style::default()
                };
                lines.push(Line::from(Span::styled(format!("{mark} {label}"), st)));
            }
            (title, lines, 60, 9)
        }
        AddStep::PickRule { selected, .. } => {
            let mut lines = vec![Line::from(Span::styled(s.share_choice, theme.bold()))];
            let mut options = vec![format!("+ {}", s.new_rule)];
            options.extend(
                app.rules
                    .values()
                    .map(|r| format!("  {} — {}", s.add_to_rule, clean(&r.name))),
            );
            for (i, o) in options.into_iter().enumerate() {
                let st = if i == *selected {
                    theme.selected()
                } else {
                    Style::default()
                };
                lines.push(Line::from(Span::styled(o, st)));
            }
            (title, lines, 64, 10)
        }
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

fn rule_editor_lines(
    app: &App,
    theme: &Theme,
    ed: &RuleEditor,
    area: Rect,
) -> (String, Vec<Line<'static>>, u16, u16) {
    let s = app.s();
    let field = |i: usize, label: &str| -> Span<'static> {
        if ed.field == i {
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
        Span::raw(truncate_start(&clean(ed.name.value()), name_room)),
        Span::raw(if ed.field == 0 { "▏" } else { "" }),
    ])];
    lines.push(Line::from(field(1, s.sources)));
    for (i, c) in app.connections.values().enumerate() {
        let checked = if ed.sources.contains(&c.id) {
            "[x]"
        } else {
            "[ ]"
        };
        let st = if ed.field == 1 && i == ed.source_cursor {
            theme.selected()
        } else {
            Style::default()
        };
        let name = truncate(&clean(&c.name), inner.saturating_sub(8));
        lines.push(Line::from(Span::styled(
            format!("    {checked} {name}"),
            st,
        )));
    }
    lines.push(Line::from(vec![
        field(2, s.members),
        Span::raw(ed.members.join(", ")),
    ]));
    if ed.field == 2 {
        lines.push(Line::from(format!(
            "    + {}▏",
            clean(ed.member_input.value())
        )));
        let comps = app.completions(ed.member_input.value());
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
        Span::raw(radio(ed.method == Method::RoundRobin, s.round_robin)),
        Span::raw(radio(ed.method == Method::SelfClaim, s.self_claim)),
    ]));
    lines.push(Line::from(field(4, s.old_conversations)));
    lines.push(Line::from(format!(
        "    {}{}{}",
        radio(ed.old == OldConversations::None, s.old_none),
        radio(ed.old == OldConversations::Available, s.old_available),
        radio(ed.old == OldConversations::All, s.old_all)
    )));
    if ed.old != OldConversations::None {
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
    if let Some(e) = &ed.error {
        lines.push(Line::from(Span::styled(
            format!("✗ {}", clean(e)),
            theme.fg(Color::Red).add_modifier(Modifier::BOLD),
        )));
    }
    lines.push(Line::from(Span::styled(
        format!(
            "Tab ↹ · Space · Enter · {} {} · Esc",
            app.keymap.hint(Action::Save),
            describe(Action::Save, app.lang)
        ),
        theme.dim(),
    )));
    let title = if ed.id.is_some() {
        describe(Action::EditRule, app.lang)
    } else {
        s.new_rule
    };
    (title.to_string(), lines, width, area.height)
}
