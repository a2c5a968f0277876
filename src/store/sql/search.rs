//! Search over message text and customer names, as Vietnamese agents type: accents and case
//! ignored (`text::fold`, also at write time), every word a prefix, newest first. SQLite reads its
//! FTS5 tables (`messages_fts`, `conversations_fts`, kept by triggers), PostgreSQL its stored
//! `simple` tsvectors (`search_words`, `customer_words`) by their GIN indexes: the same terms, the
//! same answers.

use super::write::{message_of, MessageRow, MESSAGE_COLUMNS};
use super::Db;
use crate::model::text::fold;
use crate::model::{message_seq, Customer, Message};
use anyhow::Result;
use sqlx::QueryBuilder;

pub use crate::model::text::search_terms as terms;

/// On PostgreSQL, the newest messages a search walks through before using the index (the
/// default of `PgDb::search_recent`).
pub const RECENT: i64 = 20_000;

/// What a customer is found by: the name and the Zalo user id.
pub fn customer_text(c: &Customer) -> String {
    format!("{} {}", fold(&c.display_name), c.user_id)
}

/// FTS5: every term a prefix, all of them (`"vo"* "thi"*`).
fn fts5_query(terms: &[String]) -> String {
    terms
        .iter()
        .map(|t| format!("\"{t}\"*"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// PostgreSQL `to_tsquery('simple', …)`: every term a prefix, all of them (`vo:* & thi:*`).
fn tsquery(terms: &[String]) -> String {
    terms
        .iter()
        .map(|t| format!("{t}:*"))
        .collect::<Vec<_>>()
        .join(" & ")
}

/// How a PostgreSQL search pass reads: walking back through the `seq` index testing each row's
/// stored words (`coalesce(…)` keeps the planner off the GIN index), or looking the words up in
/// the GIN index and sorting what it found (`seq + 0` keeps it off the `seq` index).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Way {
    Walk,
    Index,
}

/// One PostgreSQL search: its words, where it starts, which conversations.
struct PgSearch<'a> {
    d: &'a super::PgDb,
    query: String,
    before: i64,
    within: Option<&'a [String]>,
}

impl PgSearch<'_> {
    /// Up to `limit` matches before `before`, newest first, among the newest `search_recent`
    /// messages (`recent`) or among those older than them.
    async fn pass(&self, limit: i64, recent: bool, way: Way) -> Result<Vec<MessageRow>> {
        let mut q = QueryBuilder::new(format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE "));
        let seq = match way {
            Way::Walk => {
                // A walk tests each row: the conversation first (a hashed list, cheap), then the
                // words, and the query parsed once in a sub-select (a prepared statement's
                // generic plan, which PostgreSQL picks after five runs, would parse it again for
                // each row: 20,000 parses, 60 ms). PostgreSQL orders `AND`ed tests by its own
                // estimate of their cost, so the order is spelt with CASE (an agent's walk:
                // 46 → 32 ms).
                if let Some(ids) = self.within {
                    q.push("CASE WHEN conversation_id = ANY(")
                        .push_bind(ids)
                        .push(") THEN ");
                }
                q.push("coalesce(search_words, '') @@ (SELECT to_tsquery('simple', ")
                    .push_bind(self.query.clone())
                    .push("))");
                if self.within.is_some() {
                    q.push(" ELSE false END");
                }
                "seq"
            }
            Way::Index => {
                q.push("search_words @@ to_tsquery('simple', ")
                    .push_bind(self.query.clone())
                    .push(")");
                if let Some(ids) = self.within {
                    q.push(" AND conversation_id = ANY(")
                        .push_bind(ids)
                        .push(")");
                }
                "seq + 0"
            }
        };
        q.push(format!(" AND {seq} < ")).push_bind(self.before);
        // The edge between the newest `search_recent` messages and the older ones.
        q.push(if recent {
            " AND seq >= (SELECT LEAST(MAX(seq) + 1, ".to_string()
        } else {
            format!(" AND {seq} < (SELECT LEAST(MAX(seq) + 1, ")
        })
        .push_bind(self.before)
        .push(format!(") - {} FROM messages)", self.d.search_recent));
        q.push(format!(" ORDER BY {seq} DESC LIMIT "))
            .push_bind(limit);
        // An agent's conversations are one array. Planned with its value (an unnamed statement
        // is never given a generic plan), PostgreSQL tests it as a hash table; a list of 2,000
        // parameters cost 5 ms to parse and plan, each time.
        Ok(q.build_query_as()
            .persistent(self.within.is_none())
            .fetch_all(&self.d.pool)
            .await?)
    }
}

/// SQLite: `AND column IN (…)` when the search is limited to some conversations.
fn push_within<'a>(
    q: &mut QueryBuilder<'a, sqlx::Sqlite>,
    column: &str,
    within: Option<&'a [String]>,
) {
    if let Some(ids) = within {
        q.push(format!(" AND {column} IN ("));
        let mut list = q.separated(", ");
        for id in ids {
            list.push_bind(id.as_str());
        }
        q.push(")");
    }
}

impl Db {
    /// Messages whose text has every term (as word prefixes), newest first, before the
    /// message number `before` when given, in the conversations `within` when given; with their
    /// numbers (the search cursor).
    pub async fn search_messages(
        &self,
        terms: &[String],
        before: Option<i64>,
        limit: i64,
        within: Option<&[String]>,
    ) -> Result<Vec<(i64, Message)>> {
        if within.is_some_and(|w| w.is_empty()) {
            return Ok(Vec::new());
        }
        let before = before.unwrap_or(i64::MAX);
        let rows: Vec<MessageRow> = match self {
            Db::Sqlite(d) => {
                let mut q = QueryBuilder::new(format!(
                    "SELECT {MESSAGE_COLUMNS} FROM messages_fts \
                     JOIN messages ON messages.seq = messages_fts.rowid \
                     WHERE messages_fts MATCH "
                ));
                q.push_bind(fts5_query(terms))
                    .push(" AND messages_fts.rowid < ")
                    .push_bind(before);
                push_within(&mut q, "messages.conversation_id", within);
                q.push(" ORDER BY messages_fts.rowid DESC LIMIT ")
                    .push_bind(limit);
                q.build_query_as().fetch_all(&d.readers).await?
            }
            Db::Postgres(d) => {
                // A GIN index cannot give rows newest first, and PostgreSQL cannot tell a rare
                // prefix from a common one: walking back by `seq` is fast where matches are
                // dense and reads the whole table for a word nobody wrote lately; the GIN index
                // the other way round (ANDing four common words' lists: 160 ms). So the newest
                // `search_recent` messages are walked, and how many matched there decides how
                // the older ones are read: walked on when the rest should come within ten
                // windows, else through the index (a rare phone number: 0.1 ms, 514 ms walked).
                let search = PgSearch {
                    d,
                    query: tsquery(terms),
                    before,
                    within,
                };
                let mut rows = search.pass(limit, true, Way::Walk).await?;
                let found = rows.len() as i64;
                if found < limit {
                    let rest = limit - found;
                    let way = if found * 10 >= rest {
                        Way::Walk
                    } else {
                        Way::Index
                    };
                    rows.extend(search.pass(rest, false, way).await?);
                }
                rows
            }
        };
        rows.into_iter()
            .map(|r| {
                let m = message_of(r)?;
                Ok((message_seq(&m.id).unwrap_or(0) as i64, m))
            })
            .collect()
    }

    /// The notes that mention `account`, newest first, before the message number `before`.
    pub async fn mentions_of(
        &self,
        account: &str,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<(i64, Message)>> {
        // Both tables have conversation_id: the message's columns by their table.
        let columns: Vec<String> = MESSAGE_COLUMNS
            .split(',')
            .map(|c| format!("messages.{}", c.trim()))
            .collect();
        let columns = columns.join(", ");
        let sql = format!(
            "SELECT {columns} FROM mentions JOIN messages ON messages.id = mentions.message_id \
             WHERE mentions.account_id = $1 AND mentions.message_seq < $2 \
             ORDER BY mentions.message_seq DESC LIMIT $3"
        );
        let rows: Vec<MessageRow> = crate::on_engine!(readers self, pool => {
            sqlx::query_as(&sql)
                .bind(account)
                .bind(before.unwrap_or(i64::MAX))
                .bind(limit)
                .fetch_all(pool)
                .await?
        });
        rows.into_iter()
            .map(|r| {
                let m = message_of(r)?;
                Ok((message_seq(&m.id).unwrap_or(0) as i64, m))
            })
            .collect()
    }

    /// The notes and shared-info messages of some conversations, newest first.
    pub async fn customer_messages(
        &self,
        conversations: &[String],
        limit: i64,
    ) -> Result<Vec<Message>> {
        if conversations.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<MessageRow> = crate::on_engine!(readers self, pool => {
            let mut q = QueryBuilder::new(format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages WHERE (kind = 'note' OR \
                 (kind = 'other' AND raw LIKE '%user_submit_info%')) AND conversation_id IN ("
            ));
            let mut ids = q.separated(", ");
            for id in conversations {
                ids.push_bind(id.as_str());
            }
            q.push(") ORDER BY seq DESC LIMIT ").push_bind(limit);
            q.build_query_as().fetch_all(pool).await?
        });
        rows.into_iter().map(message_of).collect()
    }

    /// Conversations whose customer's name (or Zalo id) has every term, latest activity first,
    /// among `within` when given.
    pub async fn search_customers(
        &self,
        terms: &[String],
        limit: i64,
        within: Option<&[String]>,
    ) -> Result<Vec<String>> {
        if within.is_some_and(|w| w.is_empty()) {
            return Ok(Vec::new());
        }
        Ok(match self {
            Db::Sqlite(d) => {
                let mut q = QueryBuilder::new(
                    "SELECT conversations.id FROM conversations_fts \
                     JOIN conversations ON conversations.rowid = conversations_fts.rowid \
                     WHERE conversations_fts MATCH ",
                );
                q.push_bind(fts5_query(terms));
                push_within(&mut q, "conversations.id", within);
                q.push(" ORDER BY conversations.last_activity_at DESC, conversations.id LIMIT ")
                    .push_bind(limit);
                q.build_query_scalar().fetch_all(&d.readers).await?
            }
            Db::Postgres(d) => {
                let mut q = QueryBuilder::new(
                    "SELECT id FROM conversations WHERE customer_words @@ to_tsquery('simple', ",
                );
                q.push_bind(tsquery(terms)).push(")");
                if let Some(ids) = within {
                    q.push(" AND id = ANY(").push_bind(ids).push(")");
                }
                q.push(" ORDER BY last_activity_at DESC, id LIMIT ")
                    .push_bind(limit);
                // As a message search: the agent's conversations tested as a hash table.
                q.build_query_scalar()
                    .persistent(within.is_none())
                    .fetch_all(&d.pool)
                    .await?
            }
        })
    }

    /// Folds what was written before search existed (migration 3): messages and customers
    /// whose search text is missing, a batch per transaction. Returns how many rows it filled.
    pub async fn fill_search_text(&self) -> Result<u64> {
        let mut filled = 0;
        loop {
            let rows: Vec<(i64, String)> = crate::on_engine!(self, pool => {
                sqlx::query_as("SELECT seq, text FROM messages WHERE search IS NULL ORDER BY seq LIMIT 1000")
                    .fetch_all(pool)
                    .await?
            });
            if rows.is_empty() {
                break;
            }
            filled += rows.len() as u64;
            crate::in_transaction!(self, tx => {
                for (seq, text) in &rows {
                    sqlx::query("UPDATE messages SET search = $1 WHERE seq = $2")
                        .bind(fold(text))
                        .bind(seq)
                        .execute(&mut *tx)
                        .await?;
                }
            });
        }
        let rows: Vec<(String, String, String)> = crate::on_engine!(self, pool => {
            sqlx::query_as(
                "SELECT id, customer_name, customer_id FROM conversations \
                 WHERE customer_search IS NULL",
            )
            .fetch_all(pool)
            .await?
        });
        filled += rows.len() as u64;
        for chunk in rows.chunks(1000) {
            crate::in_transaction!(self, tx => {
                for (id, name, user_id) in chunk {
                    let customer = Customer {
                        user_id: user_id.clone(),
                        display_name: name.clone(),
                        ..Default::default()
                    };
                    sqlx::query("UPDATE conversations SET customer_search = $1 WHERE id = $2")
                        .bind(customer_text(&customer))
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                }
            });
        }
        Ok(filled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_folded_words_each_a_prefix() {
        let t = terms("  Võ THỊ  dũng, đặt-lịch \"x\" * ");
        assert_eq!(t, ["vo", "thi", "dung", "dat", "lich", "x"]);
        assert_eq!(fts5_query(&t[..2]), "\"vo\"* \"thi\"*");
        assert_eq!(tsquery(&t[..2]), "vo:* & thi:*");
        assert!(terms(" -- \" * ").is_empty());
    }
}
