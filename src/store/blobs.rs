//! Attachment bytes waiting to be sent to Zalo, stored once each as a file named by its SHA-256
//! (issue 9): jobs refer to a blob by that name, so a retry rewrites a small record and the
//! sender streams the file instead of holding base64 in memory.

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

pub struct Blobs {
    dir: PathBuf,
    /// Bytes of every blob on disk: what the pending-attachment cap counts.
    bytes: AtomicU64,
}

impl Blobs {
    /// Opens (creating) the directory and drops leftovers of writes a crash interrupted.
    pub fn open(dir: &Path) -> Result<Blobs> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create attachment dir {}", dir.display()))?;
        let blobs = Blobs {
            dir: dir.to_path_buf(),
            bytes: AtomicU64::new(0),
        };
        let mut total = 0;
        for (name, size) in blobs.list_files()? {
            if name.ends_with(".tmp") {
                let _ = std::fs::remove_file(dir.join(&name));
            } else {
                total += size;
            }
        }
        blobs.bytes.store(total, Ordering::Relaxed);
        Ok(blobs)
    }

    fn list_files(&self) -> Result<Vec<(String, u64)>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let size = entry.metadata()?.len();
            out.push((entry.file_name().to_string_lossy().into_owned(), size));
        }
        Ok(out)
    }

    /// The stored blobs' names.
    pub fn names(&self) -> Result<Vec<String>> {
        Ok(self.list_files()?.into_iter().map(|(n, _)| n).collect())
    }

    pub fn total_bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Stores `bytes` durably (written, synced, renamed into place, directory synced) unless the
    /// same content is already there; returns its name.
    pub fn put(&self, bytes: &[u8]) -> Result<String> {
        let name = hex::encode(Sha256::digest(bytes));
        let path = self.path(&name);
        if path.exists() {
            return Ok(name);
        }
        let tmp = self
            .dir
            .join(format!("{name}.{}.tmp", rand::random::<u32>()));
        let written = (|| -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(&self.dir)?.sync_all()
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(anyhow::Error::new(e).context("cannot store the attachment"));
        }
        self.bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(name)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn remove(&self, name: &str) {
        let path = self.path(name);
        if let Ok(meta) = std::fs::metadata(&path) {
            if std::fs::remove_file(&path).is_ok() {
                self.bytes.fetch_sub(meta.len(), Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_content_is_stored_once_and_counted_once() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::open(dir.path()).unwrap();
        let a = blobs.put(b"hello").unwrap();
        let b = blobs.put(b"hello").unwrap();
        assert_eq!(a, b);
        assert_eq!(blobs.total_bytes(), 5);
        assert_eq!(std::fs::read(blobs.path(&a)).unwrap(), b"hello");
        std::fs::write(dir.path().join("x.1.tmp"), b"partial").unwrap();
        let reopened = Blobs::open(dir.path()).unwrap();
        assert_eq!(reopened.total_bytes(), 5);
        assert_eq!(reopened.names().unwrap(), vec![a.clone()]);
        reopened.remove(&a);
        assert_eq!(reopened.total_bytes(), 0);
    }
}
