//! Attach a file to the open thread: a path, read by the runtime and sent as its own reply.

use crate::console::component::Out;
use crate::console::data::Data;
use crate::console::msg::{ApiCall, Effect};
use crate::console::ui::{edit_input, input_line, PopupContent};
use crate::model::ConversationId;
use crossterm::event::{KeyCode, KeyEvent};
use tui_input::Input;

#[derive(Debug)]
pub struct Attach {
    pub input: Input,
    /// The thread it goes to, whichever is open when the file has been read.
    conversation: ConversationId,
}

impl Attach {
    pub fn new(conversation: ConversationId) -> Attach {
        Attach {
            input: Input::default(),
            conversation,
        }
    }

    pub fn on_key(&mut self, k: KeyEvent) -> Out {
        match k.code {
            KeyCode::Esc => Out::close(),
            KeyCode::Enter => Out::close_with(vec![Effect::Api(ApiCall::LoadAttachment {
                path: self.input.value().trim().to_string(),
                conversation: self.conversation.clone(),
            })]),
            _ => {
                edit_input(&mut self.input, &k);
                Out::none()
            }
        }
    }

    pub fn content(&self, d: &Data) -> PopupContent {
        PopupContent {
            title: d.s().attach_path.into(),
            lines: vec![input_line(&self.input)],
            width: 60,
            height: 4,
        }
    }
}
