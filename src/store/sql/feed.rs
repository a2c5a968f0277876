//! How a hub learns of events committed anywhere: a payload-free doorbell, then the log read by
//! cursor. The table is the truth; the doorbell only says "read now".
//!
//! - After a commit that logged events, the writer rings, on PostgreSQL, with
//!   `pg_notify('sop_events', '')` — outside the writing transaction, because NOTIFY
//!   takes a cluster-wide lock at commit (7–22% fewer transactions/s measured here).
//! - Each hub's follower (`server::hub`) reads `seq > cursor` whenever `doorbell` rings, when
//!   its LISTEN connection was lost (it may have missed a ring), and every `POLL` regardless
//!   (another process on the same SQLite file has no way to ring).

use super::Db;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

pub const CHANNEL: &str = "sop_events";

/// The longest a follower waits without a ring before reading anyway.
pub const POLL: Duration = Duration::from_secs(1);

impl Db {
    /// Rings the other hubs' doorbell after a commit that logged events (this hub published
    /// them itself; SQLite has no other hubs to ring).
    pub async fn ring(&self) {
        if let Db::Postgres(d) = self {
            if let Err(e) = sqlx::query("SELECT pg_notify($1, '')")
                .bind(CHANNEL)
                .execute(&d.pool)
                .await
            {
                // Other hubs still read within POLL.
                tracing::warn!("cannot ring the other hubs: {e}");
            }
        }
    }
}

/// Sends on `ring` whenever another hub committed events (PostgreSQL's NOTIFY), and when the
/// LISTEN connection was lost (a ring may have been missed). SQLite has no other hubs: it never
/// rings (`sop admin` in another process is seen by polling). Ends when `ring` is closed.
pub async fn doorbell(db: Arc<Db>, ring: mpsc::Sender<()>) {
    let Db::Postgres(d) = &*db else {
        return ring.closed().await;
    };
    let mut listener = listen(&d.pool).await;
    loop {
        let heard = match listener.as_mut() {
            Some(l) => match l.try_recv().await {
                // A ring, or the connection was lost (a ring may be lost with it): read now.
                Ok(_) => true,
                Err(e) => {
                    // The pool is closing, or the server went away: let go of the connection
                    // (closing the pool waits for it) and listen again later.
                    tracing::warn!("event doorbell: {e}");
                    listener = None;
                    true
                }
            },
            None if d.pool.is_closed() => return,
            None => {
                tokio::time::sleep(POLL).await;
                listener = listen(&d.pool).await;
                listener.is_some()
            }
        };
        if heard {
            if let Err(mpsc::error::TrySendError::Closed(_)) = ring.try_send(()) {
                return;
            }
        }
    }
}

/// A LISTEN connection, or `None` while PostgreSQL cannot be reached (the follower polls).
async fn listen(pool: &sqlx::PgPool) -> Option<sqlx::postgres::PgListener> {
    let mut l = match sqlx::postgres::PgListener::connect_with(pool).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!("cannot listen for events: {e}");
            return None;
        }
    };
    match l.listen(CHANNEL).await {
        Ok(()) => Some(l),
        Err(e) => {
            tracing::warn!("cannot listen for events: {e}");
            None
        }
    }
}
