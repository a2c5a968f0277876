//! An append-only write-ahead log of opaque records, made durable by group-committed fsyncs.
//! The hub's webhook intake uses it: an fsync of a few hundred bytes is far cheaper than flushing
//! the whole store, and the 200 to Zalo only needs the raw event to be safe.
//!
//! Record: `n: u64 LE, len: u32 LE, bytes`. A torn record at the tail (crash mid-write, never
//! acknowledged) is ignored on reading.

use super::GroupCommit;
use anyhow::{Context, Result};
use parking_lot::Mutex;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A record: its number and bytes.
pub type Record = (u64, Vec<u8>);

/// Appends one record, as the log stores it, to `out`.
pub fn encode_record(n: u64, bytes: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// The whole records at the start of `bytes`, and where they end (a torn tail starts there).
pub fn parse_records(bytes: &[u8]) -> (Vec<Record>, usize) {
    let mut records = vec![];
    let mut at = 0;
    while let Some(header) = bytes.get(at..at + 12) {
        let n = u64::from_le_bytes(header[..8].try_into().expect("8 bytes"));
        let len = u32::from_le_bytes(header[8..].try_into().expect("4 bytes")) as usize;
        let Some(body) = bytes.get(at + 12..at + 12 + len) else {
            break;
        };
        records.push((n, body.to_vec()));
        at += 12 + len;
    }
    (records, at)
}

pub struct Wal {
    path: PathBuf,
    file: Arc<Mutex<File>>,
    commit: GroupCommit<()>,
}

impl Wal {
    /// Opens the log and returns the records it holds, oldest first.
    pub fn open(path: &Path) -> Result<(Wal, Vec<Record>)> {
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let mut bytes = vec![];
        file.read_to_end(&mut bytes)?;
        let (records, at) = parse_records(&bytes);
        if at < bytes.len() {
            tracing::warn!(path = %path.display(), "ignoring a torn record at the end of the log");
            file.set_len(at as u64)?;
        }
        let file = Arc::new(Mutex::new(file));
        let syncer = file.clone();
        // fsync outside the append lock: appends go on while the disk syncs.
        let fd = syncer.lock().try_clone()?;
        let commit = GroupCommit::with_flush(move || Ok(fd.sync_data()?), |_| {});
        Ok((
            Wal {
                path: path.to_path_buf(),
                file,
                commit,
            },
            records,
        ))
    }

    /// Appends a record and returns its number once it is on disk. `number` runs under the log's
    /// lock, so numbers follow the log's order.
    pub async fn append(&self, bytes: &[u8], number: impl FnOnce() -> u64) -> Result<u64> {
        let (n, ticket) = {
            let mut f = self.file.lock();
            let n = number();
            let mut rec = Vec::with_capacity(12 + bytes.len());
            encode_record(n, bytes, &mut rec);
            f.write_all(&rec)?;
            (n, self.commit.record([]))
        };
        self.commit.wait(ticket).await?;
        Ok(n)
    }

    /// Empties the log once everything in it has been applied elsewhere (and made durable there).
    /// `still_needed` is checked under the append lock so no record can slip in between.
    pub fn truncate_if(&self, still_needed: impl FnOnce() -> bool) -> Result<()> {
        let f = self.file.lock();
        if !still_needed() && f.metadata()?.len() > 0 {
            f.set_len(0)?;
            f.sync_all()?;
            tracing::debug!(path = %self.path.display(), "webhook log truncated");
        }
        Ok(())
    }

    pub fn len(&self) -> u64 {
        self.file.lock().metadata().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_survive_reopen_and_a_torn_tail_is_dropped() {
        let path = std::env::temp_dir().join(format!("sop-wal-{}", rand::random::<u64>()));
        {
            let (wal, recs) = Wal::open(&path).unwrap();
            assert!(recs.is_empty());
            assert_eq!(wal.append(b"one", || 1).await.unwrap(), 1);
            wal.append(b"two", || 2).await.unwrap();
        }
        // A crash mid-write leaves half a record.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[3, 0, 0, 0, 0, 0, 0, 0, 9, 0]).unwrap();
        drop(f);
        let (wal, recs) = Wal::open(&path).unwrap();
        assert_eq!(recs, vec![(1, b"one".to_vec()), (2, b"two".to_vec())]);
        wal.append(b"three", || 3).await.unwrap();
        drop(wal);
        let (wal, recs) = Wal::open(&path).unwrap();
        assert_eq!(recs.len(), 3);
        wal.truncate_if(|| true).unwrap();
        assert!(!wal.is_empty());
        wal.truncate_if(|| false).unwrap();
        assert!(wal.is_empty());
        let _ = std::fs::remove_file(&path);
    }
}
