//! Quick replies as an account may use them: the shared ones and their own.

use super::write::{quick_reply_of, QuickReplyRow, QUICK_REPLY_COLUMNS};
use super::Db;
use crate::model::QuickReply;
use anyhow::Result;

impl Db {
    /// The shared quick replies and `account`'s own, by shortcut.
    pub async fn quick_replies_for(&self, account: &str) -> Result<Vec<QuickReply>> {
        let sql = format!(
            "SELECT {QUICK_REPLY_COLUMNS} FROM quick_replies \
             WHERE owner IS NULL OR owner = $1 ORDER BY shortcut, id"
        );
        let rows: Vec<QuickReplyRow> = crate::on_engine!(readers self, pool => {
            sqlx::query_as(&sql).bind(account).fetch_all(pool).await?
        });
        Ok(rows.into_iter().map(quick_reply_of).collect())
    }

    /// A quick reply's file (kind, name, bytes), if it has one and `account` may use it (a
    /// shared one, or their own).
    pub async fn quick_reply_file(
        &self,
        id: &str,
        account: &str,
    ) -> Result<Option<(String, String, Vec<u8>)>> {
        let sql = "SELECT q.file_kind, q.file_name, f.content FROM quick_replies q \
                   JOIN quick_reply_files f ON f.quick_reply_id = q.id \
                   WHERE q.id = $1 AND (q.owner IS NULL OR q.owner = $2)";
        Ok(crate::on_engine!(readers self, pool => {
            sqlx::query_as(sql).bind(id).bind(account).fetch_optional(pool).await?
        }))
    }
}
