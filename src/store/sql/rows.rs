//! Rows ↔ domain types. Enums are stored as their API names (`"round_robin"`), so the database
//! reads like the API and a CHECK constraint guards each column.

use crate::model::*;
use anyhow::{Context, Result};
use serde::{de::DeserializeOwned, Serialize};

/// An enum's API name: `Role::Admin` → `"admin"`.
pub fn name_of<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        other => panic!("not a unit enum: {other:?}"),
    }
}

/// The enum named `name` in a column.
pub fn from_name<T: DeserializeOwned>(name: &str) -> Result<T> {
    serde_json::from_value(serde_json::Value::String(name.to_string()))
        .with_context(|| format!("unexpected value {name:?} in the database"))
}

#[derive(Debug, sqlx::FromRow)]
pub struct AccountRow {
    pub id: String,
    pub email: String,
    pub username: String,
    pub name: String,
    pub role: String,
    pub availability: String,
    pub created_at: i64,
}

impl AccountRow {
    pub fn into_account(self) -> Result<Account> {
        Ok(Account {
            id: self.id,
            email: self.email,
            username: self.username,
            name: self.name,
            role: from_name(&self.role)?,
            availability: from_name(&self.availability)?,
            created_at: self.created_at,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub struct ConversationRow {
    pub id: String,
    pub connection_id: String,
    pub customer_id: String,
    pub customer_name: String,
    pub customer_avatar: String,
    pub customer_fetched_at: i64,
    pub assignee: Option<String>,
    pub state: String,
    pub status: String,
    pub origin: String,
    pub last_interaction_at: Option<i64>,
    pub last_activity_at: i64,
    pub waiting_since: Option<i64>,
    pub preview: String,
    pub created_at: i64,
    /// A JSON array of names.
    pub customer_labels: String,
    pub customer_follows: Option<i32>,
}

pub const CONVERSATION_COLUMNS: &str = "id, connection_id, customer_id, customer_name, \
    customer_avatar, customer_fetched_at, assignee, state, status, origin, last_interaction_at, \
    last_activity_at, waiting_since, preview, created_at, customer_labels, customer_follows";

#[derive(Debug, sqlx::FromRow)]
pub struct AssignmentRow {
    pub at: i64,
    pub to_account: Option<String>,
    pub by_account: Option<String>,
    pub reason: String,
}

/// An assignment row with its conversation, as read: (conversation, at, to, by, reason).
pub type HistoryRow = (String, i64, Option<String>, Option<String>, String);

/// Assignment rows (in order) grouped by conversation.
pub fn histories(rows: Vec<HistoryRow>) -> std::collections::BTreeMap<String, Vec<AssignmentRow>> {
    let mut out: std::collections::BTreeMap<String, Vec<AssignmentRow>> = Default::default();
    for (conv, at, to_account, by_account, reason) in rows {
        out.entry(conv).or_default().push(AssignmentRow {
            at,
            to_account,
            by_account,
            reason,
        });
    }
    out
}

impl ConversationRow {
    /// The conversation with its unread counts and assignment history (read separately).
    pub fn into_conversation(
        self,
        unread: Vec<(String, i32)>,
        assignments: Vec<AssignmentRow>,
    ) -> Result<Conversation> {
        Ok(Conversation {
            id: self.id,
            connection_id: self.connection_id,
            customer: Customer {
                user_id: self.customer_id,
                display_name: self.customer_name,
                avatar: self.customer_avatar,
                fetched_at: self.customer_fetched_at,
                labels: serde_json::from_str(&self.customer_labels)?,
                follows: self.customer_follows.map(|f| f != 0),
            },
            assignee: self.assignee,
            state: from_name(&self.state)?,
            status: from_name(&self.status)?,
            origin: from_name(&self.origin)?,
            last_interaction_at: self.last_interaction_at,
            last_activity_at: self.last_activity_at,
            waiting_since: self.waiting_since,
            unread: unread
                .into_iter()
                .map(|(account, n)| (account, n.max(0) as u32))
                .collect(),
            preview: self.preview,
            assignments: assignments
                .into_iter()
                .map(|a| {
                    Ok(Assignment {
                        at: a.at,
                        to: a.to_account,
                        by: a.by_account,
                        reason: from_name(&a.reason)?,
                    })
                })
                .collect::<Result<_>>()?,
            created_at: self.created_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_are_stored_by_their_api_names() {
        assert_eq!(name_of(&Role::Admin), "admin");
        assert_eq!(name_of(&ConvState::Unattended), "unattended");
        assert_eq!(name_of(&AssignReason::MemberRemoved), "member_removed");
        assert_eq!(
            from_name::<Method>("self_claim").unwrap(),
            Method::SelfClaim
        );
        assert!(from_name::<Method>("coin_flip").is_err());
    }
}
