//! Group commit: writers apply their batch, record what to publish, and wait; one flusher thread
//! makes everything written so far durable with a single flush, then publishes it in order.

use super::Store;
use std::sync::{Arc, Condvar, Mutex};
use tokio::sync::watch;

struct Pending<T> {
    written: u64,
    items: Vec<T>,
    stop: bool,
}

struct Inner<T> {
    pending: Mutex<Pending<T>>,
    wake: Condvar,
    /// Highest ticket made durable; `u64::MAX` once the store failed.
    durable: watch::Sender<u64>,
}

pub struct GroupCommit<T> {
    inner: Arc<Inner<T>>,
}

const FAILED: u64 = u64::MAX;

impl<T: Send + 'static> GroupCommit<T> {
    /// Starts the flusher thread over a store. `publish` runs on it, in ticket order, after each
    /// flush.
    pub fn start(store: Arc<dyn Store>, publish: impl Fn(Vec<T>) + Send + 'static) -> Self {
        Self::with_flush(move || store.flush(), publish)
    }

    /// The same over any flush (a write-ahead log's fsync).
    pub fn with_flush(
        flush: impl Fn() -> anyhow::Result<()> + Send + 'static,
        publish: impl Fn(Vec<T>) + Send + 'static,
    ) -> Self {
        let inner = Arc::new(Inner {
            pending: Mutex::new(Pending {
                written: 0,
                items: Vec::new(),
                stop: false,
            }),
            wake: Condvar::new(),
            durable: watch::channel(0).0,
        });
        let flusher = inner.clone();
        std::thread::Builder::new()
            .name("sop-flusher".into())
            .spawn(move || {
                let mut flushed = 0;
                loop {
                    let (target, items, stop) = {
                        let mut p = flusher.pending.lock().unwrap();
                        while p.written == flushed && !p.stop {
                            p = flusher.wake.wait(p).unwrap();
                        }
                        (p.written, std::mem::take(&mut p.items), p.stop)
                    };
                    if let Err(e) = flush() {
                        tracing::error!("store flush failed: {e:#}");
                        flusher.durable.send_replace(FAILED);
                        return;
                    }
                    flushed = target;
                    publish(items);
                    flusher.durable.send_replace(target);
                    if stop && flusher.pending.lock().unwrap().written == flushed {
                        return;
                    }
                }
            })
            .expect("spawn flusher thread");
        GroupCommit { inner }
    }

    /// Records one applied batch and what to publish once it is durable. Call it while holding the
    /// lock that ordered the batch, so tickets follow the store's order.
    pub fn record(&self, items: impl IntoIterator<Item = T>) -> u64 {
        let mut p = self.inner.pending.lock().unwrap();
        p.written += 1;
        p.items.extend(items);
        self.inner.wake.notify_one();
        p.written
    }

    /// Waits until the batch with this ticket is durable.
    pub async fn wait(&self, ticket: u64) -> anyhow::Result<()> {
        let mut rx = self.inner.durable.subscribe();
        let reached = rx
            .wait_for(|d| *d >= ticket)
            .await
            .map_err(|_| anyhow::anyhow!("store flusher stopped"))?;
        if *reached == FAILED {
            anyhow::bail!("the store failed to make the write durable");
        }
        Ok(())
    }

    /// Blocking variant for command-line tools outside the runtime.
    pub fn wait_blocking(&self, ticket: u64) -> anyhow::Result<()> {
        let mut rx = self.inner.durable.subscribe();
        loop {
            let d = *rx.borrow_and_update();
            if d == FAILED {
                anyhow::bail!("the store failed to make the write durable");
            }
            if d >= ticket {
                return Ok(());
            }
            // No runtime here: poll briefly. Only used by `sop admin`.
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// Flushes what is pending and stops the flusher.
    pub fn shutdown(&self) {
        let ticket = {
            let mut p = self.inner.pending.lock().unwrap();
            p.stop = true;
            self.inner.wake.notify_one();
            p.written
        };
        let _ = self.wait_blocking(ticket);
    }
}
