//! Labels ("Nhãn"): a page's label names, and the tag jobs that take the changes made here to
//! Zalo's tag API — written in the change's transaction, taken by one hub under a lease, in order
//! per page (a tag, then its removal, reach Zalo in that order).

use super::write::WriteTx;
use super::{Db, StoreError};
use crate::model::Ms;
use anyhow::Result;

/// What a tag job asks of Zalo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagOp {
    /// `tag/tagfollower`: the label on a follower (Zalo creates the tag if need be).
    Tag,
    /// `tag/rmfollowerfromtag`: the label off a follower.
    Untag,
    /// `tag/rmtag`: the label off the page, and so off everyone.
    Remove,
}

impl TagOp {
    fn name(self) -> &'static str {
        match self {
            TagOp::Tag => "tag",
            TagOp::Untag => "untag",
            TagOp::Remove => "remove",
        }
    }
}

/// A tag job a hub has taken.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TagJob {
    pub n: i64,
    pub connection_id: String,
    /// The follower; empty for `remove`.
    pub user_id: String,
    op: String,
    pub name: String,
    /// Tries before this one.
    pub attempts: i32,
}

impl TagJob {
    pub fn op(&self) -> TagOp {
        match self.op.as_str() {
            "tag" => TagOp::Tag,
            "untag" => TagOp::Untag,
            _ => TagOp::Remove,
        }
    }
}

impl WriteTx {
    /// Names the page knows (already known ones are kept as they are).
    pub async fn add_page_labels(&mut self, connection_id: &str, names: &[String]) -> Result<()> {
        for name in names {
            crate::on_tx!(self, conn => sqlx::query(
                "INSERT INTO page_labels (connection_id, name) VALUES ($1, $2) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(connection_id)
            .bind(name)
            .execute(&mut *conn)
            .await
            .map(drop)?);
        }
        Ok(())
    }

    pub async fn remove_page_label(&mut self, connection_id: &str, name: &str) -> Result<()> {
        crate::on_tx!(self, conn => sqlx::query(
            "DELETE FROM page_labels WHERE connection_id = $1 AND name = $2",
        )
        .bind(connection_id)
        .bind(name)
        .execute(&mut *conn)
        .await
        .map(drop)?);
        Ok(())
    }

    /// A change for Zalo, sent after those queued before it for the same page.
    pub async fn queue_tag_job(
        &mut self,
        connection_id: &str,
        user_id: &str,
        op: TagOp,
        name: &str,
        at: Ms,
    ) -> Result<()> {
        crate::on_tx!(self, conn => sqlx::query(
            "INSERT INTO tag_jobs (connection_id, user_id, op, name, next_attempt_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(connection_id)
        .bind(user_id)
        .bind(op.name())
        .bind(name)
        .bind(at)
        .execute(&mut *conn)
        .await
        .map(drop)?);
        Ok(())
    }

    /// Whether changes to this follower's labels are still on their way to Zalo (then what Zalo
    /// says of their tags is older than what the hub holds).
    pub async fn tag_jobs_pending(&mut self, connection_id: &str, user_id: &str) -> Result<bool> {
        let found: Option<i64> = crate::on_tx!(self, conn => sqlx::query_scalar(
            "SELECT n FROM tag_jobs WHERE connection_id = $1 AND (user_id = $2 OR op = 'remove') \
             LIMIT 1",
        )
        .bind(connection_id)
        .bind(user_id)
        .fetch_optional(&mut *conn)
        .await?);
        Ok(found.is_some())
    }
}

impl Db {
    /// The page's labels, by name.
    pub async fn page_labels(&self, connection_id: &str) -> Result<Vec<String>> {
        let names = crate::on_engine!(readers self, pool => {
            sqlx::query_scalar(
                "SELECT name FROM page_labels WHERE connection_id = $1 ORDER BY name",
            )
            .bind(connection_id)
            .fetch_all(pool)
            .await?
        });
        Ok(names)
    }

    /// Takes up to `limit` due tag jobs for `lease_ms`, only the oldest of each page (see
    /// `take_jobs` for replies: the same leases, `SKIP LOCKED` on PostgreSQL).
    pub async fn take_tag_jobs(
        &self,
        now: Ms,
        lease_ms: Ms,
        limit: i64,
    ) -> Result<Vec<TagJob>, StoreError> {
        let lock = match self {
            Db::Postgres(_) => "FOR UPDATE SKIP LOCKED",
            Db::Sqlite(_) => "",
        };
        let pick = format!(
            "SELECT j.n, j.connection_id, j.user_id, j.op, j.name, j.attempts FROM tag_jobs j \
             WHERE j.next_attempt_at <= $1 AND j.lease_until < $1 \
             AND NOT EXISTS (SELECT 1 FROM tag_jobs e \
                 WHERE e.connection_id = j.connection_id AND e.n < j.n) \
             ORDER BY j.n LIMIT $2 {lock}"
        );
        let mut tx = self.begin_jobs().await?;
        let picked: Vec<TagJob> = crate::on_tx!(&mut tx, conn => {
            let picked: Vec<TagJob> = sqlx::query_as(&pick)
                .bind(now)
                .bind(limit)
                .fetch_all(&mut *conn)
                .await?;
            for job in &picked {
                sqlx::query(
                    "UPDATE tag_jobs SET lease_until = $2, attempts = attempts + 1 WHERE n = $1",
                )
                .bind(job.n)
                .bind(now + lease_ms)
                .execute(&mut *conn)
                .await?;
            }
            picked
        });
        tx.commit().await?;
        Ok(picked)
    }

    /// Zalo has the change (or refused it for good): the job is done.
    pub async fn finish_tag_job(&self, n: i64) -> Result<(), StoreError> {
        crate::on_engine!(self, pool => {
            sqlx::query("DELETE FROM tag_jobs WHERE n = $1")
                .bind(n)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Zalo asked to try later: the lease is dropped and the job waits until `at`.
    pub async fn retry_tag_job_at(&self, n: i64, at: Ms) -> Result<(), StoreError> {
        crate::on_engine!(self, pool => {
            sqlx::query("UPDATE tag_jobs SET lease_until = 0, next_attempt_at = $2 WHERE n = $1")
                .bind(n)
                .bind(at)
                .execute(pool)
                .await?;
        });
        Ok(())
    }
}
