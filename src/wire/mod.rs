//! What crosses the wire between hub and console: REST bodies and stream events.

use crate::model::*;
use serde::{Deserialize, Serialize};

/// A connection as the API shows it: tokens never leave the hub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionView {
    pub id: ConnectionId,
    pub oa_id: String,
    pub name: String,
    pub avatar: String,
    pub category: String,
    pub connector: AccountId,
    pub connected_at: Ms,
    pub last_connected_at: Ms,
    pub chat_mode: ChatMode,
    pub rule_id: Option<RuleId>,
    pub status: ConnectionStatus,
    pub status_reason: Option<String>,
    pub token_expires_at: Option<Ms>,
    pub last_event_at: Option<Ms>,
    pub last_error: Option<String>,
}

impl From<&Connection> for ConnectionView {
    fn from(c: &Connection) -> Self {
        ConnectionView {
            id: c.id.clone(),
            oa_id: c.oa_id.clone(),
            name: c.name.clone(),
            avatar: c.avatar.clone(),
            category: c.category.clone(),
            connector: c.connector.clone(),
            connected_at: c.connected_at,
            last_connected_at: c.last_connected_at,
            chat_mode: c.chat_mode,
            rule_id: c.rule_id.clone(),
            status: c.status,
            status_reason: c.status_reason.clone(),
            token_expires_at: (c.tokens.access_expires_at > 0)
                .then_some(c.tokens.access_expires_at),
            last_event_at: c.last_event_at,
            last_error: c.last_error.clone(),
        }
    }
}

/// One change, in the hub's durable, totally ordered log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub seq: u64,
    pub at: Ms,
    pub body: EventBody,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventBody {
    Conversation {
        conversation: Conversation,
    },
    Message {
        message: Message,
    },
    Connection {
        connection: ConnectionView,
        /// The account whose "add connection" flow produced this event.
        #[serde(default)]
        started_by: Option<AccountId>,
    },
    ConnectionRemoved {
        id: ConnectionId,
    },
    Rule {
        rule: Rule,
    },
    RuleRemoved {
        id: RuleId,
    },
    QuickReply {
        quick_reply: crate::model::QuickReply,
    },
    QuickReplyRemoved {
        id: String,
    },
    Account {
        account: Account,
    },
}

/// Frames the hub sends on `/api/v1/stream`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[allow(clippy::large_enum_variant)] // frames live for one send or receive
pub enum Frame {
    /// First frame: who you are and the log's current head.
    Hello {
        account_id: AccountId,
        head: u64,
    },
    Event {
        event: Event,
    },
    /// Replay is done; what follows is live.
    Live {
        seq: u64,
    },
    /// `since` is older than the log keeps: reload from the REST API, then reconnect with `since=head`.
    Resync {
        oldest: u64,
        head: u64,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewAccount {
    pub email: String,
    pub username: String,
    pub name: String,
    pub role: Role,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccountWithToken {
    pub account: Account,
    pub token: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetAvailability {
    pub availability: Availability,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetChatMode {
    pub chat_mode: ChatMode,
}

/// Create or replace a rule. Members are emails or usernames of existing accounts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleInput {
    pub name: String,
    pub sources: Vec<ConnectionId>,
    pub members: Vec<String>,
    pub method: Method,
    pub old_conversations: OldConversations,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplyInput {
    /// The client's idempotency key: the same key twice sends once.
    pub client_key: String,
    #[serde(default)]
    pub text: String,
    #[serde(default)]
    pub quote_msg_id: Option<String>,
    #[serde(default)]
    pub attachment: Option<OutboundAttachment>,
}

/// What the console's customer panel shows (`GET /conversations/{id}/customer`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CustomerPanel {
    pub customer: crate::model::Customer,
    /// What the customer shared with `user_submit_info` (name, phone, address, …), newest first.
    pub shared_info: Vec<SharedInfo>,
    /// The staff's private notes in the customer's conversations, newest first.
    pub notes: Vec<crate::model::Message>,
    /// The customer's conversations (the same Zalo user id) the caller may see, latest first.
    pub conversations: Vec<crate::model::Conversation>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedInfo {
    pub at: crate::model::Ms,
    /// The fields as Zalo sent them (`name`, `phone`, `address`, `city`, …), by name.
    pub fields: Vec<(String, String)>,
}

/// The labels to choose from for a conversation's customer (`GET /conversations/{id}/labels`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelChoices {
    /// On the customer now.
    pub attached: Vec<String>,
    /// Every label of the page, by name.
    pub page: Vec<String>,
}

/// A label to put on a customer (`POST /conversations/{id}/labels`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelInput {
    pub name: String,
}

/// A quick reply to create or replace (`POST /quick-replies`, `PUT /quick-replies/{id}`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuickReplyInput {
    pub shortcut: String,
    pub title: String,
    pub text: String,
    /// For everyone (admins only); else the caller's own.
    #[serde(default)]
    pub shared: bool,
    /// An image or file to send with it: a new one, or `null` for none; left out, a replaced
    /// quick reply keeps its file.
    #[serde(default, deserialize_with = "present")]
    pub attachment: Option<Option<OutboundAttachment>>,
}

/// A field that is there (even as `null`) as `Some`; `#[serde(default)]` makes an absent one
/// `None`.
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// A private note in a thread (`POST /conversations/{id}/notes`); `@username` mentions a
/// colleague who may see the conversation.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoteInput {
    /// The client's idempotency key: the same key twice adds one note.
    pub client_key: String,
    pub text: String,
}

/// A file to send, inlined as base64 (the hub uploads it to Zalo).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundAttachment {
    pub kind: OutboundKind,
    pub name: String,
    pub content_base64: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboundKind {
    Image,
    Gif,
    File,
}

impl OutboundKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OutboundKind::Image => "image",
            OutboundKind::Gif => "gif",
            OutboundKind::File => "file",
        }
    }

    pub fn parse(s: &str) -> Option<OutboundKind> {
        [OutboundKind::Image, OutboundKind::Gif, OutboundKind::File]
            .into_iter()
            .find(|k| k.as_str() == s)
    }

    /// The largest attachment of this kind Zalo takes.
    pub fn upload_limit(self) -> usize {
        match self {
            OutboundKind::Image => crate::zalo::IMAGE_UPLOAD_LIMIT,
            OutboundKind::Gif | OutboundKind::File => crate::zalo::MEDIA_UPLOAD_LIMIT,
        }
    }
}

/// Someone a conversation may be handed to (`GET /conversations/{id}/transfer-targets`): what an
/// agent needs to choose, without the colleague's email.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferTarget {
    pub id: AccountId,
    pub username: String,
    pub name: String,
    pub role: Role,
    pub availability: Availability,
}

impl From<&Account> for TransferTarget {
    fn from(a: &Account) -> Self {
        TransferTarget {
            id: a.id.clone(),
            username: a.username.clone(),
            name: a.name.clone(),
            role: a.role,
            availability: a.availability,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferInput {
    /// Email or username of the new assignee.
    pub to: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum View {
    Mine,
    Unclaimed,
    All,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// One answer of `GET /search`: a conversation found by its customer (`message` is None) or by
/// one of its messages.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SearchHit {
    pub conversation: crate::model::Conversation,
    pub message: Option<crate::model::Message>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Counts {
    pub mine: usize,
    pub unclaimed: usize,
    pub all: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuthorizeResponse {
    pub authorization_url: String,
    pub state: String,
    pub expires_at: Ms,
}

/// The error body of every failed API call.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub winner: Option<Box<Account>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<Box<RuleRef>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RuleRef {
    pub id: RuleId,
    pub name: String,
}
