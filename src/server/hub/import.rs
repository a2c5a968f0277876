//! `sop admin import --from-sled DIR`: a round-1 hub data dir (sled, keys as round 1 wrote them)
//! copied into the SQL database in one transaction, once.
//!
//! Copied: accounts with their token hashes (tokens keep working), pages with their OAuth
//! tokens, rules, conversations with unread counts and history, messages, reply jobs (inline
//! attachments become blob files), consents in progress, ambiguous sends, dead-lettered and raw
//! webhooks, and the id counters. Not copied: the event log (consoles re-sync once) and the
//! lookup indexes round 1 kept beside the records (the tables have their own).

use super::conversations::{JobAttachment, OutboundJob};
use super::{DeadWebhook, PendingConsent};
use crate::model::*;
use crate::store::sql::Db;
use crate::store::{SledStore, Store, StoreExt};
use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;

/// What was imported, for the operator.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Imported {
    pub accounts: usize,
    pub pages: usize,
    pub rules: usize,
    pub conversations: usize,
    pub messages: usize,
    pub jobs: usize,
}

#[derive(Deserialize)]
struct Credential {
    account_id: AccountId,
    token_hash: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Counters {
    account: u64,
    connection: u64,
    rule: u64,
    conversation: u64,
    message: u64,
    seq: u64,
    webhook: u64,
}

/// A job as round 1 stored it: its attachment inline (base64) or, later, as a blob.
#[derive(Deserialize)]
struct StoredJob {
    message_id: MessageId,
    conversation_id: ConversationId,
    attempts: u32,
    next_attempt_at: Ms,
    attachment: Option<StoredAttachment>,
}

#[derive(Deserialize)]
struct StoredAttachment {
    kind: crate::wire::OutboundKind,
    name: String,
    #[serde(default)]
    blob: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    content_base64: Option<String>,
}

/// Copies the sled store of `sled_dir` into `db` (which must be empty); attachments go to
/// `data_dir/attachments`.
pub async fn import_sled(db: &Db, sled_dir: &Path, data_dir: &Path) -> Result<Imported> {
    if !sled_dir.join("sled").exists() {
        bail!(
            "{} has no round-1 store (no sled/ in it)",
            sled_dir.display()
        );
    }
    if db.has_data().await? {
        bail!("the database already has data: the import runs once, into an empty database");
    }
    let sled = SledStore::open(sled_dir)?;
    let blobs = crate::store::blobs::Blobs::open(&data_dir.join("attachments"))?;
    let mut n = Imported::default();
    let mut tx = db.begin_write().await?;

    let accounts: Vec<Account> = sled.scan_json("acct/")?;
    for a in &accounts {
        tx.save_account(a).await?;
    }
    for c in sled.scan_json::<Credential>("cred/")? {
        tx.save_token(&c.account_id, &c.token_hash, now_ms())
            .await?;
    }
    n.accounts = accounts.len();

    let pages: Vec<Connection> = sled.scan_json("conn/")?;
    for p in &pages {
        tx.save_connection(p).await?;
        tx.save_tokens(&p.id, &p.tokens, p.last_connected_at)
            .await?;
    }
    n.pages = pages.len();

    let rules: Vec<Rule> = sled.scan_json("rule/")?;
    for r in &rules {
        tx.save_rule(r).await?;
    }
    n.rules = rules.len();

    let conversations: Vec<Conversation> = sled.scan_json("conv/")?;
    let page_of: HashMap<&str, &str> = conversations
        .iter()
        .map(|c| (c.id.as_str(), c.connection_id.as_str()))
        .collect();
    let refs: Vec<&Conversation> = conversations.iter().collect();
    tx.save_conversations(&refs).await?;
    n.conversations = conversations.len();

    let messages: Vec<Message> = sled.scan_json("msg/")?;
    for chunk in messages.chunks(500) {
        let rows: Vec<(&str, &Message)> = chunk
            .iter()
            .filter_map(|m| page_of.get(m.conversation_id.as_str()).map(|p| (*p, m)))
            .collect();
        tx.save_messages(&rows).await?;
    }
    n.messages = messages.len();

    for job in sled.scan_json::<StoredJob>("job/")? {
        let attachment = match job.attachment {
            None => None,
            Some(a) => Some(match a.content_base64 {
                Some(inline) => {
                    use base64::Engine;
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(inline)
                        .context("an inline attachment is not base64")?;
                    JobAttachment {
                        kind: a.kind,
                        name: a.name,
                        size: bytes.len() as u64,
                        blob: blobs.put(&bytes)?,
                    }
                }
                None => {
                    // A blob of the round-1 dir moves along.
                    let from = sled_dir.join("attachments").join(&a.blob);
                    let blob = blobs.put(&std::fs::read(&from).with_context(|| {
                        format!("the attachment {} is missing", from.display())
                    })?)?;
                    JobAttachment {
                        kind: a.kind,
                        name: a.name,
                        size: a.size,
                        blob,
                    }
                }
            }),
        };
        let job = OutboundJob {
            message_id: job.message_id,
            conversation_id: job.conversation_id,
            attempts: job.attempts,
            next_attempt_at: job.next_attempt_at,
            attachment,
        };
        tx.save_job(&job.row()).await?;
        n.jobs += 1;
    }

    for (key, _) in sled.range(b"unk/", b"unk0", false, usize::MAX)? {
        let id = String::from_utf8_lossy(&key[4..]).into_owned();
        if let Some(m) = messages.iter().find(|m| m.id == id) {
            tx.set_unknown_send(m, true).await?;
        }
    }
    for (key, value) in sled.range(b"oauth/", b"oauth0", false, usize::MAX)? {
        let state = String::from_utf8_lossy(&key[6..]).into_owned();
        let c: PendingConsent = serde_json::from_slice(&value)?;
        tx.put_consent(&state, &c.verifier, &c.account_id, c.expires_at)
            .await?;
    }
    for d in sled.scan_json::<DeadWebhook>("dead/")? {
        tx.store_dead_webhook(d.n as i64, d.at, &d.error, &d.body)
            .await?;
    }
    let raw: Vec<(i64, Ms, String)> = sled
        .range(b"raw/", b"raw0", false, usize::MAX)?
        .into_iter()
        .filter_map(|(k, v)| {
            let n = String::from_utf8_lossy(&k[4..]).parse().ok()?;
            Some((n, 0, String::from_utf8_lossy(&v).into_owned()))
        })
        .collect();
    tx.store_raw_events(&raw).await?;

    let c: Counters = sled.get_json("meta/counters")?.unwrap_or_default();
    for (name, value) in [
        ("account", c.account),
        ("connection", c.connection),
        ("rule", c.rule),
        ("conversation", c.conversation),
        ("message", c.message),
        ("webhook", c.webhook),
        // Consoles resuming from a round-1 position find no events and re-sync.
        ("event", c.seq),
    ] {
        tx.set_counter(name, value as i64).await?;
    }
    tx.commit().await?;
    Ok(n)
}
