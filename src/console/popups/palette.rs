//! The command palette: every action by name, in both languages; Enter runs it.

use crate::console::component::{Out, PopupChange};
use crate::console::data::Data;
use crate::console::i18n::{describe, Lang};
use crate::console::keymap::{Action, ALL_ACTIONS};
use crate::console::ui::{clean, edit_input, PopupContent, Theme};
use crossterm::event::{KeyCode, KeyEvent};
use ratatui::text::{Line, Span};
use tui_input::Input;

#[derive(Debug, Default)]
pub struct Palette {
    pub input: Input,
    pub selected: usize,
}

/// The actions whose key name or description contains the query.
pub fn palette_matches(lang: Lang, query: &str) -> Vec<Action> {
    let q = query.to_lowercase();
    ALL_ACTIONS
        .iter()
        .filter(|(a, name)| name.contains(&q) || describe(*a, lang).to_lowercase().contains(&q))
        .map(|(a, _)| *a)
        .collect()
}

impl Palette {
    pub fn on_key(&mut self, d: &mut Data, k: KeyEvent) -> Out {
        let matches = palette_matches(d.lang, self.input.value());
        match k.code {
            KeyCode::Esc => Out::close(),
            KeyCode::Up => {
                self.selected = self.selected.saturating_sub(1);
                Out::none()
            }
            KeyCode::Down => {
                self.selected = (self.selected + 1).min(matches.len().saturating_sub(1));
                Out::none()
            }
            KeyCode::Enter => Out {
                popup: PopupChange::Close,
                run: matches.get(self.selected).copied(),
                ..Out::none()
            },
            _ => {
                edit_input(&mut self.input, &k);
                self.selected = 0;
                Out::none()
            }
        }
    }

    pub fn content(&self, d: &Data, theme: &Theme) -> PopupContent {
        let mut lines = vec![Line::from(format!("> {}", clean(self.input.value())))];
        for (i, a) in palette_matches(d.lang, self.input.value())
            .into_iter()
            .enumerate()
            .take(12)
        {
            lines.push(Line::from(Span::styled(
                format!("{:<24} {}", describe(a, d.lang), d.keymap.hint(a)),
                theme.row(i == self.selected),
            )));
        }
        PopupContent {
            title: describe(Action::Palette, d.lang).into(),
            lines,
            width: 50,
            height: 16,
        }
    }
}
