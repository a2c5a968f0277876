//! Pages (OA connections) and their OAuth tokens.

use super::rows::name_of;
use super::{Db, StoreError};
use crate::model::Connection;

impl Db {
    /// Stores a newly connected page with its tokens (its id already chosen).
    pub async fn insert_connection(&self, c: &Connection) -> Result<(), StoreError> {
        crate::in_transaction!(self, tx => {
            sqlx::query(
                "INSERT INTO connections (id, oa_id, name, avatar, category, connector, \
                 connected_at, last_connected_at, chat_mode, status, status_reason, \
                 last_event_at, last_error) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            )
            .bind(&c.id)
            .bind(&c.oa_id)
            .bind(&c.name)
            .bind(&c.avatar)
            .bind(&c.category)
            .bind(&c.connector)
            .bind(c.connected_at)
            .bind(c.last_connected_at)
            .bind(name_of(&c.chat_mode))
            .bind(name_of(&c.status))
            .bind(&c.status_reason)
            .bind(c.last_event_at)
            .bind(&c.last_error)
            .execute(&mut *tx)
            .await
            .map_err(|e| StoreError::conflict_if_unique(e, "connection_exists"))?;
            sqlx::query(
                "INSERT INTO connection_tokens (connection_id, access_token, refresh_token, \
                 access_expires_at, updated_at) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&c.id)
            .bind(&c.tokens.access_token)
            .bind(&c.tokens.refresh_token)
            .bind(c.tokens.access_expires_at)
            .bind(c.connected_at)
            .execute(&mut *tx)
            .await?;
        });
        Ok(())
    }
}
