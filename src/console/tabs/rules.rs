//! Tab 3, *Quy tắc*: the distribution rules (which pages, which members, round robin or
//! first-to-claim); admins create and edit them here.

use super::inbox::step_selection;
use crate::console::component::Out;
use crate::console::data::Data;
use crate::console::i18n::describe;
use crate::console::keymap::Action;
use crate::console::popups::rule_editor::{method_label, old_label, RuleEditor};
use crate::console::popups::Modal;
use crate::console::ui::*;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};
use ratatui::Frame;

/// The actions this tab handles, in help order.
pub const HELP: &[Action] = &[Action::NewRule, Action::EditRule];

#[derive(Default)]
pub struct RulesTab {
    pub selected: usize,
}

impl RulesTab {
    pub fn clamp_selection(&mut self, d: &Data) {
        self.selected = self.selected.min(d.rules.len().saturating_sub(1));
    }

    pub fn run_action(&mut self, d: &mut Data, a: Action) -> Option<Out> {
        use Action::*;
        let out = match a {
            Up | Down | PageUp | PageDown => {
                self.selected = step_selection(self.selected, a, d.rules.len());
                Out::none()
            }
            NewRule if d.is_admin() => Out::open(Modal::RuleEditor(RuleEditor::new(None, vec![]))),
            EditRule | Open if d.is_admin() => {
                let rule = *d.rule_list().get(self.selected)?;
                let members = rule.members.iter().map(|m| d.account_name(m)).collect();
                Out::open(Modal::RuleEditor(RuleEditor::from_rule(rule, members)))
            }
            _ => return None,
        };
        Some(out)
    }

    pub fn draw(&self, f: &mut Frame, d: &Data, theme: &Theme, area: Rect) {
        let s = d.s();
        let mut lines = vec![Line::from(Span::styled(s.rules_title, theme.bold()))];
        if d.rules.is_empty() {
            lines.push(Line::from(Span::styled(s.nothing_here, theme.dim())));
        }
        for (i, r) in d.rule_list().into_iter().enumerate() {
            lines.push(Line::from(vec![
                row_title(theme, i == self.selected, &r.name),
                Span::raw(format!(
                    "  {} · {}",
                    method_label(s, r.method),
                    old_label(s, r.old_conversations)
                )),
            ]));
            let sources: Vec<String> = r
                .sources
                .iter()
                .map(|c| clean(&d.connection_name(c)))
                .collect();
            lines.push(Line::from(format!(
                "   {}: {}",
                s.sources,
                sources.join(", ")
            )));
            let members: Vec<String> = r.members.iter().map(|m| d.account_name(m)).collect();
            lines.push(Line::from(format!(
                "   {}: {}",
                s.members,
                members.join(", ")
            )));
        }
        if d.is_admin() {
            let k = &d.keymap;
            lines.push(Line::from(""));
            lines.push(Line::from(Span::styled(
                format!(
                    "{} {} · {} {}",
                    k.hint(Action::NewRule),
                    s.new_rule,
                    k.hint(Action::EditRule),
                    describe(Action::EditRule, d.lang)
                ),
                theme.dim(),
            )));
        }
        f.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), area);
    }
}
