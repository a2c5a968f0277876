//! Hand a conversation over to a colleague: the hub lists whom (`targets`), typing completes.

use crate::console::component::Out;
use crate::console::data::Data;
use crate::console::msg::{ApiCall, Effect};
use crate::console::ui::{clean, edit_input, input_line, PopupContent, Theme};
use crate::model::text::fold;
use crate::model::ConversationId;
use crate::wire::TransferTarget;
use crossterm::event::{KeyCode, KeyEvent};
use ratatui::text::{Line, Span};
use tui_input::Input;

#[derive(Debug)]
pub struct Transfer {
    pub conversation_id: ConversationId,
    pub input: Input,
    /// From the hub; `None` while loading.
    pub targets: Option<Vec<TransferTarget>>,
}

/// Whom a transfer dialog offers for what was typed: an exact username alone, else every target
/// whose username or name starts with it (accents and case ignored).
pub fn transfer_candidates<'a>(
    targets: Option<&'a [TransferTarget]>,
    typed: &str,
) -> Vec<&'a TransferTarget> {
    let targets = targets.unwrap_or_default();
    let typed = typed.trim();
    if let Some(exact) = targets
        .iter()
        .find(|t| t.username.eq_ignore_ascii_case(typed))
    {
        return vec![exact];
    }
    let needle = fold(typed);
    targets
        .iter()
        .filter(|t| fold(&t.username).starts_with(&needle) || fold(&t.name).starts_with(&needle))
        .collect()
}

impl Transfer {
    pub fn new(conversation_id: ConversationId) -> Transfer {
        Transfer {
            conversation_id,
            input: Input::default(),
            targets: None,
        }
    }

    /// The hub's list arrived (for this conversation, or it is not ours).
    pub fn targets_loaded(&mut self, conversation_id: &str, targets: Vec<TransferTarget>) {
        if self.conversation_id == conversation_id {
            self.targets = Some(targets);
        }
    }

    pub fn on_key(&mut self, d: &mut Data, k: KeyEvent) -> Out {
        let candidates = transfer_candidates(self.targets.as_deref(), self.input.value());
        match k.code {
            KeyCode::Esc => return Out::close(),
            KeyCode::Tab => {
                if let Some(first) = candidates.first() {
                    self.input = Input::new(first.username.clone());
                }
            }
            KeyCode::Enter => match candidates.as_slice() {
                [one] => {
                    return Out::close_with(vec![Effect::Api(ApiCall::Transfer {
                        id: self.conversation_id.clone(),
                        to: one.username.clone(),
                    })]);
                }
                _ if self.targets.is_some() => {
                    d.notice(format!("{}: {}", d.s().unknown_member, self.input.value()))
                }
                _ => {}
            },
            _ => edit_input(&mut self.input, &k),
        }
        Out::none()
    }

    pub fn content(&self, d: &Data, theme: &Theme) -> PopupContent {
        let s = d.s();
        let mut lines = vec![input_line(&self.input)];
        if self.targets.is_none() {
            lines.push(Line::from(Span::styled(s.loading, theme.dim())));
        }
        for t in transfer_candidates(self.targets.as_deref(), self.input.value())
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
        PopupContent {
            title: s.transfer_to.into(),
            lines,
            width: 52,
            height: 10,
        }
    }
}
