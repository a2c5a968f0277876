//! Private notes ("Ghi chú nội bộ"): staff-only entries in a thread, messages of kind `note` that
//! no path sends to Zalo. `@username` mentions a colleague who may see the conversation; their
//! mentions are listed newest first ("Nhắc đến tôi").

use super::conversations::{colleagues_where, load_message, put_message, visible_conversation};
use super::*;
use crate::model::text::{char_count, mentioned_handles, nfc};
use crate::wire::{self, NoteInput, SearchHit};

/// Notes are for colleagues, not Zalo, but stay readable in a thread.
const MAX_NOTE_CHARS: usize = 4_000;

impl Hub {
    /// Adds a note to a conversation the caller may see; 201 with it, or the one already added
    /// with this client key.
    pub async fn add_note(
        &self,
        who: &Account,
        conv_id: &str,
        input: NoteInput,
    ) -> HubResult<(Message, bool)> {
        self.write(async |st, tx| add_note(st, tx, who, conv_id, input).await)
            .await
    }

    /// Everyone else who may see the conversation: whom a note there can mention.
    pub async fn colleagues(
        &self,
        who: &Account,
        conv_id: &str,
    ) -> HubResult<Vec<wire::TransferTarget>> {
        self.read(|st| {
            let conv = visible_conversation(st, who, conv_id)?;
            Ok(colleagues_where(st, |a| {
                a.id != who.id && st.may_see_conversation(a, &conv)
            }))
        })
        .await
    }

    /// The notes that mention the caller, newest first, in the conversations they may still see.
    pub async fn mentions(
        &self,
        who: &Account,
        cursor: Option<&str>,
        limit: usize,
    ) -> HubResult<wire::Page<SearchHit>> {
        let limit = limit.clamp(1, 100);
        let before = cursor
            .map(|c| {
                c.strip_prefix('m')
                    .and_then(|n| n.parse::<i64>().ok())
                    .ok_or_else(|| HubError::Invalid(format!("bad cursor {c:?}")))
            })
            .transpose()?;
        let rows = self
            .db
            .mentions_of(&who.id, before, limit as i64 + 1)
            .await
            .map_err(store_error)?;
        let more = rows.len() > limit;
        let last = rows[..rows.len().min(limit)].last().map(|(seq, _)| *seq);
        let items = self
            .read(|st| {
                rows.into_iter()
                    .take(limit)
                    .filter_map(|(_, m)| {
                        let c = st.conversations.get(&m.conversation_id)?;
                        st.may_see_conversation(who, c).then(|| SearchHit {
                            conversation: c.clone(),
                            message: Some(m),
                        })
                    })
                    .collect()
            })
            .await;
        Ok(wire::Page {
            items,
            next_cursor: if more {
                last.map(|s| format!("m{s}"))
            } else {
                None
            },
        })
    }
}

async fn add_note(
    st: &mut State,
    tx: &mut Tx,
    who: &Account,
    conv_id: &str,
    input: NoteInput,
) -> HubResult<(Message, bool)> {
    let key = input.client_key.trim();
    if key.is_empty() || key.len() > 128 {
        return Err(HubError::Invalid(
            "client_key must be 1-128 characters".into(),
        ));
    }
    let conv = visible_conversation(st, who, conv_id)?;
    let used = tx.db.message_id_by_client_key(&who.id, conv_id, key).await;
    if let Some(id) = used.map_err(store_error)? {
        return Ok((load_message(tx, &id).await?, false));
    }
    let text = nfc(input.text.trim());
    if text.is_empty() {
        return Err(HubError::Invalid("a note needs text".into()));
    }
    let chars = char_count(&text);
    if chars > MAX_NOTE_CHARS {
        return Err(HubError::Invalid(format!(
            "the note is {chars} characters; at most {MAX_NOTE_CHARS}"
        )));
    }
    // Every mention is someone who may read the note; anyone else is named in the refusal.
    let mut mentioned = Vec::new();
    let mut refused = Vec::new();
    for handle in mentioned_handles(&text) {
        match st
            .accounts
            .values()
            .find(|a| a.username.to_lowercase() == handle)
        {
            Some(a) if st.may_see_conversation(a, &conv) => mentioned.push(a.id.clone()),
            _ => refused.push(format!("@{handle}")),
        }
    }
    if !refused.is_empty() {
        return Err(HubError::Invalid(format!(
            "{} không xem được hội thoại này / cannot see this conversation (transfer it, or add \
             them to the page's rule, first)",
            refused.join(", ")
        )));
    }
    let id = st.next_id('m');
    let msg = Message {
        id: id.clone(),
        conversation_id: conv.id.clone(),
        direction: Direction::Outbound,
        sender: who.id.clone(),
        sender_name: who.name.clone(),
        kind: MessageKind::Note,
        text,
        attachments: vec![],
        zalo_msg_id: None,
        quote_msg_id: None,
        client_key: Some(key.to_string()),
        delivery: None,
        error_code: None,
        error_reason: None,
        created_at: now_ms(),
        raw: None,
    };
    put_message(st, tx, &msg);
    for account in mentioned {
        tx.mentions.push((account, id.clone()));
    }
    Ok((msg, true))
}
