//! Durable storage: the hub's SQL database (`sql`), the blob files of attachments waiting to be
//! sent (`blobs`), and a small key-value trait over sled, which the console's cache uses and from
//! which round-1 hub data dirs are imported.

use anyhow::{Context, Result};
use serde::{de::DeserializeOwned, Serialize};
use std::path::Path;

pub mod blobs;
pub mod sql;

/// One atomic set of writes. Later writes to a key win; `get` reads the batch's own writes so a
/// change can build on what it already wrote.
#[derive(Default, Debug)]
pub struct Batch {
    ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    latest: std::collections::HashMap<Vec<u8>, usize>,
}

impl Batch {
    pub fn put(&mut self, key: impl Into<Vec<u8>>, value: Vec<u8>) {
        self.push(key.into(), Some(value));
    }
    fn push(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        self.latest.insert(key.clone(), self.ops.len());
        self.ops.push((key, value));
    }
    /// `Some(None)`: deleted in this batch; `None`: not touched by it.
    pub fn get(&self, key: &[u8]) -> Option<Option<&[u8]>> {
        self.latest.get(key).map(|&i| self.ops[i].1.as_deref())
    }
    pub fn put_json<T: Serialize>(&mut self, key: impl Into<Vec<u8>>, value: &T) {
        self.put(
            key,
            serde_json::to_vec(value).expect("domain types serialise"),
        );
    }
    pub fn delete(&mut self, key: impl Into<Vec<u8>>) {
        self.push(key.into(), None);
    }
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
    /// The writes in order: `(key, Some(value))` or `(key, None)` for a delete.
    pub fn ops(&self) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> {
        self.ops.iter().map(|(k, v)| (k.as_slice(), v.as_deref()))
    }
    pub fn len(&self) -> usize {
        self.ops.len()
    }
}

/// What the hub and the console cache need from a store. Writes become visible at once and
/// durable after `flush`.
pub trait Store: Send + Sync + 'static {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Entries with keys in `[start, end)`, ascending, or descending when `reverse`, at most `limit`.
    fn range(
        &self,
        start: &[u8],
        end: &[u8],
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;
    fn apply(&self, batch: Batch) -> Result<()>;
    fn flush(&self) -> Result<()>;
}

/// Typed helpers over any store.
pub trait StoreExt: Store {
    fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        match self.get(key.as_bytes())? {
            Some(v) => Ok(Some(
                serde_json::from_slice(&v).with_context(|| format!("corrupt record {key}"))?,
            )),
            None => Ok(None),
        }
    }
    /// Every record under `prefix`, decoded.
    fn scan_json<T: DeserializeOwned>(&self, prefix: &str) -> Result<Vec<T>> {
        let end = prefix_end(prefix.as_bytes());
        self.range(prefix.as_bytes(), &end, false, usize::MAX)?
            .into_iter()
            .map(|(k, v)| {
                serde_json::from_slice(&v)
                    .with_context(|| format!("corrupt record {}", String::from_utf8_lossy(&k)))
            })
            .collect()
    }
}
impl<S: Store + ?Sized> StoreExt for S {}

/// The smallest key greater than every key starting with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    end.push(0xff);
    end
}

pub struct SledStore {
    db: sled::Db,
}

impl SledStore {
    /// Opens (or creates) the store; fails at once with a clear message when another process holds it.
    pub fn open(dir: &Path) -> Result<SledStore> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create data dir {}", dir.display()))?;
        let db = sled::Config::new()
            .path(dir.join("sled"))
            .open()
            .map_err(|e| match e {
                sled::Error::Io(ref io) if io.to_string().contains("could not acquire lock") => {
                    anyhow::anyhow!(
                        "data dir {} is in use by another sop process (its store is locked); stop that process or choose another --data-dir",
                        dir.display()
                    )
                }
                other => anyhow::anyhow!("cannot open store in {}: {other}", dir.display()),
            })?;
        Ok(SledStore { db })
    }
}

impl Store for SledStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get(key)?.map(|v| v.to_vec()))
    }
    fn range(
        &self,
        start: &[u8],
        end: &[u8],
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let iter = self.db.range(start..end);
        let map =
            |r: sled::Result<(sled::IVec, sled::IVec)>| r.map(|(k, v)| (k.to_vec(), v.to_vec()));
        let out: sled::Result<Vec<_>> = if reverse {
            iter.rev().take(limit).map(map).collect()
        } else {
            iter.take(limit).map(map).collect()
        };
        Ok(out?)
    }
    fn apply(&self, batch: Batch) -> Result<()> {
        let mut b = sled::Batch::default();
        for (k, v) in batch.ops {
            match v {
                Some(v) => b.insert(k, v),
                None => b.remove(k),
            }
        }
        self.db.apply_batch(b)?;
        Ok(())
    }
    fn flush(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }
}

/// Opens a store that another handle in this process just dropped: sled's background threads
/// release the lock a moment later.
#[cfg(test)]
pub(crate) fn open_when_released(dir: &Path) -> SledStore {
    for _ in 0..200 {
        if let Ok(s) = SledStore::open(dir) {
            return s;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    SledStore::open(dir).expect("store lock was never released")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_ranges_and_reopen() {
        let dir = std::env::temp_dir().join(format!("sop-store-{}", rand::random::<u64>()));
        {
            let s = SledStore::open(&dir).unwrap();
            let mut b = Batch::default();
            for i in 0..5u32 {
                b.put(format!("k/{i:04}"), vec![i as u8]);
            }
            b.put("other", vec![9]);
            s.apply(b).unwrap();
            let mut b = Batch::default();
            b.delete("k/0002");
            s.apply(b).unwrap();
            s.flush().unwrap();
            let rev = s.range(b"k/", &prefix_end(b"k/"), true, 2).unwrap();
            assert_eq!(rev[0].0, b"k/0004");
            assert_eq!(rev[1].0, b"k/0003");
            let err = SledStore::open(&dir).err().expect("second open must fail");
            assert!(
                err.to_string().contains("in use by another sop process"),
                "{err}"
            );
        }
        let s = open_when_released(&dir);
        let all = s.range(b"k/", &prefix_end(b"k/"), false, 100).unwrap();
        assert_eq!(all.len(), 4);
        assert_eq!(s.get(b"other").unwrap(), Some(vec![9]));
        std::fs::remove_dir_all(&dir).ok();
    }
}
