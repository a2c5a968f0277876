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

    /// The bytes of a quick reply's file, if it has one.
    pub async fn quick_reply_file(&self, id: &str) -> Result<Option<Vec<u8>>> {
        let sql = "SELECT content FROM quick_reply_files WHERE quick_reply_id = $1";
        Ok(crate::on_engine!(readers self, pool => {
            sqlx::query_scalar(sql).bind(id).fetch_optional(pool).await?
        }))
    }
}
