//! The popups over the tabs, one component each: its state, keys, view and help entries. One is
//! open at a time; it has every key while it is.

pub mod add_connection;
pub mod attach;
pub mod customer;
pub mod help;
pub mod labels;
pub mod palette;
pub mod rule_editor;
pub mod search;
pub mod transfer;

use super::component::Out;
use super::data::Data;
use super::ui::{draw_popup, Theme};
use crossterm::event::KeyEvent;
use ratatui::layout::Rect;
use ratatui::Frame;
use tui_input::Input;

#[derive(Debug)]
pub enum Modal {
    Help(help::Help),
    Palette(palette::Palette),
    /// Hand the conversation over.
    Transfer(transfer::Transfer),
    Attach(attach::Attach),
    Search(search::Search),
    Customer(customer::CustomerCard),
    Labels(labels::Labels),
    AddConnection(add_connection::AddStep),
    ConfirmRemoveConnection(crate::model::ConnectionId),
    RuleEditor(rule_editor::RuleEditor),
    ConfirmRule(rule_editor::RuleEditor),
}

impl Modal {
    pub fn on_key(&mut self, d: &mut Data, k: KeyEvent) -> Out {
        match self {
            Modal::Help(_) => Out::close(),
            Modal::Palette(p) => p.on_key(d, k),
            Modal::Transfer(t) => t.on_key(d, k),
            Modal::Attach(a) => a.on_key(k),
            Modal::Search(s) => s.on_key(k),
            Modal::Customer(c) => c.on_key(k),
            Modal::Labels(l) => l.on_key(d, k),
            Modal::AddConnection(step) => step.on_key(d, k),
            Modal::ConfirmRemoveConnection(id) => add_connection::confirm_remove_key(id, k),
            Modal::RuleEditor(ed) => ed.on_key(d, k),
            Modal::ConfirmRule(ed) => ed.confirm_key(k),
        }
    }

    /// The field pasted text goes to, if this popup has one.
    pub fn paste_target(&mut self) -> Option<&mut Input> {
        match self {
            Modal::Palette(p) => Some(&mut p.input),
            Modal::Transfer(t) => Some(&mut t.input),
            Modal::Attach(a) => Some(&mut a.input),
            Modal::Search(s) => Some(&mut s.input),
            Modal::Labels(l) => Some(&mut l.input),
            Modal::RuleEditor(ed) => Some(ed.text_field()),
            _ => None,
        }
    }

    pub fn draw(&self, f: &mut Frame, d: &Data, theme: &Theme, area: Rect) {
        let content = match self {
            Modal::Help(h) => h.content(d, theme, area),
            Modal::Palette(p) => p.content(d, theme),
            Modal::Transfer(t) => t.content(d, theme),
            Modal::Attach(a) => a.content(d),
            Modal::Search(s) => s.content(d, theme, area),
            Modal::Customer(c) => c.content(d, theme, area),
            Modal::Labels(l) => l.content(d, theme, area),
            Modal::AddConnection(step) => step.content(d, theme, area),
            Modal::ConfirmRemoveConnection(id) => add_connection::confirm_remove_content(d, id),
            Modal::RuleEditor(ed) => ed.content(d, theme, area),
            Modal::ConfirmRule(ed) => ed.confirm_content(d, theme),
        };
        draw_popup(f, theme, area, content);
    }
}
