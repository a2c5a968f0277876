//! The contract between the console's state and its runtime: messages in (keys, ticks, what the
//! hub said), effects out (calls to make, a bell, a clipboard write). Nothing here does I/O.

use super::data::{OutboxItem, Snapshot};
use crate::model::*;
use crate::wire::{
    AuthorizeResponse, Event, OutboundAttachment, Page, RuleInput, SearchHit, TransferTarget,
};
use crossterm::event::Event as TermEvent;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    Connecting,
    Connected,
    Reconnecting { retry_at: Ms },
    Offline,
}

#[derive(Debug)]
pub enum Msg {
    Term(TermEvent),
    /// SIGHUP / SIGTERM: leave cleanly.
    Shutdown,
    Tick(Ms),
    Net(NetEvent),
}

#[derive(Debug)]
pub enum NetEvent {
    Snapshot(Box<Snapshot>),
    Event(Box<Event>),
    Link(Link),
    Messages {
        conversation_id: ConversationId,
        items: Vec<Message>,
        next_cursor: Option<String>,
        older: bool,
    },
    MessagesFailed {
        conversation_id: ConversationId,
        error: String,
    },
    ReplyAccepted {
        client_key: String,
        message: Box<Message>,
    },
    ReplyRejected {
        client_key: String,
        error: String,
    },
    /// The hub could not be reached or failed (5xx): the reply stays in the outbox and is tried
    /// again with backoff.
    ReplyDeferred {
        client_key: String,
        error: String,
    },
    ClaimLost {
        winner: Option<String>,
    },
    TransferTargets {
        conversation_id: ConversationId,
        targets: Vec<TransferTarget>,
    },
    /// A page of `GET /search` for `query` (`more`: a next page of the same search).
    SearchResults {
        query: String,
        more: bool,
        page: Page<SearchHit>,
    },
    Authorize(AuthorizeResponse),
    Failed(String),
    Info(String),
    EditorDone(String),
    Attachment(OutboundAttachment),
}

#[derive(Debug, Clone)]
pub enum ApiCall {
    Claim(ConversationId),
    Reply(OutboxItem),
    Transfer {
        id: ConversationId,
        to: String,
    },
    TransferTargets(ConversationId),
    Release(ConversationId),
    Done(ConversationId),
    Read(ConversationId),
    SetAvailability(Availability),
    LoadMessages {
        id: ConversationId,
        before: Option<String>,
    },
    Authorize,
    SetChatMode {
        id: ConnectionId,
        mode: ChatMode,
    },
    SaveRule {
        id: Option<RuleId>,
        input: RuleInput,
    },
    DeleteConnection(ConnectionId),
    LoadAttachment {
        path: String,
    },
    Search {
        query: String,
        cursor: Option<String>,
    },
}

#[derive(Debug, Clone)]
pub enum Effect {
    Api(ApiCall),
    Bell,
    Copy(String),
    OpenEditor(String),
    Quit,
}
