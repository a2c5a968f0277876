//! Accounts and their bearer tokens (kept as SHA-256 hashes).

use super::rows::{name_of, AccountRow};
use super::{Db, StoreError};
use crate::model::Account;

const ACCOUNT_COLUMNS: &str = "id, email, username, name, role, availability, created_at";

impl Db {
    /// Creates an account (its id numbered here) with its token's hash; 409 material when the
    /// email or username is taken.
    pub async fn create_account(
        &self,
        mut account: Account,
        token_hash: &str,
    ) -> Result<Account, StoreError> {
        crate::in_transaction!(self, tx => {
            let n = crate::next_number!(tx, "account");
            account.id = format!("a{n}");
            sqlx::query(
                "INSERT INTO accounts (id, email, username, email_key, username_key, name, role, \
                 availability, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(&account.id)
            .bind(&account.email)
            .bind(&account.username)
            .bind(account.email.to_lowercase())
            .bind(account.username.to_lowercase())
            .bind(&account.name)
            .bind(name_of(&account.role))
            .bind(name_of(&account.availability))
            .bind(account.created_at)
            .execute(&mut *tx)
            .await
            .map_err(|e| StoreError::conflict_if_unique(e, "account_exists"))?;
            sqlx::query(
                "INSERT INTO account_tokens (account_id, token_hash, created_at) VALUES ($1, $2, $3)",
            )
            .bind(&account.id)
            .bind(token_hash)
            .bind(account.created_at)
            .execute(&mut *tx)
            .await?;
        });
        Ok(account)
    }

    pub async fn account_by_token(&self, token_hash: &str) -> Result<Option<Account>, StoreError> {
        let sql = "SELECT a.id, a.email, a.username, a.name, a.role, a.availability, a.created_at \
                   FROM accounts a JOIN account_tokens t ON t.account_id = a.id \
                   WHERE t.token_hash = $1";
        let row: Option<AccountRow> = crate::on_engine!(readers self, conn => {
            sqlx::query_as(sql).bind(token_hash).fetch_optional(conn).await?
        });
        Ok(row.map(AccountRow::into_account).transpose()?)
    }

    pub async fn accounts(&self) -> Result<Vec<Account>, StoreError> {
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY created_at, id");
        let rows: Vec<AccountRow> = crate::on_engine!(readers self, conn => {
            sqlx::query_as(&sql).fetch_all(conn).await?
        });
        Ok(rows
            .into_iter()
            .map(AccountRow::into_account)
            .collect::<anyhow::Result<_>>()?)
    }
}
