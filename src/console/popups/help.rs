//! The help popup: every key of every component, generated from the keymap.

use crate::console::data::Data;
use crate::console::i18n::describe;
use crate::console::keymap::Action;
use crate::console::ui::{truncate, PopupContent, Theme};
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};

#[derive(Debug)]
pub struct Help {
    /// The actions to list, component by component (the app collects them).
    pub entries: Vec<Action>,
}

impl Help {
    pub fn content(&self, d: &Data, theme: &Theme, area: Rect) -> PopupContent {
        // Two columns whenever they fit, so every action shows at 80×24.
        let cols: usize = if area.width >= 76 { 2 } else { 1 };
        let width = if cols == 2 {
            area.width.min(100)
        } else {
            area.width.min(56)
        };
        let col_w = (width as usize - 2) / cols;
        let cells: Vec<(String, &str)> = self
            .entries
            .iter()
            .map(|a| (d.keymap.keys_for(*a).join(" "), describe(*a, d.lang)))
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
        PopupContent {
            title: d.s().help_title.to_string(),
            lines,
            width,
            height: rows as u16 + 2,
        }
    }
}
