//! The console's local cache (sled, one per server + account): the last snapshot, so the console
//! opens instantly and works read-only offline, and the outbox, so a reply typed offline survives
//! a restart and is sent exactly once (the hub dedupes by client key).

use super::data::{OutboxItem, Snapshot};
use crate::store::{Batch, SledStore, Store, StoreExt};
use anyhow::Result;
use sha2::Digest;
use std::path::{Path, PathBuf};

/// Where the snapshot is kept. Postcard is not self-describing: bytes written for another shape
/// may decode into wrong values rather than fail, so a change to what a snapshot holds (labels on
/// customers, say) takes a new key, and older caches are left for the hub's snapshot to replace.
const SNAPSHOT_KEY: &str = "snapshot-2.bin";

pub struct Cache {
    store: SledStore,
}

pub enum Opened {
    Ready(Cache),
    /// Another console of the same user holds it.
    Locked,
}

/// One directory per (server, token): different hubs or accounts never mix.
pub fn cache_dir(root: &Path, server: &str, token: &str) -> PathBuf {
    let h = sha2::Sha256::digest(format!("{server}\n{token}").as_bytes());
    root.join(hex::encode(&h[..8]))
}

impl Cache {
    pub fn open(dir: &Path) -> Result<Opened> {
        match SledStore::open(dir) {
            Ok(store) => Ok(Opened::Ready(Cache { store })),
            Err(e) if e.to_string().contains("in use by another sop process") => Ok(Opened::Locked),
            Err(e) => Err(e),
        }
    }

    pub fn load(&self) -> (Option<Snapshot>, Vec<OutboxItem>) {
        // Binary (postcard): a 100,000-conversation snapshot decodes several times faster than JSON.
        let snapshot = self
            .store
            .get(SNAPSHOT_KEY.as_bytes())
            .ok()
            .flatten()
            .and_then(|b| {
                postcard::from_bytes(&b)
                    .map_err(|e| tracing::warn!("cache snapshot unreadable: {e}"))
                    .ok()
            });
        let outbox = self
            .store
            .get_json("outbox")
            .ok()
            .flatten()
            .unwrap_or_default();
        (snapshot, outbox)
    }

    pub fn save_snapshot(&self, s: &Snapshot) -> Result<()> {
        let mut b = Batch::default();
        b.put(SNAPSHOT_KEY, postcard::to_stdvec(s)?);
        self.store.apply(b)?;
        self.store.flush()
    }

    /// Written and flushed at once: the outbox is what must not be lost.
    pub fn save_outbox(&self, outbox: &[OutboxItem]) -> Result<()> {
        let mut b = Batch::default();
        b.put_json("outbox", &outbox);
        self.store.apply(b)?;
        self.store.flush()
    }
}
