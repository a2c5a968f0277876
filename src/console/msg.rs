//! The contract between the console's state and its runtime: messages in (keys, ticks, what the
//! hub said), effects out (calls to make, a bell, a clipboard write). Nothing here does I/O.

use super::data::{OutboxItem, Snapshot};
use crate::model::*;
use crate::wire::{
    AuthorizeResponse, CustomerPanel, Event, LabelChoices, OutboundAttachment, Page, RuleInput,
    SearchHit, TransferTarget,
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
    NoteAdded(Box<Message>),
    CustomerPanel {
        conversation_id: ConversationId,
        panel: Box<CustomerPanel>,
    },
    /// The labels to choose from for a conversation's customer.
    Labels {
        conversation_id: ConversationId,
        choices: LabelChoices,
    },
    /// Who may see a conversation (whom a note there can mention).
    Colleagues {
        conversation_id: ConversationId,
        list: Vec<TransferTarget>,
    },
    /// A page of `GET /mentions` (`more`: a next page).
    Mentions {
        more: bool,
        page: Page<SearchHit>,
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
    /// A file to send as its own reply in this conversation (read from disk or a quick reply's).
    Attachment {
        conversation: ConversationId,
        attachment: OutboundAttachment,
    },
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
        conversation: ConversationId,
    },
    /// A quick reply's image or file, to send in `conversation`.
    QuickReplyFile {
        id: String,
        conversation: ConversationId,
    },
    Search {
        query: String,
        cursor: Option<String>,
    },
    Note {
        conversation_id: ConversationId,
        client_key: String,
        text: String,
    },
    Colleagues(ConversationId),
    CustomerPanel(ConversationId),
    Labels(ConversationId),
    AttachLabel {
        id: ConversationId,
        name: String,
    },
    DetachLabel {
        id: ConversationId,
        name: String,
    },
    Mentions {
        cursor: Option<String>,
    },
}

/// What a notification is about; each kind can be switched off in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewsKind {
    /// A conversation newly waiting to be claimed on a page of my rules (admins: any page).
    Unclaimed,
    /// A customer message in a conversation of mine.
    Mine,
    /// A colleague's note that mentions me.
    Mention,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub kind: NewsKind,
    pub conversation_id: ConversationId,
    pub title: String,
    pub body: String,
}

#[derive(Debug, Clone)]
pub enum Effect {
    Api(ApiCall),
    /// The bell and a desktop notification, as the config says.
    Notify(Notification),
    Copy(String),
    OpenEditor(String),
    Quit,
}
