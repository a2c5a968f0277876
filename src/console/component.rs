//! How components talk to the app. A component (a tab, a popup) owns its state and handles its
//! keys against the shared `Data`; what it cannot do itself (open or close a popup, run an
//! action, call the hub) it asks for in an `Out`. Components never see each other or the app.

use super::keymap::Action;
use super::msg::Effect;
use super::popups::Modal;
use crate::model::Conversation;

/// Open this conversation's thread, at this message when given (a search result).
#[derive(Debug)]
pub struct Jump {
    pub conversation: Conversation,
    pub message: Option<String>,
}

/// What a component's key asks of the app.
#[derive(Default)]
pub struct Out {
    pub effects: Vec<Effect>,
    pub popup: PopupChange,
    /// An action to run next, as if its key had been pressed (the command palette).
    pub run: Option<Action>,
    pub jump: Option<Jump>,
}

#[derive(Default)]
pub enum PopupChange {
    /// The popup on screen (if any) stays.
    #[default]
    Keep,
    Close,
    /// Opens this one (in place of the one on screen).
    Open(Modal),
}

impl Out {
    pub fn none() -> Out {
        Out::default()
    }

    pub fn effects(effects: Vec<Effect>) -> Out {
        Out {
            effects,
            ..Out::default()
        }
    }

    pub fn open(modal: Modal) -> Out {
        Out {
            popup: PopupChange::Open(modal),
            ..Out::default()
        }
    }

    pub fn close() -> Out {
        Out {
            popup: PopupChange::Close,
            ..Out::default()
        }
    }

    /// Closes the popup and makes these calls.
    pub fn close_with(effects: Vec<Effect>) -> Out {
        Out {
            effects,
            popup: PopupChange::Close,
            ..Out::default()
        }
    }
}
