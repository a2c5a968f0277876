//! History sync on connect: recent threads (`listrecentchat`) and their messages
//! (`conversation`), paged by 10 as Zalo requires, stored as `history` conversations — no unread,
//! no bell — then the page's rule's old-conversation handling applies.
//!
//! Customers keep writing while the sync reads, and their webhooks race it: a message sent since
//! the page connected is stored as live (routed, unread) whichever of the two stores it first.

use super::ZaloHub;
use crate::model::*;
use crate::server::hub::Inbound;
use crate::zalo::events::id_str;
use serde_json::Value;
use std::sync::Arc;

const PAGE: u32 = 10;
const MAX_THREADS: u32 = 2000;
const MAX_MESSAGES_PER_THREAD: u32 = 500;

pub async fn sync_history(z: Arc<ZaloHub>, conn_id: ConnectionId) {
    sync_labels(&z, &conn_id).await;
    match sync(&z, &conn_id).await {
        Ok((threads, messages)) => tracing::info!(conn_id, threads, messages, "history synced"),
        Err(e) => tracing::warn!(conn_id, "history sync stopped: {e}"),
    }
    if let Err(e) = z.hub.redistribute_old(&conn_id).await {
        tracing::warn!(conn_id, "old-conversation handling failed: {e}");
    }
}

/// The page's tags become its labels (those of each customer come with their profile).
async fn sync_labels(z: &ZaloHub, conn_id: &str) {
    let names = z
        .with_token(conn_id, |t| {
            let client = z.client.clone();
            async move { client.tags_of_oa(&t).await }
        })
        .await;
    let stored = match names {
        Ok(names) => z.hub.page_labels_from_zalo(conn_id, names).await,
        Err(e) => {
            tracing::warn!(conn_id, "the page's tags not read: {e}");
            return;
        }
    };
    if let Err(e) = stored {
        tracing::warn!(conn_id, "the page's tags not stored: {e}");
    }
}

/// The customer's side of a row: `src` 1 = from the customer.
fn customer_of(row: &Value) -> Option<(String, String)> {
    let from_customer = row["src"].as_i64() == Some(1) || row["src"].as_str() == Some("1");
    let (id, name) = if from_customer {
        ("from_id", "from_display_name")
    } else {
        ("to_id", "to_display_name")
    };
    Some((
        id_str(&row[id])?,
        row[name].as_str().unwrap_or_default().to_string(),
    ))
}

async fn sync(z: &ZaloHub, conn_id: &str) -> Result<(usize, usize), crate::zalo::ZaloError> {
    let connected_at = z.connection(conn_id).await?.last_connected_at;
    let mut users: Vec<(String, String)> = Vec::new();
    let mut offset = 0;
    while offset < MAX_THREADS {
        let rows = z
            .with_token(conn_id, |t| {
                let client = z.client.clone();
                async move { client.list_recent_chat(&t, offset, PAGE).await }
            })
            .await?;
        if rows.is_empty() {
            break; // short pages are not the end (reference §4.8); an empty one is
        }
        for row in &rows {
            if let Some(u) = customer_of(row) {
                if !users.iter().any(|(id, _)| id == &u.0) {
                    users.push(u);
                }
            }
        }
        offset += PAGE;
    }
    let mut messages = 0;
    for (user_id, name) in &users {
        let mut offset = 0;
        while offset < MAX_MESSAGES_PER_THREAD {
            let rows = z
                .with_token(conn_id, |t| {
                    let (client, user_id) = (z.client.clone(), user_id.clone());
                    async move { client.conversation(&t, &user_id, offset, PAGE).await }
                })
                .await?;
            if rows.is_empty() {
                break;
            }
            for row in rows {
                let Some(inbound) = history_row(conn_id, user_id, name, &row, connected_at) else {
                    continue;
                };
                if let Err(e) = z.hub.ingest(inbound).await {
                    tracing::warn!("history message not stored: {e}");
                } else {
                    messages += 1;
                }
            }
            offset += PAGE;
        }
        // One thread after another, not all at once: Zalo limits calls per OA.
        let stale = z.hub.read(|st| {
            let c = st.customer_conversation(conn_id, user_id)?;
            c.customer.profile_stale(now_ms()).then(|| c.id.clone())
        });
        if let Some(conv_id) = stale.await {
            z.read_profile(&conv_id, conn_id, user_id).await;
        }
    }
    Ok((users.len(), messages))
}

/// One row of Zalo's `conversation` answer as a message to store; `None` without a message id.
/// Rows from `connected_at` on are live messages. Zalo's answers are untrusted input: any shape
/// is tolerated (fuzzed in tests/fuzz.rs).
pub fn history_row(
    conn_id: &str,
    user_id: &str,
    name: &str,
    row: &Value,
    connected_at: Ms,
) -> Option<Inbound> {
    let from_customer = row["src"].as_i64() == Some(1) || row["src"].as_str() == Some("1");
    let msg_id = id_str(&row["message_id"])?;
    let kind = MessageKind::from_zalo(row["type"].as_str().unwrap_or("text"));
    let url = row["url"]
        .as_str()
        .or(row["thumb"].as_str())
        .unwrap_or_default()
        .to_string();
    let at = row["time"]
        .as_i64()
        .or_else(|| id_str(&row["time"]).and_then(|s| s.parse().ok()))
        .unwrap_or(0);
    Some(Inbound {
        connection_id: conn_id.to_string(),
        customer_user_id: user_id.to_string(),
        direction: if from_customer {
            Direction::Inbound
        } else {
            Direction::Outbound
        },
        sender_name: if from_customer {
            name.to_string()
        } else {
            String::new()
        },
        zalo_msg_id: Some(msg_id),
        kind,
        text: row["message"].as_str().unwrap_or_default().to_string(),
        attachments: if url.is_empty() {
            vec![]
        } else {
            vec![Attachment {
                kind: kind.as_str().into(),
                url,
                name: String::new(),
                size: None,
            }]
        },
        quote_msg_id: None,
        at,
        origin: if at >= connected_at {
            Origin::Live
        } else {
            Origin::History
        },
        raw: None,
    })
}
