//! What every component draws with: the theme, sanitising, truncating and wrapping by display
//! width, times, the popup frame, and line editing for text fields. Sixteen ANSI colours plus
//! modifiers; every state is also spelled out in text or symbols so nothing depends on colour
//! (NO_COLOR turns colours off). Customer text is sanitised before it reaches the terminal.

use crate::model::text::sanitize_for_terminal;
use crate::model::Ms;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};
use ratatui::Frame;
use tui_input::{Input, InputRequest};
use unicode_width::UnicodeWidthStr;

/// Colours are optional (NO_COLOR); modifiers always carry the meaning too.
#[derive(Debug, Clone, Copy)]
pub struct Theme {
    pub color: bool,
    /// Minutes east of UTC used to show times.
    pub utc_offset_min: i32,
}

impl Theme {
    pub fn fg(&self, c: Color) -> Style {
        if self.color {
            Style::default().fg(c)
        } else {
            Style::default()
        }
    }
    pub fn selected(&self) -> Style {
        Style::default().add_modifier(Modifier::REVERSED)
    }
    pub fn dim(&self) -> Style {
        Style::default().add_modifier(Modifier::DIM)
    }
    pub fn bold(&self) -> Style {
        Style::default().add_modifier(Modifier::BOLD)
    }
    /// The style of a selectable row: reversed when selected.
    pub fn row(&self, selected: bool) -> Style {
        if selected {
            self.selected()
        } else {
            Style::default()
        }
    }
}

/// One line of text from outside (a customer, Zalo, a colleague), safe for the terminal.
pub fn clean(s: &str) -> String {
    sanitize_for_terminal(s, false)
}

/// A customer's labels as `#name #other`, so they read as labels without colour.
pub fn hashtags(labels: &[String]) -> String {
    let tags: Vec<String> = labels.iter().map(|l| format!("#{}", clean(l))).collect();
    tags.join(" ")
}

pub fn fmt_time(t: &Theme, ms: Ms, with_date: bool) -> String {
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

pub fn fmt_duration(ms: Ms) -> String {
    let m = (ms / 60_000).max(0);
    match m {
        0..=59 => format!("{m}p"),
        60..=4319 => format!("{}h", m / 60),
        _ => format!("{}d", m / 1440),
    }
}

/// The end of `s` in at most `max` columns, with `…` in front when cut.
pub fn truncate_start(s: &str, max: usize) -> String {
    use unicode_truncate::UnicodeTruncateStr;
    if s.width() <= max {
        return s.to_string();
    }
    let (kept, _) = s.unicode_truncate_start(max.saturating_sub(1));
    format!("…{kept}")
}

/// At most `max` columns of display width, with `…` when cut (wide characters count double).
pub fn truncate(s: &str, max: usize) -> String {
    use unicode_truncate::UnicodeTruncateStr;
    if s.width() <= max {
        return s.to_string();
    }
    let (kept, _) = s.unicode_truncate(max.saturating_sub(1));
    format!("{kept}…")
}

/// Wraps by display width (Vietnamese, emoji and CJK widths included), at spaces when it can.
pub fn wrap(s: &str, width: usize) -> Vec<String> {
    wrap_indented(s, width, "", "")
}

/// `wrap`, with the first line starting with `first` and the others with `rest`, so a wrapped
/// card line or warning stays aligned under its item.
pub fn wrap_indented(s: &str, width: usize, first: &str, rest: &str) -> Vec<String> {
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
pub fn wrapped_lines(
    s: &str,
    width: u16,
    first: &str,
    rest: &str,
    style: Style,
) -> Vec<Line<'static>> {
    wrap_indented(s, width as usize, first, rest)
        .into_iter()
        .map(|l| Line::from(Span::styled(l, style)))
        .collect()
}

/// The first line of a selectable entry (a page, a rule): a marker and the name, bold.
pub fn row_title(theme: &Theme, selected: bool, name: &str) -> Span<'static> {
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

/// A text field's line: the prompt, the (sanitised) text and a cursor mark.
pub fn input_line(input: &Input) -> Line<'static> {
    Line::from(format!("> {}▏", clean(input.value())))
}

/// What a popup shows: its title, lines and preferred size (it grows to fit its lines).
pub struct PopupContent {
    pub title: String,
    pub lines: Vec<Line<'static>>,
    pub width: u16,
    pub height: u16,
}

/// Draws a popup centred in `area` over what is below it.
pub fn draw_popup(f: &mut Frame, theme: &Theme, area: Rect, p: PopupContent) {
    let height = p.height.max(p.lines.len() as u16 + 2);
    let w = p.width.min(area.width);
    let h = height.min(area.height);
    let rect = Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    };
    f.render_widget(Clear, rect);
    let block = Block::default()
        .borders(Borders::ALL)
        .title(Span::styled(format!(" {} ", p.title), theme.bold()));
    f.render_widget(
        Paragraph::new(p.lines)
            .block(block)
            .wrap(Wrap { trim: false }),
        rect,
    );
}

/// Line editing keys for every text field (tui-input requests, independent of the terminal crate).
pub fn edit_input(input: &mut Input, k: &KeyEvent) {
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

/// Pasted text appended to a field, in NFC like everything typed.
pub fn paste_into(input: &mut Input, text: &str) {
    let mut value = input.value().to_string();
    value.push_str(&crate::model::text::nfc(text));
    *input = Input::new(value);
}
