//! Whether the hub can serve (`GET /healthz`): its database takes a durable write, and its
//! background workers (webhook intake, Zalo sender) are alive.

use super::{Hub, HubError};
use parking_lot::Mutex;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A worker that has not beaten for this long is stalled (they wake at least every second).
const STALLED_AFTER: Duration = Duration::from_secs(10);
/// The store probe's bound: a write that takes longer is as good as failed.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// The heartbeats of the workers that run.
#[derive(Default)]
pub struct Health {
    beats: Mutex<BTreeMap<&'static str, Instant>>,
}

impl Health {
    /// Called by a worker on every turn of its loop (also registers it as expected).
    pub fn beat(&self, worker: &'static str) {
        self.beats.lock().insert(worker, Instant::now());
    }
}

#[derive(Debug, Serialize)]
pub struct HealthReport {
    pub healthy: bool,
    /// `"ok"`, or why not, for the store and each worker.
    pub checks: BTreeMap<&'static str, String>,
}

impl Hub {
    pub async fn check_health(&self) -> HealthReport {
        let mut checks = BTreeMap::new();
        let probe = self.write(async |_, tx| {
            let now = crate::model::now_ms();
            tx.db.touch_health(now).await.map_err(super::store_error)
        });
        let store = match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
            Ok(Ok(())) => "ok".to_string(),
            Ok(Err(HubError::Store {
                full: true,
                message,
            })) => {
                format!("cannot write: no space left on the database's disk ({message})")
            }
            Ok(Err(HubError::Store { message, .. })) => {
                format!("cannot reach the database: {message}")
            }
            Ok(Err(HubError::Internal(e))) => format!("cannot write: {e:#}"),
            Ok(Err(e)) => format!("cannot write: {e}"),
            Err(_) => format!("a write took over {}s", PROBE_TIMEOUT.as_secs()),
        };
        checks.insert("store", store);
        for (worker, last) in self.health.beats.lock().iter() {
            let quiet = last.elapsed();
            let state = if quiet < STALLED_AFTER {
                "ok".to_string()
            } else {
                format!("stalled: no progress for {}s", quiet.as_secs())
            };
            checks.insert(worker, state);
        }
        HealthReport {
            healthy: checks.values().all(|v| v == "ok"),
            checks,
        }
    }
}
