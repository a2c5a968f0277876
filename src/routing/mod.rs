//! The distribution engine: pure and deterministic. The hub feeds it the page, the rule and who is
//! available, and applies the decisions it returns; nothing here does I/O or reads a clock.

use crate::model::{
    AccountId, AssignReason, ChatMode, ConvState, ConvStatus, Conversation, ConversationId, Method,
    Ms, OldConversations, Rule, REPLY_WINDOW_MS,
};

/// What the engine needs to know about the page a conversation belongs to.
#[derive(Debug, Clone, Copy)]
pub struct Page<'a> {
    pub chat_mode: ChatMode,
    pub connector: &'a str,
    /// The rule the page belongs to (shared pages only).
    pub rule: Option<&'a Rule>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Assign {
        to: AccountId,
        reason: AssignReason,
    },
    /// Waits for a member: self-claim, or round robin with nobody available (the rule's queue).
    Unclaimed,
}

/// A routing decision plus the rule's new round-robin cursor, when it moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub route: Route,
    pub cursor: Option<AccountId>,
}

/// The next available member after `cursor`, wrapping around; `None` when nobody is available.
/// A cursor that is no longer a member restarts the turn at the first member.
pub fn next_round_robin(
    members: &[AccountId],
    cursor: Option<&str>,
    is_available: &dyn Fn(&str) -> bool,
) -> Option<AccountId> {
    if members.is_empty() {
        return None;
    }
    let start = cursor
        .and_then(|c| members.iter().position(|m| m == c))
        .map(|i| i + 1)
        .unwrap_or(0);
    (0..members.len())
        .map(|step| &members[(start + step) % members.len()])
        .find(|m| is_available(m))
        .cloned()
}

/// Where a new conversation goes (also used when its assignee is no longer eligible).
pub fn route_new(page: Page<'_>, is_available: &dyn Fn(&str) -> bool) -> Decision {
    match (page.chat_mode, page.rule) {
        (ChatMode::OnlyMe, _) => Decision {
            route: Route::Assign {
                to: page.connector.to_string(),
                reason: AssignReason::OnlyMe,
            },
            cursor: None,
        },
        (ChatMode::Shared, Some(rule)) if rule.method == Method::RoundRobin => {
            match next_round_robin(&rule.members, rule.cursor.as_deref(), is_available) {
                Some(to) => Decision {
                    cursor: Some(to.clone()),
                    route: Route::Assign {
                        to,
                        reason: AssignReason::Rule,
                    },
                },
                None => Decision {
                    route: Route::Unclaimed,
                    cursor: None,
                },
            }
        }
        // Self-claim, or a shared page that is in no rule yet: it waits, visible to whoever may see it.
        (ChatMode::Shared, _) => Decision {
            route: Route::Unclaimed,
            cursor: None,
        },
    }
}

/// May `account` keep (or take) conversations of this page?
pub fn is_eligible(page: Page<'_>, account: &str) -> bool {
    match page.chat_mode {
        ChatMode::OnlyMe => page.connector == account,
        ChatMode::Shared => page
            .rule
            .is_some_and(|r| r.members.iter().any(|m| m == account)),
    }
}

/// Whether a new message keeps the conversation with its current assignee: DESIGN §3's rule
/// (a member of the page's rule, or the connector of an only-me page), and admins, who keep what
/// they claimed or were handed.
pub fn keeps_assignee(
    page: Page<'_>,
    conv: &Conversation,
    is_admin: &dyn Fn(&str) -> bool,
) -> bool {
    conv.state == ConvState::Assigned
        && conv
            .assignee
            .as_deref()
            .is_some_and(|a| is_eligible(page, a) || is_admin(a))
}

/// Assigns a round-robin rule's queue (unclaimed conversations, given oldest first) to the members
/// who are available now, in turn. Returns the assignments and the rule's new cursor.
pub fn drain_queue(
    rule: &Rule,
    queue_oldest_first: &[ConversationId],
    is_available: &dyn Fn(&str) -> bool,
) -> (Vec<(ConversationId, AccountId)>, Option<AccountId>) {
    let mut cursor = rule.cursor.clone();
    let mut out = Vec::new();
    if rule.method != Method::RoundRobin {
        return (out, cursor);
    }
    for conv in queue_oldest_first {
        match next_round_robin(&rule.members, cursor.as_deref(), is_available) {
            Some(to) => {
                cursor = Some(to.clone());
                out.push((conv.clone(), to));
            }
            None => break,
        }
    }
    (out, cursor)
}

/// Does the rule's old-conversation handling distribute this unattended conversation?
pub fn old_conversation_selected(option: OldConversations, conv: &Conversation, now: Ms) -> bool {
    if conv.state != ConvState::Unattended || conv.status == ConvStatus::Done {
        return false;
    }
    match option {
        OldConversations::None => false,
        OldConversations::All => true,
        OldConversations::Available => conv
            .last_interaction_at
            .is_some_and(|at| now - at < REPLY_WINDOW_MS),
    }
}

pub mod visibility;

#[cfg(test)]
mod tests;
