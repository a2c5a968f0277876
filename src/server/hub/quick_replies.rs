//! Quick replies ("Tin nhắn mẫu"): shared ones (admins write them) and each agent's own, pushed
//! live to whoever may use them. They live in the database only (not in the hub's memory): they
//! are read when a console starts and changed rarely.

use super::*;
use crate::model::text::{char_count, nfc};
use crate::model::{Attachment, QuickReply, QUICK_REPLY_VARIABLES};
use crate::wire::{OutboundAttachment, OutboundKind, QuickReplyInput};

impl Hub {
    pub async fn quick_replies(&self, who: &Account) -> HubResult<Vec<QuickReply>> {
        self.db
            .quick_replies_for(&who.id)
            .await
            .map_err(store_error)
    }

    pub async fn create_quick_reply(
        &self,
        who: &Account,
        mut input: QuickReplyInput,
    ) -> HubResult<QuickReply> {
        let id = format!("q{:016x}", rand::random::<u64>());
        let file = new_file(&mut input)?;
        self.write(async |_, tx| save(tx, who, id, input, file, None).await)
            .await
    }

    pub async fn update_quick_reply(
        &self,
        who: &Account,
        id: &str,
        mut input: QuickReplyInput,
    ) -> HubResult<QuickReply> {
        let file = new_file(&mut input)?;
        self.write(async |_, tx| {
            let current = editable(tx, who, id).await?;
            if current.owner.is_none() != input.shared {
                return Err(HubError::Invalid(
                    "a quick reply stays shared or personal; create another instead".into(),
                ));
            }
            save(tx, who, id.to_string(), input, file, current.attachment).await
        })
        .await
    }

    /// A quick reply's image or file, as a reply sends it, for who may use the quick reply.
    pub async fn quick_reply_attachment(
        &self,
        who: &Account,
        id: &str,
    ) -> HubResult<OutboundAttachment> {
        use base64::Engine;
        let (kind, name, bytes) = self
            .db
            .quick_reply_file(id, &who.id)
            .await
            .map_err(store_error)?
            .ok_or_else(|| HubError::NotFound(format!("quick reply {id} has no attachment")))?;
        Ok(OutboundAttachment {
            kind: OutboundKind::parse(&kind).unwrap_or(OutboundKind::File),
            name,
            content_base64: base64::engine::general_purpose::STANDARD.encode(bytes),
        })
    }

    pub async fn delete_quick_reply(&self, who: &Account, id: &str) -> HubResult<()> {
        self.write(async |_, tx| {
            let current = editable(tx, who, id).await?;
            tx.db.delete_quick_reply(id).await.map_err(store_error)?;
            tx.emit(
                EventBody::QuickReplyRemoved { id: id.to_string() },
                audience(&current),
            );
            Ok(())
        })
        .await
    }
}

/// Who is told about a quick reply: everyone for a shared one, else its owner.
fn audience(q: &QuickReply) -> Vec<AccountId> {
    vec![q.owner.clone().unwrap_or_else(|| EVERYONE.to_string())]
}

/// The quick reply, if the caller may change it: their own, or a shared one for an admin.
async fn editable(tx: &mut Tx, who: &Account, id: &str) -> HubResult<QuickReply> {
    let found = tx.db.quick_reply(id).await.map_err(store_error)?;
    match found {
        Some(q) if q.owner.as_deref() == Some(who.id.as_str()) => Ok(q),
        Some(q) if q.owner.is_none() && who.is_admin() => Ok(q),
        Some(q) if q.owner.is_none() => Err(HubError::Forbidden(
            "shared quick replies are changed by admins".into(),
        )),
        // Someone else's own: as if it did not exist.
        _ => Err(HubError::NotFound(format!("quick reply {id} not found"))),
    }
}

/// What the input says of the file: nothing (keep it), none, or a new one, decoded and checked
/// (before the write, which holds the database's write lock).
type NewFile = Option<Option<(Attachment, Vec<u8>)>>;

fn new_file(input: &mut QuickReplyInput) -> HubResult<NewFile> {
    Ok(match input.attachment.take() {
        None => None,
        Some(None) => Some(None),
        Some(Some(a)) => {
            let (kind, name, bytes) = super::conversations::attachment_bytes(a)?;
            let meta = Attachment {
                kind: kind.as_str().to_string(),
                url: String::new(),
                name,
                size: Some(bytes.len() as u64),
            };
            Some(Some((meta, bytes)))
        }
    })
}

/// Checks and stores a quick reply; `kept` is the file it has now, which stays unless the input
/// names another or none.
async fn save(
    tx: &mut Tx,
    who: &Account,
    id: String,
    input: QuickReplyInput,
    new_file: NewFile,
    kept: Option<Attachment>,
) -> HubResult<QuickReply> {
    if input.shared && !who.is_admin() {
        return Err(HubError::Forbidden(
            "only admins share quick replies; make it your own instead".into(),
        ));
    }
    let shortcut = input.shortcut.trim().trim_start_matches('/').to_string();
    if shortcut.is_empty()
        || char_count(&shortcut) > 32
        || !shortcut
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_'))
    {
        return Err(HubError::Invalid(
            "shortcut: 1-32 letters, digits, - or _ (typed after /)".into(),
        ));
    }
    let title = nfc(input.title.trim());
    if title.is_empty() || char_count(&title) > 100 {
        return Err(HubError::Invalid("title: 1-100 characters".into()));
    }
    let (attachment, file) = match new_file {
        None => (kept, None),
        Some(None) => (None, None),
        Some(Some((meta, bytes))) => (Some(meta), Some(bytes)),
    };
    let text = nfc(input.text.trim());
    if (text.is_empty() && attachment.is_none()) || char_count(&text) > MAX_TEXT_CHARS {
        return Err(HubError::Invalid(format!(
            "text: 1-{MAX_TEXT_CHARS} characters (what Zalo accepts), or none with an attachment"
        )));
    }
    let unknown: Vec<&str> = text
        .match_indices('{')
        .filter_map(|(i, _)| text[i..].find('}').map(|end| &text[i..=i + end]))
        .filter(|v| !QUICK_REPLY_VARIABLES.contains(v))
        .collect();
    if !unknown.is_empty() {
        return Err(HubError::Invalid(format!(
            "unknown variables {}; the known ones are {}",
            unknown.join(", "),
            QUICK_REPLY_VARIABLES.join(", ")
        )));
    }
    let q = QuickReply {
        id,
        owner: (!input.shared).then(|| who.id.clone()),
        shortcut,
        title,
        text,
        attachment,
        updated_at: now_ms(),
    };
    tx.db
        .save_quick_reply(&q, file.as_deref())
        .await
        .map_err(store_error)?;
    tx.emit(
        EventBody::QuickReply {
            quick_reply: q.clone(),
        },
        audience(&q),
    );
    Ok(q)
}
