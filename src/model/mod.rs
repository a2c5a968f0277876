//! Domain types shared by the hub, the console and the simulator.
//! Times are unix milliseconds (`Ms`), ids are strings end to end: Zalo ids exceed 2^53.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub mod text;

/// Unix time in milliseconds.
pub type Ms = i64;
pub type AccountId = String;
pub type ConnectionId = String;
pub type RuleId = String;
pub type ConversationId = String;
pub type MessageId = String;

pub const HOUR_MS: Ms = 3_600_000;
pub const DAY_MS: Ms = 24 * HOUR_MS;
/// Zalo's customer-service window: replies are allowed within 7 days of the customer's last interaction.
pub const REPLY_WINDOW_MS: Ms = 7 * DAY_MS;
/// Within 48 hours of the last interaction replies are free; after that they are billed.
pub const FREE_WINDOW_MS: Ms = 48 * HOUR_MS;
/// Zalo's limit for a customer-service text message, counted after NFC normalisation.
pub const MAX_TEXT_CHARS: usize = 2000;

pub fn now_ms() -> Ms {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as Ms)
        .unwrap_or(0)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Agent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Availability {
    Available,
    Away,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub id: AccountId,
    pub email: String,
    pub username: String,
    pub name: String,
    pub role: Role,
    pub availability: Availability,
    pub created_at: Ms,
}

impl Account {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
    /// Rules and commands name members by email or username, case-insensitively.
    pub fn matches_handle(&self, handle: &str) -> bool {
        let h = handle.trim();
        self.email.eq_ignore_ascii_case(h) || self.username.eq_ignore_ascii_case(h)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum ChatMode {
    /// "Chỉ mình tôi": every conversation goes to the connector.
    OnlyMe,
    /// "Chia sẻ hội thoại": conversations are distributed by the page's rule.
    Shared,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionStatus {
    Connected,
    NeedsReauth,
    Disconnected,
}

/// OAuth tokens of one OA grant. Never leaves the hub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    pub access_expires_at: Ms,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connection {
    pub id: ConnectionId,
    pub oa_id: String,
    pub name: String,
    #[serde(default)]
    pub avatar: String,
    #[serde(default)]
    pub category: String,
    pub connector: AccountId,
    pub connected_at: Ms,
    pub last_connected_at: Ms,
    pub chat_mode: ChatMode,
    pub rule_id: Option<RuleId>,
    pub status: ConnectionStatus,
    pub status_reason: Option<String>,
    #[serde(default)]
    pub tokens: TokenPair,
    pub last_event_at: Option<Ms>,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// "Chia xoay vòng"
    RoundRobin,
    /// "Tự nhận hội thoại"
    SelfClaim,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum OldConversations {
    /// "Không chia"
    None,
    /// "Chia hội thoại khả dụng": only those still inside the 7-day reply window.
    Available,
    /// "Chia tất cả hội thoại"
    All,
}

/// A quick reply ("Tin nhắn mẫu"): text an agent inserts by its shortcut, with variables
/// (`QUICK_REPLY_VARIABLES`) filled for the conversation. Shared by an admin (`owner` None) or
/// an agent's own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuickReply {
    pub id: String,
    pub owner: Option<AccountId>,
    pub shortcut: String,
    pub title: String,
    pub text: String,
    /// An image or file sent with the text: its kind (`image`, `gif`, `file`), name and size;
    /// the bytes are fetched apart (`GET /quick-replies/{id}/attachment`).
    #[serde(default)]
    pub attachment: Option<Attachment>,
    pub updated_at: Ms,
}

/// The variables a quick reply may use: the customer's name, the agent's, the page's.
pub const QUICK_REPLY_VARIABLES: [&str; 3] = ["{ten_khach}", "{ten_nhan_vien}", "{ten_trang}"];

impl QuickReply {
    /// The text with its variables filled.
    pub fn filled(&self, customer: &str, agent: &str, page: &str) -> String {
        self.text
            .replace("{ten_khach}", customer)
            .replace("{ten_nhan_vien}", agent)
            .replace("{ten_trang}", page)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub id: RuleId,
    pub name: String,
    pub sources: Vec<ConnectionId>,
    pub members: Vec<AccountId>,
    pub method: Method,
    pub old_conversations: OldConversations,
    /// Round-robin cursor: the member who received the last conversation.
    pub cursor: Option<AccountId>,
    pub created_at: Ms,
    pub updated_at: Ms,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum ConvState {
    /// Waiting for a member ("Chưa ai nhận"): self-claim, or round robin with nobody available.
    Unclaimed,
    Assigned,
    /// Nobody takes care of it: synced history, or its agent left the rule.
    Unattended,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum ConvStatus {
    Open,
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    Live,
    History,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum AssignReason {
    Rule,
    OnlyMe,
    Claim,
    Reply,
    Transfer,
    Release,
    MemberRemoved,
    OldConversations,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub at: Ms,
    pub to: Option<AccountId>,
    pub by: Option<AccountId>,
    pub reason: AssignReason,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Customer {
    pub user_id: String,
    pub display_name: String,
    #[serde(default)]
    pub avatar: String,
    /// When the profile was last read from Zalo's user/detail (0 = never).
    #[serde(default)]
    pub fetched_at: Ms,
    /// Their labels on this page ("Nhãn": the page's Zalo tags on them), sorted.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Whether they follow the page ("người quan tâm"), as Zalo last said (`user/detail`,
    /// `follow` / `unfollow`); `None` until it has.
    #[serde(default)]
    pub follows: Option<bool>,
}

impl Customer {
    /// Whether their profile is worth reading (again) from Zalo's `user/detail`: never read, or
    /// read more than a day ago.
    pub fn profile_stale(&self, now: Ms) -> bool {
        self.fetched_at < now - DAY_MS
    }

    /// The name the customer is shown by: their Zalo name, else their Zalo id.
    pub fn name_or_id(&self) -> &str {
        if self.display_name.is_empty() {
            &self.user_id
        } else {
            &self.display_name
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversation {
    pub id: ConversationId,
    pub connection_id: ConnectionId,
    pub customer: Customer,
    pub assignee: Option<AccountId>,
    pub state: ConvState,
    pub status: ConvStatus,
    pub origin: Origin,
    /// The customer's last interaction: drives Zalo's reply window.
    pub last_interaction_at: Option<Ms>,
    pub last_activity_at: Ms,
    /// When it started waiting for a member (unclaimed queue order).
    pub waiting_since: Option<Ms>,
    pub unread: BTreeMap<AccountId, u32>,
    pub preview: String,
    pub assignments: Vec<Assignment>,
    pub created_at: Ms,
}

/// The customer's reply window as Zalo enforces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "window")]
pub enum ReplyWindow {
    /// Free replies for `left_ms` more.
    Free {
        left_ms: Ms,
    },
    /// Billed replies for `left_ms` more.
    Billed {
        left_ms: Ms,
    },
    Closed,
}

impl Conversation {
    /// Where a routing decision puts it: with `to`, or back in the queue (recorded only when it
    /// was not waiting there already). The rule's cursor is the caller's to move.
    pub fn land(
        &mut self,
        to: Option<AccountId>,
        by: Option<AccountId>,
        reason: AssignReason,
        now: Ms,
    ) {
        match to {
            Some(to) => self.assign(Some(to), ConvState::Assigned, by, reason, now),
            None if self.state != ConvState::Unclaimed || self.assignee.is_some() => {
                self.assign(None, ConvState::Unclaimed, by, reason, now)
            }
            None => {}
        }
    }

    /// Records an assignment: who holds it now (`to`, in `state`), by whom and why. Entering the
    /// queue starts its wait; leaving it ends the wait.
    pub fn assign(
        &mut self,
        to: Option<AccountId>,
        state: ConvState,
        by: Option<AccountId>,
        reason: AssignReason,
        now: Ms,
    ) {
        if state == ConvState::Unclaimed && self.state != ConvState::Unclaimed {
            self.waiting_since = Some(now);
        } else if state != ConvState::Unclaimed {
            self.waiting_since = None;
        }
        self.assignee = to.clone();
        self.state = state;
        self.assignments.push(Assignment {
            at: now,
            to,
            by,
            reason,
        });
    }

    /// Since when it has waited for a member: the queue's order (longest waiting first).
    pub fn waiting_at(&self) -> Ms {
        self.waiting_since.unwrap_or(self.created_at)
    }

    pub fn reply_window(&self, now: Ms) -> ReplyWindow {
        reply_window(self.last_interaction_at, now)
    }
    pub fn unread_for(&self, account: &str) -> u32 {
        self.unread.get(account).copied().unwrap_or(0)
    }
}

pub fn reply_window(last_interaction_at: Option<Ms>, now: Ms) -> ReplyWindow {
    let Some(at) = last_interaction_at else {
        return ReplyWindow::Closed;
    };
    let age = now - at;
    if age < FREE_WINDOW_MS {
        ReplyWindow::Free {
            left_ms: FREE_WINDOW_MS - age,
        }
    } else if age < REPLY_WINDOW_MS {
        ReplyWindow::Billed {
            left_ms: REPLY_WINDOW_MS - age,
        }
    } else {
        ReplyWindow::Closed
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Inbound,
    Outbound,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    Text,
    Image,
    Gif,
    Sticker,
    File,
    Audio,
    Video,
    Link,
    Location,
    BusinessCard,
    Other,
    /// A private note of the staff in a thread ("Ghi chú nội bộ"): never sent to Zalo.
    Note,
}

impl MessageKind {
    /// Maps Zalo's attachment/event type names ("image", "business_card", ...).
    pub fn from_zalo(name: &str) -> MessageKind {
        match name {
            "text" => MessageKind::Text,
            "image" | "photo" => MessageKind::Image,
            "gif" => MessageKind::Gif,
            "sticker" => MessageKind::Sticker,
            "file" => MessageKind::File,
            "audio" | "voice" => MessageKind::Audio,
            "video" => MessageKind::Video,
            "link" => MessageKind::Link,
            "location" => MessageKind::Location,
            "business_card" => MessageKind::BusinessCard,
            _ => MessageKind::Other,
        }
    }
    pub fn as_str(&self) -> &'static str {
        match self {
            MessageKind::Text => "text",
            MessageKind::Image => "image",
            MessageKind::Gif => "gif",
            MessageKind::Sticker => "sticker",
            MessageKind::File => "file",
            MessageKind::Audio => "audio",
            MessageKind::Video => "video",
            MessageKind::Link => "link",
            MessageKind::Location => "location",
            MessageKind::BusinessCard => "business_card",
            MessageKind::Other => "other",
            MessageKind::Note => "note",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Attachment {
    pub kind: String,
    #[serde(default)]
    pub url: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub size: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    Pending,
    /// The send's outcome is ambiguous (a timeout after Zalo may have accepted it, a 2xx without
    /// Zalo's envelope): never resent blindly; Zalo's `oa_send_*` echo makes it `sent`, else it
    /// becomes `failed` after the echo window and the agent may send it again.
    Unknown,
    Sent,
    Delivered,
    Seen,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub id: MessageId,
    pub conversation_id: ConversationId,
    pub direction: Direction,
    /// Customer user id (inbound), account id (outbound from the console), or
    /// `oa_manager` for staff replies typed in Zalo's own OA manager.
    pub sender: String,
    pub sender_name: String,
    pub kind: MessageKind,
    pub text: String,
    pub attachments: Vec<Attachment>,
    pub zalo_msg_id: Option<String>,
    pub quote_msg_id: Option<String>,
    pub client_key: Option<String>,
    pub delivery: Option<Delivery>,
    pub error_code: Option<i64>,
    pub error_reason: Option<String>,
    pub created_at: Ms,
    /// The original event for kinds we do not understand, kept so nothing is lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<serde_json::Value>,
}

pub const OA_MANAGER_SENDER: &str = "oa_manager";

/// The hub numbers messages `m<n>` in arrival order; `None` for anything else.
pub fn message_seq(id: &str) -> Option<u64> {
    id.strip_prefix('m')?.parse().ok()
}

impl Message {
    /// Where the message sits in its thread: the customer's time order (Zalo's history arrives
    /// newest first), then arrival order for equal times.
    pub fn thread_order(&self) -> (Ms, u64) {
        (self.created_at, message_seq(&self.id).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_window_boundaries() {
        let now = 10 * DAY_MS;
        assert_eq!(reply_window(None, now), ReplyWindow::Closed);
        assert_eq!(
            reply_window(Some(now - HOUR_MS), now),
            ReplyWindow::Free {
                left_ms: 47 * HOUR_MS
            }
        );
        assert_eq!(
            reply_window(Some(now - 3 * DAY_MS), now),
            ReplyWindow::Billed {
                left_ms: 4 * DAY_MS
            }
        );
        assert_eq!(
            reply_window(Some(now - 7 * DAY_MS), now),
            ReplyWindow::Closed
        );
    }

    #[test]
    fn handles_match_email_or_username_case_insensitively() {
        let a = Account {
            id: "a1".into(),
            email: "huong@example.vn".into(),
            username: "HuongNT256".into(),
            name: "Hương".into(),
            role: Role::Agent,
            availability: Availability::Available,
            created_at: 0,
        };
        assert!(a.matches_handle("huongnt256"));
        assert!(a.matches_handle(" HUONG@example.vn "));
        assert!(!a.matches_handle("QueCT3"));
    }
}
