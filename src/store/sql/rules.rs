//! Rules as rows: members and source pages are tables of their own (see `write::save_rule`).

use super::rows::from_name;
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
