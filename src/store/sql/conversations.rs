//! The conversation lists, read straight from the database by the views' indexes: a reader never
//! waits for the hub's writer (SQLite WAL readers, PostgreSQL MVCC) and reads only one page, where
//! the cache would be scanned and sorted whole under the hub's lock.

use super::rows::{histories, AssignmentRow, ConversationRow, HistoryRow, CONVERSATION_COLUMNS};
use super::Db;
use crate::model::*;
use anyhow::Result;
use sqlx::QueryBuilder;
use std::collections::BTreeMap;

/// Which conversations a list holds, in its order.
pub enum List<'a> {
    /// Assigned to this account, most recent activity first (`conversations_mine`).
    AssignedTo(&'a str),
    /// Open and waiting to be claimed on these pages (`None`: every page), longest waiting
    /// first (`conversations_unclaimed`).
    Waiting(Option<&'a [String]>),
    /// Every conversation, most recent activity first (`conversations_all`).
    All,
}

/// A position in a list: the sort key and id of the last conversation of the previous page
/// (`-last_activity_at` for the lists by activity, `waiting_at` for the waiting one).
pub type After<'a> = Option<(i64, &'a str)>;

/// The `WHERE` condition of a list.
fn push_filter<'a, DB: sqlx::Database>(q: &mut QueryBuilder<'a, DB>, list: &List<'a>)
where
    &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    match list {
        List::AssignedTo(who) => {
            q.push("assignee = ").push_bind(*who);
        }
        List::All => {
            q.push("1 = 1");
        }
        List::Waiting(pages) => {
            q.push("state = 'unclaimed' AND status = 'open'");
            if let Some(pages) = pages {
                q.push(" AND connection_id IN (");
                let mut ids = q.separated(", ");
                for p in pages.iter() {
                    ids.push_bind(p.as_str());
                }
                q.push(")");
            }
        }
    }
}

impl Db {
    /// How many conversations `list` holds.
    pub async fn conversation_count(&self, list: List<'_>) -> Result<usize> {
        if matches!(list, List::Waiting(Some(pages)) if pages.is_empty()) {
            return Ok(0);
        }
        let n: i64 = crate::on_engine!(readers self, pool => {
            let mut q = QueryBuilder::new("SELECT COUNT(*) FROM conversations WHERE ");
            push_filter(&mut q, &list);
            q.build_query_scalar().fetch_one(pool).await?
        });
        Ok(n.max(0) as usize)
    }

    /// Up to `limit` conversations of `list` after `after`, with their unread counts and
    /// assignment history.
    pub async fn conversation_page(
        &self,
        list: List<'_>,
        after: After<'_>,
        limit: i64,
    ) -> Result<Vec<Conversation>> {
        if matches!(list, List::Waiting(Some(pages)) if pages.is_empty()) {
            return Ok(Vec::new());
        }
        let by_activity = !matches!(list, List::Waiting(_));
        // Built once per engine (the builder is typed by it); the same SQL on both.
        let rows: Vec<ConversationRow> = crate::on_engine!(readers self, pool => {
            let mut q = QueryBuilder::new(format!(
                "SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE "
            ));
            push_filter(&mut q, &list);
            if let Some((key, id)) = after {
                // By activity the key is -last_activity_at: later in the list is less recent.
                let (column, key, later) = if by_activity {
                    ("last_activity_at", -key, "<")
                } else {
                    ("waiting_at", key, ">")
                };
                q.push(format!(" AND ({column} {later} "))
                    .push_bind(key)
                    .push(format!(" OR ({column} = "))
                    .push_bind(key)
                    .push(" AND id > ")
                    .push_bind(id)
                    .push("))");
            }
            q.push(if by_activity {
                " ORDER BY last_activity_at DESC, id LIMIT "
            } else {
                " ORDER BY waiting_at, id LIMIT "
            })
            .push_bind(limit);
            q.build_query_as().fetch_all(pool).await?
        });
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        let mut unread = self.unread_of(&ids).await?;
        let mut history = self.assignments_of(&ids).await?;
        rows.into_iter()
            .map(|r| {
                let u = unread.remove(&r.id).unwrap_or_default();
                let h = history.remove(&r.id).unwrap_or_default();
                r.into_conversation(u, h)
            })
            .collect()
    }

    async fn unread_of(&self, ids: &[&str]) -> Result<BTreeMap<String, Vec<(String, i32)>>> {
        let rows: Vec<(String, String, i32)> = crate::on_engine!(readers self, pool => {
            let mut q = QueryBuilder::new(
                "SELECT conversation_id, account_id, count FROM unread WHERE conversation_id IN (",
            );
            let mut list = q.separated(", ");
            for id in ids {
                list.push_bind(*id);
            }
            q.push(")");
            q.build_query_as().fetch_all(pool).await?
        });
        let mut out: BTreeMap<String, Vec<(String, i32)>> = BTreeMap::new();
        for (conv, account, n) in rows {
            out.entry(conv).or_default().push((account, n));
        }
        Ok(out)
    }

    async fn assignments_of(&self, ids: &[&str]) -> Result<BTreeMap<String, Vec<AssignmentRow>>> {
        let rows: Vec<HistoryRow> = crate::on_engine!(readers self, pool => {
            let mut q = QueryBuilder::new(
                "SELECT conversation_id, at, to_account, by_account, reason FROM assignments \
                 WHERE conversation_id IN (",
            );
            let mut list = q.separated(", ");
            for id in ids {
                list.push_bind(*id);
            }
            q.push(") ORDER BY conversation_id, n");
            q.build_query_as().fetch_all(pool).await?
        });
        Ok(histories(rows))
    }
}
