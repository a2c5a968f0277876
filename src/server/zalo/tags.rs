//! The tag sender: label changes made in the hub go to Zalo's tag API, one at a time per page in
//! the order they were made, retried with backoff when Zalo asks to wait (−32) or cannot be
//! reached. Tag calls are idempotent, so a job whose hub died midway is simply sent again.

use super::sender::backoff_ms;
use super::ZaloHub;
use crate::model::*;
use crate::server::hub::labels::TagOutcome;
use crate::store::sql::labels::{TagJob, TagOp};
use crate::zalo::{human_reason, is_retryable};
use std::sync::Arc;
use std::time::Duration;

const MAX_ATTEMPTS: i32 = 8;

/// Tag calls in flight at once, across pages.
const IN_FLIGHT: usize = 16;

/// How long a taken job is this hub's: far longer than one tag call.
const LEASE_MS: Ms = 60_000;

pub async fn run(z: Arc<ZaloHub>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    loop {
        z.hub.health.beat("tags");
        let free = slots.available_permits();
        if free > 0 {
            match z.hub.take_tag_jobs(LEASE_MS, free).await {
                Ok(jobs) => {
                    for job in jobs {
                        let permit = slots.clone().acquire_owned().await.expect("never closed");
                        let z = z.clone();
                        tokio::spawn(async move {
                            send(&z, job).await;
                            drop(permit);
                            // The page's next change may go now.
                            z.hub.tags_ready.notify_one();
                        });
                    }
                }
                Err(e) => tracing::error!("cannot take tag jobs: {e}"),
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), z.hub.tags_ready.notified()).await;
    }
}

/// Sends one taken job and records how it ended; when recording fails the lease runs out and
/// the job is sent again (harmless: the same tag twice is one tag).
async fn send(z: &ZaloHub, job: TagJob) {
    let (user, name) = (job.user_id.clone(), job.name.clone());
    let result = z
        .with_token(&job.connection_id, |t| {
            let (client, user, name) = (z.client.clone(), user.clone(), name.clone());
            let op = job.op();
            async move {
                match op {
                    TagOp::Tag => client.tag_follower(&t, &user, &name, true).await,
                    TagOp::Untag => client.tag_follower(&t, &user, &name, false).await,
                    TagOp::Remove => client.remove_tag(&t, &name).await,
                }
            }
        })
        .await;
    let outcome = match result {
        Ok(()) => TagOutcome::Done,
        // Zalo has no such tag (on them): what was asked holds already.
        Err(e) if e.code == -201 && job.op() != TagOp::Tag => TagOutcome::Done,
        Err(e) if is_retryable(e.code) && job.attempts + 1 < MAX_ATTEMPTS => {
            let attempts = job.attempts as u32 + 1;
            let at = now_ms() + backoff_ms(z.config.retry_base_ms as Ms, attempts);
            tracing::info!(page = %job.connection_id, label = %job.name, attempts, "retrying the tag call after {e}");
            if let Err(e) = z.hub.retry_tag_job_at(&job, at).await {
                tracing::error!("cannot reschedule the tag call: {e}");
            }
            return;
        }
        Err(e) => TagOutcome::Refused(human_reason(e.code, &e.message)),
    };
    if let Err(e) = z.hub.finish_tag_job(&job, outcome).await {
        tracing::error!(page = %job.connection_id, label = %job.name, "cannot record the tag call: {e}");
    }
}
