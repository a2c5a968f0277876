//! *Tìm kiếm*: the hub's search over customers and messages, results as you type; Enter opens
//! the thread at the message found. The same list shows *Nhắc đến tôi*, the notes that mention me.

use crate::console::component::{Jump, Out, PopupChange};
use crate::console::data::Data;
use crate::console::i18n::describe;
use crate::console::keymap::Action;
use crate::console::msg::{ApiCall, Effect};
use crate::console::ui::*;
use crate::model::text::search_terms;
use crate::wire::{Page, SearchHit};
use crossterm::event::{KeyCode, KeyEvent};
use ratatui::layout::Rect;
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use tui_input::Input;
use unicode_width::UnicodeWidthStr;

/// What the list shows.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// What the hub finds for the text typed.
    #[default]
    Search,
    /// The notes that mention me, newest first.
    Mentions,
}

#[derive(Debug, Default)]
pub struct Search {
    pub source: Source,
    pub input: Input,
    pub results: Vec<SearchHit>,
    pub next_cursor: Option<String>,
    pub selected: usize,
    /// A request for the text as typed now is on its way.
    pub waiting: bool,
}

impl Search {
    /// The list of my mentions, and the call that fills it.
    pub fn mentions() -> (Search, Vec<Effect>) {
        let mut popup = Search {
            source: Source::Mentions,
            ..Search::default()
        };
        let fx = popup.search(None);
        (popup, fx)
    }

    /// A page arrived: of a search for `query`, or (`None`) of my mentions. A page for text typed
    /// before the current one is dropped (answers can overtake each other).
    pub fn results_arrived(&mut self, query: Option<&str>, more: bool, page: Page<SearchHit>) {
        let current = match query {
            Some(q) => self.source == Source::Search && q == self.input.value(),
            None => self.source == Source::Mentions,
        };
        if !current {
            return;
        }
        if more {
            self.results.extend(page.items);
        } else {
            self.results = page.items;
            self.selected = 0;
        }
        self.next_cursor = page.next_cursor;
        self.waiting = false;
    }

    fn search(&mut self, cursor: Option<String>) -> Vec<Effect> {
        self.waiting = true;
        let call = match self.source {
            Source::Search => ApiCall::Search {
                query: self.input.value().to_string(),
                cursor,
            },
            Source::Mentions => ApiCall::Mentions { cursor },
        };
        vec![Effect::Api(call)]
    }

    pub fn on_key(&mut self, k: KeyEvent) -> Out {
        match k.code {
            KeyCode::Esc => Out::close(),
            KeyCode::Up | KeyCode::PageUp => {
                let step = if k.code == KeyCode::Up { 1 } else { 10 };
                self.selected = self.selected.saturating_sub(step);
                Out::none()
            }
            KeyCode::Down | KeyCode::PageDown => {
                let step = if k.code == KeyCode::Down { 1 } else { 10 };
                self.selected = (self.selected + step).min(self.results.len().saturating_sub(1));
                // Near the end of what is loaded: the next page.
                let near_end = self.selected + 5 >= self.results.len();
                match self.next_cursor.clone() {
                    Some(c) if near_end && !self.waiting => Out::effects(self.search(Some(c))),
                    _ => Out::none(),
                }
            }
            KeyCode::Enter => match self.results.get(self.selected) {
                Some(hit) => Out {
                    popup: PopupChange::Close,
                    jump: Some(Jump {
                        conversation: hit.conversation.clone(),
                        message: hit.message.as_ref().map(|m| m.id.clone()),
                    }),
                    ..Out::none()
                },
                None => Out::none(),
            },
            _ if self.source == Source::Mentions => Out::none(),
            _ => {
                let before = self.input.value().to_string();
                edit_input(&mut self.input, &k);
                if self.input.value() == before {
                    return Out::none();
                }
                self.next_cursor = None;
                if search_terms(self.input.value()).is_empty() {
                    self.results.clear();
                    self.waiting = false;
                    return Out::none();
                }
                Out::effects(self.search(None))
            }
        }
    }

    pub fn content(&self, d: &Data, theme: &Theme, area: Rect) -> PopupContent {
        let s = d.s();
        let width = area.width.min(100);
        let inner = width.saturating_sub(2) as usize;
        let mut lines = vec![];
        if self.source == Source::Search {
            lines.push(input_line(&self.input));
        }
        let status = if self.source == Source::Search && self.input.value().trim().is_empty() {
            s.search_hint.to_string()
        } else if self.results.is_empty() && self.source == Source::Mentions && !self.waiting {
            s.nothing_here.to_string()
        } else if self.results.is_empty() {
            (if self.waiting {
                s.searching
            } else {
                s.no_results
            })
            .to_string()
        } else {
            format!("↑↓ · Enter {} · Esc", describe(Action::Open, d.lang))
        };
        lines.push(Line::from(Span::styled(
            truncate(&status, inner),
            theme.dim(),
        )));
        // Two lines a result; the window follows the selection.
        let rows = (area.height.saturating_sub(5) as usize / 2).max(1);
        let start = self.selected.saturating_sub(rows - 1);
        for (i, hit) in self.results.iter().enumerate().skip(start).take(rows) {
            lines.extend(hit_lines(d, theme, hit, i == self.selected, inner));
        }
        if self.next_cursor.is_some() {
            let more = if self.waiting { s.searching } else { "↓ …" };
            lines.push(Line::from(Span::styled(more, theme.dim())));
        }
        let action = match self.source {
            Source::Search => Action::Search,
            Source::Mentions => Action::Mentions,
        };
        PopupContent {
            title: format!("{} ({})", describe(action, d.lang), d.keymap.hint(action)),
            lines,
            width,
            height: area.height,
        }
    }
}

/// A result: who, on which page, when; then the message found (or that the customer matched).
fn hit_lines(
    d: &Data,
    theme: &Theme,
    hit: &SearchHit,
    selected: bool,
    width: usize,
) -> Vec<Line<'static>> {
    let c = &hit.conversation;
    let name = c.customer.name_or_id();
    let at = hit
        .message
        .as_ref()
        .map(|m| m.created_at)
        .unwrap_or(c.last_activity_at);
    let right = format!(" · {}", fmt_time(theme, at, true));
    let page = clean(&d.connection_name(&c.connection_id));
    let head = format!("{} · {page}", clean(name));
    let head = truncate(&head, width.saturating_sub(right.width() + 2));
    let marker = if selected { "▸" } else { " " };
    let style = if selected {
        theme.selected().add_modifier(Modifier::BOLD)
    } else {
        theme.bold()
    };
    let body = match &hit.message {
        Some(m) => {
            let first = m.text.lines().next().unwrap_or_default();
            if m.kind == crate::model::MessageKind::Note {
                format!("  ✎ {}: {}", clean(&m.sender_name), clean(first))
            } else {
                format!("  {}", clean(first))
            }
        }
        None => format!("  ◉ {} · {}", d.s().customer, clean(&c.customer.user_id)),
    };
    vec![
        Line::from(Span::styled(format!("{marker} {head}{right}"), style)),
        Line::from(Span::styled(truncate(&body, width), theme.row(selected))),
    ]
}
