//! Replies: accepted with their job in one transaction, taken by any hub, sent once and in order
//! within a conversation.

use super::{Db, StoreError};
use crate::model::Ms;

/// A job a hub has taken (its lease held until `lease_until`).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TakenJob {
    pub message_id: String,
    pub message_seq: i64,
    pub conversation_id: String,
    /// Tries before this one.
    pub attempts: i32,
    /// Non-zero when an earlier taker's lease ran out: it died with the job taken.
    pub orphaned_lease: i64,
    /// Whether that taker had begun sending the message to Zalo (then whether Zalo got it is
    /// unknown, and it must not be sent blindly again).
    pub sending: i32,
    pub attachment: Option<String>,
}

impl Db {
    /// Takes up to `limit` due jobs for `lease_ms`: only the oldest pending job of each
    /// conversation, so replies leave in order; a job taken by one hub is invisible to the others
    /// until its lease runs out. PostgreSQL skips rows another hub is taking (`SKIP LOCKED`)
    /// instead of waiting; SQLite's single writer needs no row locks.
    pub async fn take_jobs(
        &self,
        now: Ms,
        lease_ms: Ms,
        limit: i64,
    ) -> Result<Vec<TakenJob>, StoreError> {
        let lock = match self {
            Db::Postgres(_) => "FOR UPDATE SKIP LOCKED",
            Db::Sqlite(_) => "",
        };
        let pick = format!(
            "SELECT j.message_id, j.message_seq, j.conversation_id, j.attempts, \
                 j.lease_until AS orphaned_lease, j.sending, j.attachment \
             FROM reply_jobs j \
             WHERE j.next_attempt_at <= $1 AND j.lease_until < $1 \
             AND NOT EXISTS (SELECT 1 FROM reply_jobs e \
                 WHERE e.conversation_id = j.conversation_id AND e.message_seq < j.message_seq) \
             ORDER BY j.next_attempt_at, j.message_seq LIMIT $2 {lock}"
        );
        let mut tx = self.begin_jobs().await?;
        let picked: Vec<TakenJob> = crate::on_tx!(&mut tx, conn => {
            let picked: Vec<TakenJob> = sqlx::query_as(&pick)
                .bind(now)
                .bind(limit)
                .fetch_all(&mut *conn)
                .await?;
            for job in &picked {
                sqlx::query(
                    "UPDATE reply_jobs SET lease_until = $2, attempts = attempts + 1, sending = 0 \
                     WHERE message_id = $1",
                )
                .bind(&job.message_id)
                .bind(now + lease_ms)
                .execute(&mut *conn)
                .await?;
            }
            picked
        });
        tx.commit().await?;
        Ok(picked)
    }

    /// A transaction for taking jobs: SQLite's writer, and on PostgreSQL a plain one (row locks
    /// and `SKIP LOCKED` keep hubs apart; the hub's write lock is not needed).
    pub(super) async fn begin_jobs(&self) -> Result<super::write::WriteTx, sqlx::Error> {
        match self {
            Db::Sqlite(_) => self.begin_write().await,
            Db::Postgres(d) => Ok(super::write::WriteTx::Postgres(d.pool.begin().await?)),
        }
    }

    /// The taken jobs' messages go to Zalo now (see `TakenJob::orphaned`); one statement for
    /// all of them.
    pub async fn mark_sending(&self, message_ids: &[String]) -> Result<(), StoreError> {
        if message_ids.is_empty() {
            return Ok(());
        }
        crate::on_engine!(self, pool => {
            let mut q = sqlx::QueryBuilder::new(
                "UPDATE reply_jobs SET sending = 1 WHERE message_id IN (",
            );
            let mut ids = q.separated(", ");
            for id in message_ids {
                ids.push_bind(id.as_str());
            }
            q.push(")");
            q.build().execute(pool).await?;
        });
        Ok(())
    }

    /// The job's send is settled (sent, failed or unknown): it is removed.
    pub async fn finish_job(&self, message_id: &str) -> Result<(), StoreError> {
        crate::on_engine!(self, pool => {
            sqlx::query("DELETE FROM reply_jobs WHERE message_id = $1")
                .bind(message_id)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Zalo asked to try later: the lease is dropped and the job waits until `at`.
    pub async fn retry_job_at(&self, message_id: &str, at: Ms) -> Result<(), StoreError> {
        crate::on_engine!(self, pool => {
            sqlx::query("UPDATE reply_jobs SET lease_until = 0, sending = 0, next_attempt_at = $2 WHERE message_id = $1")
                .bind(message_id)
                .bind(at)
                .execute(pool)
                .await?;
        });
        Ok(())
    }
}
