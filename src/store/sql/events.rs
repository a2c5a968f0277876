//! The event log consoles resume from.
//!
//! Its order must be total, gap-free and the commit order on every engine, so that a console
//! reading `seq > since` on any hub never skips an event that commits later with a smaller seq.
//! A PostgreSQL sequence gives none of that (numbers are taken before commit, and a rollback
//! leaves a hole), so numbers come from the `counters` row `event`, moved once per transaction by
//! `UPDATE … RETURNING`: its row lock is held until commit, so the next writer numbers after this
//! one commits. On SQLite the single writer connection gives the same. See docs/design-notes.md.

use crate::model::Ms;
use sqlx::QueryBuilder;

/// One event as the log stores it: its body and audience are JSON (the hub's `wire` types).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct LoggedEvent {
    pub seq: i64,
    pub at: Ms,
    pub audience: String,
    pub body: String,
}

/// An event to append: `(at, audience JSON, body JSON)`.
pub type NewEvent = (Ms, String, String);

/// Appends `events` inside the caller's transaction and returns them numbered. Called once per
/// transaction, after its other writes, so the counter's lock is held as briefly as possible.
#[macro_export]
macro_rules! append_events {
    ($tx:expr, $events:expr) => {{
        let events: Vec<$crate::store::sql::events::NewEvent> = $events;
        let mut logged = Vec::with_capacity(events.len());
        if !events.is_empty() {
            let last: i64 = sqlx::query_scalar(
                "UPDATE counters SET value = value + $1 WHERE name = 'event' RETURNING value",
            )
            .bind(events.len() as i64)
            .fetch_one(&mut *$tx)
            .await?;
            let first = last - events.len() as i64 + 1;
            logged = events
                .into_iter()
                .enumerate()
                .map(
                    |(i, (at, audience, body))| $crate::store::sql::events::LoggedEvent {
                        seq: first + i as i64,
                        at,
                        audience,
                        body,
                    },
                )
                .collect();
            for chunk in logged.chunks($crate::store::sql::events::ROWS_PER_INSERT) {
                $crate::store::sql::events::insert_statement(chunk)
                    .build()
                    .execute(&mut *$tx)
                    .await?;
            }
        }
        logged
    }};
}

/// Rows per multi-row INSERT: 4 parameters each, well under SQLite's 32,766 limit.
pub const ROWS_PER_INSERT: usize = 500;

/// One multi-row INSERT for a slice of numbered events, for whichever engine `DB` is.
pub fn insert_statement<'a, DB>(events: &'a [LoggedEvent]) -> QueryBuilder<'a, DB>
where
    DB: sqlx::Database,
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let mut q = QueryBuilder::new("INSERT INTO events (seq, at, audience, body) ");
    q.push_values(events, |mut row, e| {
        row.push_bind(e.seq)
            .push_bind(e.at)
            .push_bind(e.audience.as_str())
            .push_bind(e.body.as_str());
    });
    q
}

impl super::Db {
    /// Events after `since`, oldest first, at most `limit`.
    pub async fn events_since(&self, since: i64, limit: i64) -> anyhow::Result<Vec<LoggedEvent>> {
        let sql = "SELECT seq, at, audience, body FROM events WHERE seq > $1 ORDER BY seq LIMIT $2";
        Ok(crate::on_engine!(readers self, conn => sqlx::query_as(sql)
            .bind(since)
            .bind(limit)
            .fetch_all(conn)
            .await?))
    }

    /// The last committed event's number (0 for an empty log).
    pub async fn event_head(&self) -> anyhow::Result<i64> {
        let sql = "SELECT value FROM counters WHERE name = 'event'";
        Ok(crate::on_engine!(readers self, conn => sqlx::query_scalar(sql).fetch_one(conn).await?))
    }

    /// Appends events in a transaction of their own (tests, and changes that are only events).
    pub async fn append_events(&self, events: Vec<NewEvent>) -> anyhow::Result<Vec<LoggedEvent>> {
        let logged = crate::in_transaction!(self, tx => crate::append_events!(tx, events));
        self.ring().await;
        Ok(logged)
    }
}
