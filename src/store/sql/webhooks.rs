//! Webhooks as Zalo signed them, stored once by their key whichever hub received them.

use super::write::WriteTx;
use super::{Db, StoreError};
use crate::model::Ms;
use sqlx::QueryBuilder;
use std::collections::BTreeMap;

/// A webhook to store: its dedupe key (e.g. OA + Zalo's msg_id), when it came, its body.
#[derive(Debug, Clone)]
pub struct IncomingWebhook {
    pub key: String,
    pub received_at: Ms,
    pub body: String,
}

impl Db {
    /// Stores a batch in a transaction of its own (see `WriteTx::store_webhooks`).
    pub async fn store_webhooks(
        &self,
        batch: Vec<IncomingWebhook>,
    ) -> Result<BTreeMap<String, i64>, StoreError> {
        let mut tx = self.begin_write().await?;
        let fresh = tx.store_webhooks(batch).await?;
        tx.commit().await?;
        Ok(fresh)
    }
}

impl WriteTx {
    /// Stores a batch and returns the keys that were new with their numbers; a key stored
    /// before (a retry from Zalo, the same delivery through another hub) is skipped.
    pub async fn store_webhooks(
        &mut self,
        mut batch: Vec<IncomingWebhook>,
    ) -> Result<BTreeMap<String, i64>, StoreError> {
        batch.sort_by(|a, b| a.key.cmp(&b.key));
        batch.dedup_by(|a, b| a.key == b.key);
        let mut fresh = BTreeMap::new();
        if batch.is_empty() {
            return Ok(fresh);
        }
        let count = batch.len() as i64;
        crate::on_tx!(self, tx => {
            let last: i64 = sqlx::query_scalar(
                "UPDATE counters SET value = value + $1 WHERE name = 'webhook' RETURNING value",
            )
            .bind(count)
            .fetch_one(&mut *tx)
            .await?;
            let first = last - count + 1;
            for (chunk_start, chunk) in batch.chunks(super::events::ROWS_PER_INSERT).enumerate() {
                let base = first + (chunk_start * super::events::ROWS_PER_INSERT) as i64;
                let mut q = QueryBuilder::new("INSERT INTO webhooks (n, dedupe_key, received_at, body) ");
                q.push_values(chunk.iter().enumerate(), |mut row, (i, w)| {
                    row.push_bind(base + i as i64)
                        .push_bind(w.key.as_str())
                        .push_bind(w.received_at)
                        .push_bind(w.body.as_str());
                });
                q.push(" ON CONFLICT (dedupe_key) DO NOTHING RETURNING dedupe_key, n");
                let inserted: Vec<(String, i64)> = q.build_query_as().fetch_all(&mut *tx).await?;
                fresh.extend(inserted);
            }
        });
        Ok(fresh)
    }
}
