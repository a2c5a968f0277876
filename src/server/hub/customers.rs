//! The customer panel: who the customer is, what they shared with the page, what the staff noted
//! about them, and their conversations the caller may see.

use super::conversations::visible_conversation;
use super::*;
use crate::wire::{CustomerPanel, SharedInfo};

/// Notes and shared-info messages read for a panel.
const PANEL_MESSAGES: i64 = 100;

impl Hub {
    pub async fn customer_panel(&self, who: &Account, conv_id: &str) -> HubResult<CustomerPanel> {
        let (customer, conversations) = self
            .read(|st| {
                let conv = visible_conversation(st, who, conv_id)?;
                let mut theirs: Vec<Conversation> = st
                    .conversations
                    .values()
                    .filter(|c| {
                        c.customer.user_id == conv.customer.user_id
                            && st.may_see_conversation(who, c)
                    })
                    .cloned()
                    .collect();
                theirs
                    .sort_by(|a, b| (b.last_activity_at, &a.id).cmp(&(a.last_activity_at, &b.id)));
                Ok::<_, HubError>((conv.customer, theirs))
            })
            .await?;
        let ids: Vec<String> = conversations.iter().map(|c| c.id.clone()).collect();
        let messages = self
            .db
            .customer_messages(&ids, PANEL_MESSAGES)
            .await
            .map_err(store_error)?;
        let mut notes = Vec::new();
        let mut shared_info = Vec::new();
        for m in messages {
            if m.kind == MessageKind::Note {
                notes.push(m);
            } else if let Some(info) = m.raw.as_ref().and_then(shared_fields) {
                shared_info.push(SharedInfo {
                    at: m.created_at,
                    fields: info,
                });
            }
        }
        Ok(CustomerPanel {
            customer,
            shared_info,
            notes,
            conversations,
        })
    }
}

/// The fields of a stored `user_submit_info` event (`info` is an object of strings, tolerated
/// as numbers too).
fn shared_fields(raw: &serde_json::Value) -> Option<Vec<(String, String)>> {
    if raw["event_name"] != "user_submit_info" {
        return None;
    }
    let fields = raw["info"]
        .as_object()?
        .iter()
        .map(|(k, v)| {
            let v = v
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string());
            (k.clone(), v)
        })
        .collect();
    Some(fields)
}
