//! The hub's write transaction: one change (a webhook batch, a claim, a rule save) is one
//! `WriteTx`, begun under the database's write lock and committed whole or not at all.
//!
//! The lock: SQLite's `BEGIN IMMEDIATE` (one writer per file, whichever process), and on
//! PostgreSQL the event counter's row, locked first thing and held until commit. Every change
//! logs events through that row anyway, so taking it first costs no concurrency the log did not
//! already forbid, and gives each change a view in which everything committed before it is
//! visible and nothing else changes: the domain code decides on current data on every hub.

use super::events::LoggedEvent;
use super::rows::{from_name, name_of, AccountRow, ConversationRow, HistoryRow};
use super::rules::RuleRow;
use super::Db;
use crate::model::text::fold;
use crate::model::*;
use anyhow::Result;
use sqlx::QueryBuilder;
use std::collections::BTreeMap;

pub enum WriteTx {
    Sqlite(SqliteWrite),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

/// SQLite's writer connection inside `BEGIN IMMEDIATE`, ended by hand: when COMMIT fails (a full
/// disk) SQLite keeps the transaction open, and it must be rolled back before the connection
/// serves again. Dropped while open (the change was abandoned midway), the connection is closed
/// instead of going back to the pool, which ends the transaction.
pub struct SqliteWrite(Option<sqlx::pool::PoolConnection<sqlx::Sqlite>>);

impl std::ops::Deref for SqliteWrite {
    type Target = sqlx::SqliteConnection;
    fn deref(&self) -> &Self::Target {
        self.0.as_ref().expect("an open write")
    }
}

impl std::ops::DerefMut for SqliteWrite {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.0.as_mut().expect("an open write")
    }
}

impl Drop for SqliteWrite {
    fn drop(&mut self) {
        if let Some(conn) = self.0.as_mut() {
            conn.close_on_drop();
        }
    }
}

impl SqliteWrite {
    async fn end(mut self, statement: &str) -> Result<(), sqlx::Error> {
        let mut conn = self.0.take().expect("an open write");
        match sqlx::query(statement).execute(&mut *conn).await {
            Ok(_) => Ok(()),
            Err(e) => {
                if sqlx::query("ROLLBACK").execute(&mut *conn).await.is_err() {
                    conn.close_on_drop();
                }
                Err(e)
            }
        }
    }
}

/// Runs `$body` with `$conn` bound to the transaction's connection, compiled for each engine.
#[macro_export]
macro_rules! on_tx {
    ($tx:expr, $conn:ident => $body:expr) => {
        match $tx {
            $crate::store::sql::write::WriteTx::Sqlite(t) => {
                let $conn = &mut **t;
                $body
            }
            $crate::store::sql::write::WriteTx::Postgres(t) => {
                let $conn = &mut **t;
                $body
            }
        }
    };
}

/// Executes one statement in the transaction, discarding its row count.
macro_rules! execute {
    ($tx:expr, $query:expr) => {
        on_tx!($tx, conn => $query.execute(&mut *conn).await.map(drop)?)
    };
}

/// Rows per multi-row statement: well under SQLite's 32,766 parameters at 19 columns.
const ROWS: usize = 500;

/// Everything the hub keeps in memory, read in one transaction (see `Db::load`).
#[derive(Default)]
pub struct Snapshot {
    pub accounts: Vec<Account>,
    pub connections: Vec<Connection>,
    pub rules: Vec<Rule>,
    pub conversations: Vec<Conversation>,
    pub counters: BTreeMap<String, i64>,
    /// The last event this snapshot includes.
    pub head: i64,
}

const CONNECTION_COLUMNS: &str = "c.id, c.oa_id, c.name, c.avatar, c.category, c.connector, \
    c.connected_at, c.last_connected_at, c.chat_mode, c.status, c.status_reason, \
    c.last_event_at, c.last_error, s.rule_id, COALESCE(t.access_expires_at, 0)";

type ConnectionRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    i64,
    String,
    String,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<String>,
    i64,
);

fn connection_of(r: ConnectionRow) -> Result<Connection> {
    Ok(Connection {
        id: r.0,
        oa_id: r.1,
        name: r.2,
        avatar: r.3,
        category: r.4,
        connector: r.5,
        connected_at: r.6,
        last_connected_at: r.7,
        chat_mode: from_name(&r.8)?,
        status: from_name(&r.9)?,
        status_reason: r.10,
        last_event_at: r.11,
        last_error: r.12,
        rule_id: r.13,
        // The secrets stay in the database; memory knows only when the access token expires.
        tokens: TokenPair {
            access_expires_at: r.14,
            ..Default::default()
        },
    })
}

pub(super) const MESSAGE_COLUMNS: &str =
    "id, conversation_id, direction, sender, sender_name, kind, text, \
    attachments, zalo_msg_id, quote_msg_id, client_key, delivery, error_code, error_reason, \
    created_at, raw";

pub(super) type MessageRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<String>,
    i64,
    Option<String>,
);

pub fn message_of(r: MessageRow) -> Result<Message> {
    Ok(Message {
        id: r.0,
        conversation_id: r.1,
        direction: from_name(&r.2)?,
        sender: r.3,
        sender_name: r.4,
        kind: from_name(&r.5)?,
        text: r.6,
        attachments: serde_json::from_str(&r.7)?,
        zalo_msg_id: r.8,
        quote_msg_id: r.9,
        client_key: r.10,
        delivery: r.11.as_deref().map(from_name).transpose()?,
        error_code: r.12,
        error_reason: r.13,
        created_at: r.14,
        raw: r.15.as_deref().map(serde_json::from_str).transpose()?,
    })
}

/// A quick reply's row, in `QuickReply`'s field order.
/// The columns of `QuickReplyRow`.
pub const QUICK_REPLY_COLUMNS: &str =
    "id, owner, shortcut, title, text, updated_at, file_kind, file_name, file_size";

pub type QuickReplyRow = (
    String,
    Option<String>,
    String,
    String,
    String,
    i64,
    Option<String>,
    Option<String>,
    Option<i64>,
);

pub fn quick_reply_of(r: QuickReplyRow) -> QuickReply {
    QuickReply {
        id: r.0,
        owner: r.1,
        shortcut: r.2,
        title: r.3,
        text: r.4,
        updated_at: r.5,
        attachment: r.6.map(|kind| Attachment {
            kind,
            url: String::new(),
            name: r.7.unwrap_or_default(),
            size: r.8.map(|n| n as u64),
        }),
    }
}

/// A reply job's row: (message id, conversation, attempts, next attempt, attachment JSON).
pub type JobRow = (String, String, i32, i64, Option<String>);

/// (key, value) rows, in order, grouped by key.
fn grouped(rows: Vec<(String, String)>) -> BTreeMap<String, Vec<String>> {
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (key, value) in rows {
        groups.entry(key).or_default().push(value);
    }
    groups
}

impl Db {
    /// Begins a change under the write lock (see the module comment).
    pub async fn begin_write(&self) -> Result<WriteTx, sqlx::Error> {
        Ok(match self {
            Db::Sqlite(d) => {
                let mut conn = d.writer.acquire().await?;
                sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
                WriteTx::Sqlite(SqliteWrite(Some(conn)))
            }
            Db::Postgres(d) => {
                let mut tx = d.pool.begin().await?;
                sqlx::query("SELECT value FROM counters WHERE name = 'event' FOR UPDATE")
                    .execute(&mut *tx)
                    .await?;
                WriteTx::Postgres(tx)
            }
        })
    }

    /// The hub's in-memory state as of one moment: read under the write lock so no change is
    /// half in it, then released.
    pub async fn load(&self) -> Result<Snapshot> {
        let mut tx = self.begin_write().await?;
        let snapshot = tx.snapshot().await;
        tx.rollback().await;
        snapshot
    }
}

impl WriteTx {
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            WriteTx::Sqlite(t) => t.end("COMMIT").await,
            WriteTx::Postgres(t) => t.commit().await,
        }
    }

    pub async fn rollback(self) {
        let r = match self {
            WriteTx::Sqlite(t) => t.end("ROLLBACK").await,
            WriteTx::Postgres(t) => t.rollback().await,
        };
        if let Err(e) = r {
            // The connection is closed instead; nothing was committed either way.
            tracing::warn!("rollback failed: {e}");
        }
    }

    async fn snapshot(&mut self) -> Result<Snapshot> {
        let mut s = Snapshot::default();
        on_tx!(self, conn => {
            let accounts: Vec<AccountRow> = sqlx::query_as(
                "SELECT id, email, username, name, role, availability, created_at FROM accounts \
                 ORDER BY id",
            )
            .fetch_all(&mut *conn)
            .await?;
            s.accounts = accounts
                .into_iter()
                .map(AccountRow::into_account)
                .collect::<Result<_>>()?;
            let connections: Vec<ConnectionRow> = sqlx::query_as(&format!(
                "SELECT {CONNECTION_COLUMNS} FROM connections c \
                 LEFT JOIN rule_sources s ON s.connection_id = c.id \
                 LEFT JOIN connection_tokens t ON t.connection_id = c.id"
            ))
            .fetch_all(&mut *conn)
            .await?;
            s.connections = connections
                .into_iter()
                .map(connection_of)
                .collect::<Result<_>>()?;
            let rules: Vec<RuleRow> = sqlx::query_as(
                "SELECT id, name, method, old_conversations, cursor, created_at, updated_at \
                 FROM rules",
            )
            .fetch_all(&mut *conn)
            .await?;
            let mut members = grouped(
                sqlx::query_as(
                    "SELECT rule_id, account_id FROM rule_members ORDER BY rule_id, position",
                )
                .fetch_all(&mut *conn)
                .await?,
            );
            let mut sources = grouped(
                sqlx::query_as(
                    "SELECT rule_id, connection_id FROM rule_sources ORDER BY rule_id, position",
                )
                .fetch_all(&mut *conn)
                .await?,
            );
            s.rules = rules
                .into_iter()
                .map(|r| {
                    let m = members.remove(&r.id).unwrap_or_default();
                    let p = sources.remove(&r.id).unwrap_or_default();
                    r.into_rule(m, p)
                })
                .collect::<Result<_>>()?;
            let mut unread: BTreeMap<String, Vec<(String, i32)>> = BTreeMap::new();
            let rows: Vec<(String, String, i32)> =
                sqlx::query_as("SELECT conversation_id, account_id, count FROM unread")
                    .fetch_all(&mut *conn)
                    .await?;
            for (conv, account, n) in rows {
                unread.entry(conv).or_default().push((account, n));
            }
            let rows: Vec<HistoryRow> = sqlx::query_as(
                "SELECT conversation_id, at, to_account, by_account, reason FROM assignments \
                 ORDER BY conversation_id, n",
            )
            .fetch_all(&mut *conn)
            .await?;
            let mut history = super::rows::histories(rows);
            let rows: Vec<ConversationRow> = sqlx::query_as(&format!(
                "SELECT {} FROM conversations",
                super::rows::CONVERSATION_COLUMNS
            ))
            .fetch_all(&mut *conn)
            .await?;
            s.conversations = rows
                .into_iter()
                .map(|r| {
                    let u = unread.remove(&r.id).unwrap_or_default();
                    let h = history.remove(&r.id).unwrap_or_default();
                    r.into_conversation(u, h)
                })
                .collect::<Result<_>>()?;
            let counters: Vec<(String, i64)> = sqlx::query_as("SELECT name, value FROM counters")
                .fetch_all(&mut *conn)
                .await?;
            s.counters = counters.into_iter().collect();
        });
        s.head = s.counters.get("event").copied().unwrap_or(0);
        Ok(s)
    }

    /// Events committed after `after` (by other hubs or processes), oldest first.
    pub async fn events_since(&mut self, after: i64) -> Result<Vec<LoggedEvent>> {
        let sql = "SELECT seq, at, audience, body FROM events WHERE seq > $1 ORDER BY seq";
        Ok(on_tx!(self, conn => sqlx::query_as(sql).bind(after).fetch_all(&mut *conn).await?))
    }

    /// The id counters and each rule's round-robin cursor: state that moves without events.
    pub async fn counters_and_cursors(
        &mut self,
    ) -> Result<(Vec<(String, i64)>, Vec<(String, Option<String>)>)> {
        Ok(on_tx!(self, conn => {
            let counters = sqlx::query_as("SELECT name, value FROM counters")
                .fetch_all(&mut *conn)
                .await?;
            let cursors = sqlx::query_as("SELECT id, cursor FROM rules")
                .fetch_all(&mut *conn)
                .await?;
            (counters, cursors)
        }))
    }

    pub async fn set_counter(&mut self, name: &str, value: i64) -> Result<()> {
        let sql = "UPDATE counters SET value = $2 WHERE name = $1";
        execute!(self, sqlx::query(sql).bind(name).bind(value));
        Ok(())
    }

    pub async fn save_account(&mut self, a: &Account) -> Result<()> {
        let sql = "INSERT INTO accounts (id, email, username, email_key, username_key, name, \
                   role, availability, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                   ON CONFLICT (id) DO UPDATE SET email = excluded.email, \
                   username = excluded.username, email_key = excluded.email_key, \
                   username_key = excluded.username_key, name = excluded.name, \
                   role = excluded.role, availability = excluded.availability";
        execute!(
            self,
            sqlx::query(sql)
                .bind(&a.id)
                .bind(&a.email)
                .bind(&a.username)
                .bind(a.email.to_lowercase())
                .bind(a.username.to_lowercase())
                .bind(&a.name)
                .bind(name_of(&a.role))
                .bind(name_of(&a.availability))
                .bind(a.created_at)
        );
        Ok(())
    }

    /// The account's one bearer token, by hash (the previous one stops working).
    pub async fn save_token(&mut self, account_id: &str, hash: &str, at: Ms) -> Result<()> {
        let sql = "INSERT INTO account_tokens (account_id, token_hash, created_at) \
                   VALUES ($1, $2, $3) ON CONFLICT (account_id) DO UPDATE \
                   SET token_hash = excluded.token_hash, created_at = excluded.created_at";
        execute!(self, sqlx::query(sql).bind(account_id).bind(hash).bind(at));
        Ok(())
    }

    /// A page's settings and status. Its rule is the rule's business (`rule_sources`), its
    /// tokens `save_tokens`'.
    pub async fn save_connection(&mut self, c: &Connection) -> Result<()> {
        let sql = "INSERT INTO connections (id, oa_id, name, avatar, category, connector, \
                   connected_at, last_connected_at, chat_mode, status, status_reason, \
                   last_event_at, last_error) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
                   ON CONFLICT (id) DO UPDATE SET oa_id = excluded.oa_id, name = excluded.name, \
                   avatar = excluded.avatar, category = excluded.category, \
                   connector = excluded.connector, connected_at = excluded.connected_at, \
                   last_connected_at = excluded.last_connected_at, \
                   chat_mode = excluded.chat_mode, status = excluded.status, \
                   status_reason = excluded.status_reason, last_event_at = excluded.last_event_at, \
                   last_error = excluded.last_error";
        execute!(
            self,
            sqlx::query(sql)
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
        );
        Ok(())
    }

    pub async fn save_tokens(&mut self, connection_id: &str, t: &TokenPair, at: Ms) -> Result<()> {
        let sql = "INSERT INTO connection_tokens (connection_id, access_token, refresh_token, \
                   access_expires_at, updated_at) VALUES ($1, $2, $3, $4, $5) \
                   ON CONFLICT (connection_id) DO UPDATE SET access_token = excluded.access_token, \
                   refresh_token = excluded.refresh_token, \
                   access_expires_at = excluded.access_expires_at, \
                   updated_at = excluded.updated_at, refresh_lease_until = 0";
        execute!(
            self,
            sqlx::query(sql)
                .bind(connection_id)
                .bind(&t.access_token)
                .bind(&t.refresh_token)
                .bind(t.access_expires_at)
                .bind(at)
        );
        Ok(())
    }

    /// Removes a page; its conversations, messages and jobs go with it (foreign keys cascade).
    pub async fn delete_connection(&mut self, id: &str) -> Result<()> {
        execute!(
            self,
            sqlx::query("DELETE FROM connections WHERE id = $1").bind(id)
        );
        Ok(())
    }

    /// A rule with its members and pages, as given.
    pub async fn save_rule(&mut self, r: &Rule) -> Result<()> {
        on_tx!(self, conn => {
            sqlx::query(
                "INSERT INTO rules (id, name, method, old_conversations, cursor, created_at, \
                 updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name, method = excluded.method, \
                 old_conversations = excluded.old_conversations, cursor = excluded.cursor, \
                 updated_at = excluded.updated_at",
            )
            .bind(&r.id)
            .bind(&r.name)
            .bind(name_of(&r.method))
            .bind(name_of(&r.old_conversations))
            .bind(&r.cursor)
            .bind(r.created_at)
            .bind(r.updated_at)
            .execute(&mut *conn)
            .await?;
            for table in ["rule_members", "rule_sources"] {
                sqlx::query(&format!("DELETE FROM {table} WHERE rule_id = $1"))
                    .bind(&r.id)
                    .execute(&mut *conn)
                    .await?;
            }
            if !r.members.is_empty() {
                let mut q = QueryBuilder::new("INSERT INTO rule_members (rule_id, account_id, position) ");
                q.push_values(r.members.iter().enumerate(), |mut row, (i, m)| {
                    row.push_bind(&r.id).push_bind(m).push_bind(i as i32);
                });
                q.build().execute(&mut *conn).await?;
            }
            if !r.sources.is_empty() {
                let mut q =
                    QueryBuilder::new("INSERT INTO rule_sources (rule_id, connection_id, position) ");
                q.push_values(r.sources.iter().enumerate(), |mut row, (i, s)| {
                    row.push_bind(&r.id).push_bind(s).push_bind(i as i32);
                });
                q.build().execute(&mut *conn).await?;
            }
        });
        Ok(())
    }

    pub async fn delete_rule(&mut self, id: &str) -> Result<()> {
        execute!(
            self,
            sqlx::query("DELETE FROM rules WHERE id = $1").bind(id)
        );
        Ok(())
    }

    /// Conversations as given, with their unread counts and assignment history: a few
    /// multi-row statements for the whole batch.
    pub async fn save_conversations(&mut self, convs: &[&Conversation]) -> Result<()> {
        for chunk in convs.chunks(ROWS) {
            on_tx!(self, conn => {
                let mut q = QueryBuilder::new(
                    "INSERT INTO conversations (id, connection_id, customer_id, customer_name, \
                     customer_avatar, customer_fetched_at, assignee, state, status, origin, \
                     last_interaction_at, last_activity_at, waiting_since, waiting_at, preview, \
                     created_at, customer_search, customer_labels, customer_follows) ",
                );
                q.push_values(chunk, |mut row, c| {
                    row.push_bind(c.id.as_str())
                        .push_bind(c.connection_id.as_str())
                        .push_bind(c.customer.user_id.as_str())
                        .push_bind(c.customer.display_name.as_str())
                        .push_bind(c.customer.avatar.as_str())
                        .push_bind(c.customer.fetched_at)
                        .push_bind(c.assignee.as_deref())
                        .push_bind(name_of(&c.state))
                        .push_bind(name_of(&c.status))
                        .push_bind(name_of(&c.origin))
                        .push_bind(c.last_interaction_at)
                        .push_bind(c.last_activity_at)
                        .push_bind(c.waiting_since)
                        .push_bind(c.waiting_at())
                        .push_bind(c.preview.as_str())
                        .push_bind(c.created_at)
                        .push_bind(super::search::customer_text(&c.customer))
                        .push_bind(serde_json::to_string(&c.customer.labels).expect("names"))
                        .push_bind(c.customer.follows.map(i32::from));
                });
                q.push(
                    " ON CONFLICT (id) DO UPDATE SET customer_name = excluded.customer_name, \
                     customer_avatar = excluded.customer_avatar, \
                     customer_fetched_at = excluded.customer_fetched_at, \
                     assignee = excluded.assignee, state = excluded.state, \
                     status = excluded.status, last_interaction_at = excluded.last_interaction_at, \
                     last_activity_at = excluded.last_activity_at, \
                     waiting_since = excluded.waiting_since, waiting_at = excluded.waiting_at, \
                     preview = excluded.preview, customer_search = excluded.customer_search, \
                     customer_labels = excluded.customer_labels, \
                     customer_follows = excluded.customer_follows",
                );
                q.build().execute(&mut *conn).await?;
                for table in ["unread", "assignments"] {
                    let mut q = QueryBuilder::new(format!(
                        "DELETE FROM {table} WHERE conversation_id IN ("
                    ));
                    let mut ids = q.separated(", ");
                    for c in chunk {
                        ids.push_bind(c.id.as_str());
                    }
                    q.push(")");
                    q.build().execute(&mut *conn).await?;
                }
                let unread: Vec<(&str, &str, i32)> = chunk
                    .iter()
                    .flat_map(|c| {
                        c.unread
                            .iter()
                            .map(|(who, n)| (c.id.as_str(), who.as_str(), *n as i32))
                    })
                    .collect();
                for rows in unread.chunks(ROWS) {
                    let mut q = QueryBuilder::new(
                        "INSERT INTO unread (conversation_id, account_id, count) ",
                    );
                    q.push_values(rows, |mut row, (c, who, n)| {
                        row.push_bind(*c).push_bind(*who).push_bind(*n);
                    });
                    q.build().execute(&mut *conn).await?;
                }
                let history: Vec<(&str, i64, &Assignment)> = chunk
                    .iter()
                    .flat_map(|c| {
                        c.assignments
                            .iter()
                            .enumerate()
                            .map(|(n, a)| (c.id.as_str(), n as i64 + 1, a))
                    })
                    .collect();
                for rows in history.chunks(ROWS) {
                    let mut q = QueryBuilder::new(
                        "INSERT INTO assignments (conversation_id, n, at, to_account, \
                         by_account, reason) ",
                    );
                    q.push_values(rows, |mut row, (c, n, a)| {
                        row.push_bind(*c)
                            .push_bind(*n)
                            .push_bind(a.at)
                            .push_bind(a.to.as_deref())
                            .push_bind(a.by.as_deref())
                            .push_bind(name_of(&a.reason));
                    });
                    q.build().execute(&mut *conn).await?;
                }
            });
        }
        Ok(())
    }

    /// Messages as given, each with its page's id (the unique key of Zalo's message ids).
    pub async fn save_messages(&mut self, msgs: &[(&str, &Message)]) -> Result<()> {
        for chunk in msgs.chunks(ROWS) {
            let rows: Vec<(&str, &Message, String, Option<String>)> = chunk
                .iter()
                .map(|(conn, m)| {
                    let attachments =
                        serde_json::to_string(&m.attachments).expect("attachments serialise");
                    let raw = m.raw.as_ref().map(|r| r.to_string());
                    (*conn, *m, attachments, raw)
                })
                .collect();
            on_tx!(self, conn => {
                let mut q = QueryBuilder::new(
                    "INSERT INTO messages (id, seq, conversation_id, connection_id, direction, \
                     sender, sender_name, kind, text, attachments, zalo_msg_id, quote_msg_id, \
                     client_key, delivery, error_code, error_reason, created_at, raw, search) ",
                );
                q.push_values(&rows, |mut row, (page, m, attachments, raw)| {
                    row.push_bind(m.id.as_str())
                        .push_bind(message_seq(&m.id).unwrap_or(0) as i64)
                        .push_bind(m.conversation_id.as_str())
                        .push_bind(*page)
                        .push_bind(name_of(&m.direction))
                        .push_bind(m.sender.as_str())
                        .push_bind(m.sender_name.as_str())
                        .push_bind(name_of(&m.kind))
                        .push_bind(m.text.as_str())
                        .push_bind(attachments.as_str())
                        .push_bind(m.zalo_msg_id.as_deref())
                        .push_bind(m.quote_msg_id.as_deref())
                        .push_bind(m.client_key.as_deref())
                        .push_bind(m.delivery.as_ref().map(name_of))
                        .push_bind(m.error_code)
                        .push_bind(m.error_reason.as_deref())
                        .push_bind(m.created_at)
                        .push_bind(raw.as_deref())
                        .push_bind(fold(&m.text));
                });
                q.push(
                    " ON CONFLICT (id) DO UPDATE SET zalo_msg_id = excluded.zalo_msg_id, \
                     delivery = excluded.delivery, error_code = excluded.error_code, \
                     error_reason = excluded.error_reason",
                );
                q.build().execute(&mut *conn).await?;
            });
        }
        Ok(())
    }

    pub async fn message(&mut self, id: &str) -> Result<Option<Message>> {
        let sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = $1");
        let row: Option<MessageRow> =
            on_tx!(self, conn => sqlx::query_as(&sql).bind(id).fetch_optional(&mut *conn).await?);
        row.map(message_of).transpose()
    }

    /// Our message with this Zalo id on this page.
    pub async fn message_id_by_zalo_id(
        &mut self,
        page: &str,
        zalo_id: &str,
    ) -> Result<Option<String>> {
        let sql = "SELECT id FROM messages WHERE connection_id = $1 AND zalo_msg_id = $2";
        Ok(on_tx!(self, conn => sqlx::query_scalar(sql)
            .bind(page)
            .bind(zalo_id)
            .fetch_optional(&mut *conn)
            .await?))
    }

    /// The reply this sender made in this conversation with this client key.
    pub async fn message_id_by_client_key(
        &mut self,
        sender: &str,
        conv: &str,
        key: &str,
    ) -> Result<Option<String>> {
        let sql = "SELECT id FROM messages WHERE sender = $1 AND conversation_id = $2 \
                   AND client_key = $3";
        Ok(on_tx!(self, conn => sqlx::query_scalar(sql)
            .bind(sender)
            .bind(conv)
            .bind(key)
            .fetch_optional(&mut *conn)
            .await?))
    }

    /// A thread's newest messages by arrival, newest first.
    pub async fn latest_messages(&mut self, conv: &str, limit: i64) -> Result<Vec<Message>> {
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = $1 \
             ORDER BY seq DESC LIMIT $2"
        );
        let rows: Vec<MessageRow> = on_tx!(self, conn => sqlx::query_as(&sql)
            .bind(conv)
            .bind(limit)
            .fetch_all(&mut *conn)
            .await?);
        rows.into_iter().map(message_of).collect()
    }

    /// Queues (or re-schedules) a reply job.
    pub async fn save_job(&mut self, job: &JobRow) -> Result<()> {
        let sql = "INSERT INTO reply_jobs (message_id, message_seq, conversation_id, attempts, \
                   next_attempt_at, attachment) VALUES ($1, $2, $3, $4, $5, $6) \
                   ON CONFLICT (message_id) DO UPDATE SET attempts = excluded.attempts, \
                   next_attempt_at = excluded.next_attempt_at, lease_until = 0, sending = 0";
        execute!(
            self,
            sqlx::query(sql)
                .bind(&job.0)
                .bind(message_seq(&job.0).unwrap_or(0) as i64)
                .bind(&job.1)
                .bind(job.2)
                .bind(job.3)
                .bind(&job.4)
        );
        Ok(())
    }

    pub async fn delete_job(&mut self, message_id: &str) -> Result<()> {
        execute!(
            self,
            sqlx::query("DELETE FROM reply_jobs WHERE message_id = $1").bind(message_id)
        );
        Ok(())
    }

    /// Attachment blobs of the jobs of one page's conversations (removed with the page).
    pub async fn job_attachments_of_page(&mut self, page: &str) -> Result<Vec<String>> {
        let sql = "SELECT j.attachment FROM reply_jobs j JOIN conversations c \
                   ON c.id = j.conversation_id WHERE c.connection_id = $1 \
                   AND j.attachment IS NOT NULL";
        Ok(on_tx!(self, conn => sqlx::query_scalar(sql)
            .bind(page)
            .fetch_all(&mut *conn)
            .await?))
    }

    /// Creates or replaces a quick reply; its file's bytes when `file` is given (a new file),
    /// none when it has no attachment, else the stored ones are kept.
    pub async fn save_quick_reply(&mut self, q: &QuickReply, file: Option<&[u8]>) -> Result<()> {
        let a = q.attachment.as_ref();
        execute!(
            self,
            sqlx::query(
                "INSERT INTO quick_replies (id, owner, shortcut, title, text, updated_at, \
                 file_kind, file_name, file_size) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT (id) DO UPDATE SET owner = excluded.owner, \
                 shortcut = excluded.shortcut, title = excluded.title, text = excluded.text, \
                 updated_at = excluded.updated_at, file_kind = excluded.file_kind, \
                 file_name = excluded.file_name, file_size = excluded.file_size"
            )
            .bind(&q.id)
            .bind(q.owner.as_deref())
            .bind(&q.shortcut)
            .bind(&q.title)
            .bind(&q.text)
            .bind(q.updated_at)
            .bind(a.map(|a| a.kind.as_str()))
            .bind(a.map(|a| a.name.as_str()))
            .bind(a.and_then(|a| a.size).map(|n| n as i64))
        );
        if a.is_none() || file.is_some() {
            execute!(
                self,
                sqlx::query("DELETE FROM quick_reply_files WHERE quick_reply_id = $1").bind(&q.id)
            );
        }
        if let Some(bytes) = file {
            execute!(
                self,
                sqlx::query(
                    "INSERT INTO quick_reply_files (quick_reply_id, content) VALUES ($1, $2)"
                )
                .bind(&q.id)
                .bind(bytes)
            );
        }
        Ok(())
    }

    pub async fn delete_quick_reply(&mut self, id: &str) -> Result<()> {
        execute!(
            self,
            sqlx::query("DELETE FROM quick_replies WHERE id = $1").bind(id)
        );
        Ok(())
    }

    /// A quick reply as this transaction sees it.
    pub async fn quick_reply(&mut self, id: &str) -> Result<Option<QuickReply>> {
        let sql = format!("SELECT {QUICK_REPLY_COLUMNS} FROM quick_replies WHERE id = $1");
        let row: Option<QuickReplyRow> = on_tx!(self, conn => sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?);
        Ok(row.map(quick_reply_of))
    }

    /// A colleague mentioned in a note (the note is saved in the same transaction, before).
    pub async fn save_mention(&mut self, account: &str, message: &str, conv: &str) -> Result<()> {
        execute!(
            self,
            sqlx::query(
                "INSERT INTO mentions (account_id, message_seq, message_id, conversation_id) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING"
            )
            .bind(account)
            .bind(message_seq(message).unwrap_or(0) as i64)
            .bind(message)
            .bind(conv)
        );
        Ok(())
    }

    /// A send whose outcome is unknown waits for Zalo's echo (`None` removes it).
    pub async fn set_unknown_send(&mut self, msg: &Message, waiting: bool) -> Result<()> {
        on_tx!(self, conn => {
            if waiting {
                sqlx::query(
                    "INSERT INTO unknown_sends (message_id, conversation_id, since) \
                     VALUES ($1, $2, $3) ON CONFLICT (message_id) DO NOTHING",
                )
                .bind(&msg.id)
                .bind(&msg.conversation_id)
                .bind(msg.created_at)
                .execute(&mut *conn)
                .await?;
            } else {
                sqlx::query("DELETE FROM unknown_sends WHERE message_id = $1")
                    .bind(&msg.id)
                    .execute(&mut *conn)
                    .await?;
            }
        });
        Ok(())
    }

    pub async fn put_consent(
        &mut self,
        state: &str,
        verifier: &str,
        who: &str,
        expires_at: Ms,
    ) -> Result<()> {
        on_tx!(self, conn => {
            sqlx::query("DELETE FROM consents WHERE expires_at <= $1")
                .bind(now_ms())
                .execute(&mut *conn)
                .await?;
            sqlx::query(
                "INSERT INTO consents (state, verifier, account_id, expires_at) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(state)
            .bind(verifier)
            .bind(who)
            .bind(expires_at)
            .execute(&mut *conn)
            .await?;
        });
        Ok(())
    }

    /// Takes a consent out: (verifier, account, expires at).
    pub async fn take_consent(&mut self, state: &str) -> Result<Option<(String, String, i64)>> {
        Ok(on_tx!(self, conn => sqlx::query_as(
            "DELETE FROM consents WHERE state = $1 RETURNING verifier, account_id, expires_at",
        )
        .bind(state)
        .fetch_optional(&mut *conn)
        .await?))
    }

    /// Unknown or unroutable webhook events, kept as they came.
    pub async fn store_raw_events(&mut self, rows: &[(i64, Ms, String)]) -> Result<()> {
        for chunk in rows.chunks(ROWS) {
            on_tx!(self, conn => {
                let mut q = QueryBuilder::new("INSERT INTO raw_events (n, received_at, body) ");
                q.push_values(chunk, |mut row, (n, at, body)| {
                    row.push_bind(*n).push_bind(*at).push_bind(body.as_str());
                });
                q.push(" ON CONFLICT (n) DO NOTHING");
                q.build().execute(&mut *conn).await?;
            });
        }
        Ok(())
    }

    pub async fn store_dead_webhook(
        &mut self,
        n: i64,
        at: Ms,
        error: &str,
        body: &str,
    ) -> Result<()> {
        let sql = "INSERT INTO dead_webhooks (n, at, error, body) VALUES ($1, $2, $3, $4) \
                   ON CONFLICT (n) DO NOTHING";
        execute!(
            self,
            sqlx::query(sql).bind(n).bind(at).bind(error).bind(body)
        );
        Ok(())
    }

    /// Appends the change's events (last, so the counter's row changes as late as possible).
    pub async fn append_events(
        &mut self,
        events: Vec<super::events::NewEvent>,
    ) -> Result<Vec<LoggedEvent>> {
        Ok(on_tx!(self, conn => crate::append_events!(conn, events)))
    }

    /// The health check's durable write.
    pub async fn touch_health(&mut self, now: Ms) -> Result<()> {
        execute!(
            self,
            sqlx::query("UPDATE health SET checked_at = $1 WHERE id = 1").bind(now)
        );
        Ok(())
    }

    /// Moves a round-robin rule's turn (bookkeeping: no event).
    pub async fn set_cursor(&mut self, rule: &str, cursor: &str) -> Result<()> {
        execute!(
            self,
            sqlx::query("UPDATE rules SET cursor = $2 WHERE id = $1")
                .bind(rule)
                .bind(cursor)
        );
        Ok(())
    }
}

impl Db {
    /// Drops events before `keep_from` (the log keeps a window for reconnecting consoles).
    pub async fn trim_events(&self, keep_from: i64) -> Result<()> {
        crate::on_engine!(self, pool => sqlx::query("DELETE FROM events WHERE seq < $1")
            .bind(keep_from)
            .execute(pool)
            .await
            .map(drop)?);
        Ok(())
    }

    /// The oldest event the log still has.
    pub async fn oldest_event(&self) -> Result<Option<i64>> {
        Ok(
            crate::on_engine!(readers self, pool => sqlx::query_scalar("SELECT MIN(seq) FROM events")
            .fetch_one(pool)
            .await?),
        )
    }

    /// The attachments (JSON) of every reply job.
    pub async fn job_attachments(&self) -> Result<Vec<String>> {
        let sql = "SELECT attachment FROM reply_jobs WHERE attachment IS NOT NULL";
        Ok(crate::on_engine!(readers self, pool => sqlx::query_scalar(sql).fetch_all(pool).await?))
    }

    pub async fn dead_webhook_count(&self) -> Result<i64> {
        let sql = "SELECT COUNT(*) FROM dead_webhooks";
        Ok(crate::on_engine!(readers self, pool => sqlx::query_scalar(sql).fetch_one(pool).await?))
    }

    /// The dead-letter list, oldest first: (n, at, error, body).
    pub async fn dead_webhooks(&self) -> Result<Vec<(i64, Ms, String, String)>> {
        let sql = "SELECT n, at, error, body FROM dead_webhooks ORDER BY n";
        Ok(crate::on_engine!(readers self, pool => sqlx::query_as(sql).fetch_all(pool).await?))
    }

    pub async fn message(&self, id: &str) -> Result<Option<Message>> {
        let sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = $1");
        let row: Option<MessageRow> = crate::on_engine!(readers self, pool => sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(pool)
            .await?);
        row.map(message_of).transpose()
    }

    /// A page of a thread in its time order: the newest `limit` before `before` (the thread
    /// position of a message: created at, arrival number), returned newest first.
    pub async fn thread(
        &self,
        conv: &str,
        before: Option<(Ms, i64)>,
        limit: i64,
    ) -> Result<Vec<Message>> {
        let (at, seq) = before.unwrap_or((i64::MAX, i64::MAX));
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = $1              AND (created_at < $2 OR (created_at = $2 AND seq < $3))              ORDER BY created_at DESC, seq DESC LIMIT $4"
        );
        let rows: Vec<MessageRow> = crate::on_engine!(readers self, pool => sqlx::query_as(&sql)
            .bind(conv)
            .bind(at)
            .bind(seq)
            .bind(limit)
            .fetch_all(pool)
            .await?);
        rows.into_iter().map(message_of).collect()
    }

    /// Every reply job, oldest first.
    pub async fn jobs(&self) -> Result<Vec<JobRow>> {
        let sql = "SELECT message_id, conversation_id, attempts, next_attempt_at, attachment                    FROM reply_jobs ORDER BY message_seq";
        Ok(crate::on_engine!(readers self, pool => sqlx::query_as(sql).fetch_all(pool).await?))
    }

    pub async fn job(&self, message_id: &str) -> Result<Option<JobRow>> {
        let sql = "SELECT message_id, conversation_id, attempts, next_attempt_at, attachment                    FROM reply_jobs WHERE message_id = $1";
        Ok(crate::on_engine!(readers self, pool => sqlx::query_as(sql)
            .bind(message_id)
            .fetch_optional(pool)
            .await?))
    }

    /// Sends waiting for Zalo's echo: (message, since).
    pub async fn unknown_sends(&self) -> Result<Vec<(String, Ms)>> {
        let sql = "SELECT message_id, since FROM unknown_sends ORDER BY since";
        Ok(crate::on_engine!(readers self, pool => sqlx::query_as(sql).fetch_all(pool).await?))
    }

    /// A page's OAuth tokens.
    pub async fn tokens(&self, connection_id: &str) -> Result<Option<TokenPair>> {
        let sql = "SELECT access_token, refresh_token, access_expires_at FROM connection_tokens                    WHERE connection_id = $1";
        let row: Option<(String, String, i64)> = crate::on_engine!(readers self, pool => sqlx::query_as(sql)
            .bind(connection_id)
            .fetch_optional(pool)
            .await?);
        Ok(row.map(
            |(access_token, refresh_token, access_expires_at)| TokenPair {
                access_token,
                refresh_token,
                access_expires_at,
            },
        ))
    }
}
