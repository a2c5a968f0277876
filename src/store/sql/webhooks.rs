//! Webhooks as Zalo signed them, stored once by their key whichever hub received them.

use super::{Db, StoreError};
use crate::model::Ms;
use sqlx::QueryBuilder;

/// A webhook to store: its dedupe key (e.g. OA + Zalo's msg_id), when it came, its body.
#[derive(Debug, Clone)]
pub struct IncomingWebhook {
    pub key: String,
    pub received_at: Ms,
    pub body: String,
}

impl Db {
    /// Stores a batch in one transaction and returns the keys that were new; a key stored before
    /// (a retry from Zalo, the same delivery through another hub) is skipped. Rows go in key order,
    /// so hubs storing overlapping batches take the keys' locks in one order.
    pub async fn store_webhooks(
        &self,
        mut batch: Vec<IncomingWebhook>,
    ) -> Result<Vec<String>, StoreError> {
        batch.sort_by(|a, b| a.key.cmp(&b.key));
        batch.dedup_by(|a, b| a.key == b.key);
        if batch.is_empty() {
            return Ok(vec![]);
        }
        let count = batch.len() as i64;
        Ok(crate::in_transaction!(self, tx => {
            let last: i64 = sqlx::query_scalar(
                "UPDATE counters SET value = value + $1 WHERE name = 'webhook' RETURNING value",
            )
            .bind(count)
            .fetch_one(&mut *tx)
            .await?;
            let first = last - count + 1;
            let mut fresh = Vec::with_capacity(batch.len());
            for (chunk_start, chunk) in batch.chunks(super::events::ROWS_PER_INSERT).enumerate() {
                let base = first + (chunk_start * super::events::ROWS_PER_INSERT) as i64;
                let mut q = QueryBuilder::new("INSERT INTO webhooks (n, dedupe_key, received_at, body) ");
                q.push_values(chunk.iter().enumerate(), |mut row, (i, w)| {
                    row.push_bind(base + i as i64)
                        .push_bind(w.key.as_str())
                        .push_bind(w.received_at)
                        .push_bind(w.body.as_str());
                });
                q.push(" ON CONFLICT (dedupe_key) DO NOTHING RETURNING dedupe_key");
                let inserted: Vec<String> = q.build_query_scalar().fetch_all(&mut *tx).await?;
                fresh.extend(inserted);
            }
            fresh
        }))
    }
}
