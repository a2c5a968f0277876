//! Rules: members, source pages, and the round-robin cursor read and moved under the rule row's
//! lock in the transaction that routes, so the turn stays fair across hubs.

use super::rows::{from_name, name_of};
use super::{Db, StoreError};
use crate::model::Rule;

#[derive(Debug, sqlx::FromRow)]
pub struct RuleRow {
    pub id: String,
    pub name: String,
    pub method: String,
    pub old_conversations: String,
    pub cursor: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl RuleRow {
    pub fn into_rule(self, members: Vec<String>, sources: Vec<String>) -> anyhow::Result<Rule> {
        Ok(Rule {
            id: self.id,
            name: self.name,
            sources,
            members,
            method: from_name(&self.method)?,
            old_conversations: from_name(&self.old_conversations)?,
            cursor: self.cursor,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// The rule a page belongs to, its row locked until the transaction ends, with the members who
/// are available now: an UPDATE that changes nothing takes the row lock on PostgreSQL (SQLite's
/// single writer already excludes others) and reads the same on both engines, where
/// `SELECT … FOR UPDATE` is PostgreSQL's alone.
#[macro_export]
macro_rules! rule_of_page_locked {
    ($tx:expr, $connection_id:expr) => {{
        let row: Option<$crate::store::sql::rules::RuleRow> = sqlx::query_as(
            "UPDATE rules SET cursor = cursor \
             WHERE id = (SELECT rule_id FROM rule_sources WHERE connection_id = $1) \
             RETURNING id, name, method, old_conversations, cursor, created_at, updated_at",
        )
        .bind($connection_id)
        .fetch_optional(&mut *$tx)
        .await?;
        match row {
            None => None,
            Some(row) => {
                let members: Vec<(String, String)> = sqlx::query_as(
                    "SELECT m.account_id, a.availability FROM rule_members m \
                     JOIN accounts a ON a.id = m.account_id WHERE m.rule_id = $1 ORDER BY m.position",
                )
                .bind(&row.id)
                .fetch_all(&mut *$tx)
                .await?;
                let available: Vec<String> = members
                    .iter()
                    .filter(|(_, availability)| availability == "available")
                    .map(|(id, _)| id.clone())
                    .collect();
                let members = members.into_iter().map(|(id, _)| id).collect();
                let sources: Vec<String> = sqlx::query_scalar(
                    "SELECT connection_id FROM rule_sources WHERE rule_id = $1 ORDER BY position",
                )
                .bind(&row.id)
                .fetch_all(&mut *$tx)
                .await?;
                Some((row.into_rule(members, sources)?, available))
            }
        }
    }};
}

impl Db {
    /// Stores a new rule (numbered here) with its members and pages; a page already in another
    /// rule is a conflict.
    pub async fn create_rule(&self, mut rule: Rule) -> Result<Rule, StoreError> {
        crate::in_transaction!(self, tx => {
            let n = crate::next_number!(tx, "rule");
            rule.id = format!("r{n}");
            sqlx::query(
                "INSERT INTO rules (id, name, method, old_conversations, cursor, created_at, \
                 updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&rule.id)
            .bind(&rule.name)
            .bind(name_of(&rule.method))
            .bind(name_of(&rule.old_conversations))
            .bind(&rule.cursor)
            .bind(rule.created_at)
            .bind(rule.updated_at)
            .execute(&mut *tx)
            .await?;
            for (position, member) in rule.members.iter().enumerate() {
                sqlx::query(
                    "INSERT INTO rule_members (rule_id, account_id, position) VALUES ($1, $2, $3)",
                )
                .bind(&rule.id)
                .bind(member)
                .bind(position as i32)
                .execute(&mut *tx)
                .await?;
            }
            for (position, source) in rule.sources.iter().enumerate() {
                sqlx::query(
                    "INSERT INTO rule_sources (rule_id, connection_id, position) VALUES ($1, $2, $3)",
                )
                .bind(&rule.id)
                .bind(source)
                .bind(position as i32)
                .execute(&mut *tx)
                .await
                .map_err(|e| StoreError::conflict_if_unique(e, "rule_conflict"))?;
            }
        });
        Ok(rule)
    }
}
