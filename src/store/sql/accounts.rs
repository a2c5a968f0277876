//! Accounts and their bearer tokens (kept as SHA-256 hashes).

use super::rows::AccountRow;
use super::{Db, StoreError};
use crate::model::Account;

impl Db {
    pub async fn account_by_token(&self, token_hash: &str) -> Result<Option<Account>, StoreError> {
        let sql = "SELECT a.id, a.email, a.username, a.name, a.role, a.availability, a.created_at \
                   FROM accounts a JOIN account_tokens t ON t.account_id = a.id \
                   WHERE t.token_hash = $1";
        let row: Option<AccountRow> = crate::on_engine!(readers self, conn => {
            sqlx::query_as(sql).bind(token_hash).fetch_optional(conn).await?
        });
        Ok(row.map(AccountRow::into_account).transpose()?)
    }
}
