//! The live stream: `GET /api/v1/stream?since=SEQ` (websocket). Replays the durable log after
//! `since`, filtered to what the account may see, then goes live; pings keep it alive.

use super::extract::{bearer_token, ApiQuery, Caller};
use super::hub::{Hub, StoredEvent, EVERYONE};
use super::AppState;
use crate::model::Account;
use crate::wire::Frame;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    since: Option<u64>,
}

pub async fn stream(
    State(app): State<AppState>,
    caller: Caller,
    headers: axum::http::HeaderMap,
    ApiQuery(q): ApiQuery<StreamQuery>,
    ws: WebSocketUpgrade,
) -> Response {
    let token = bearer_token(&headers).unwrap_or_default().to_string();
    // Consoles send only pings, pongs and close frames: anything bigger is refused, and a client
    // that does not read what it is sent (pongs to a ping flood included) is cut off once its
    // unsent frames pass the bound, instead of growing the hub's memory.
    let ws = ws
        .max_frame_size(MAX_INCOMING_BYTES)
        .max_message_size(MAX_INCOMING_BYTES)
        .write_buffer_size(64 * 1024)
        .max_write_buffer_size(MAX_UNSENT_BYTES);
    ws.on_upgrade(move |socket| async move {
        let hub = app.hub.clone();
        hub.metrics.stream_clients.inc();
        let mut shutdown = app.shutdown.clone();
        let who = Who {
            account: caller.0.clone(),
            token,
        };
        tokio::select! {
            r = run(&hub, &who, q.since, socket) => {
                if let Err(e) = r { tracing::debug!(account = %who.account.username, "stream ended: {e}"); }
            }
            _ = shutdown.wait_for(|s| *s) => {}
        }
        hub.metrics.stream_clients.dec();
    })
}

pub fn may_receive(who: &Account, e: &StoredEvent) -> bool {
    who.is_admin() || e.audience.iter().any(|a| a == &who.id || a == EVERYONE)
}

const PING_EVERY: Duration = Duration::from_secs(20);
/// The largest frame or message a console may send.
const MAX_INCOMING_BYTES: usize = 16 * 1024;
/// How much may wait unsent to one client before it is disconnected (it resumes with `since`).
const MAX_UNSENT_BYTES: usize = 4 * 1024 * 1024;
const REPLAY_CHUNK: usize = 1000;

struct Conn {
    socket: WebSocket,
}

impl Conn {
    async fn send(&mut self, frame: &Frame) -> anyhow::Result<()> {
        let text = serde_json::to_string(frame)?;
        self.socket.send(Message::Text(text.into())).await?;
        Ok(())
    }

    async fn send_event(&mut self, e: &StoredEvent) -> anyhow::Result<()> {
        self.socket
            .send(Message::Text(e.frame_json().into()))
            .await?;
        Ok(())
    }

    /// Sends the stored events in `(after, upto]` the account may see; returns the last seq covered.
    /// The log must hold every one of them: when one is missing (trimmed meanwhile, or a record
    /// that does not read back) the client is told to re-sync instead of being handed a gap.
    async fn replay(
        &mut self,
        hub: &Hub,
        who: &Account,
        mut after: u64,
        upto: u64,
    ) -> anyhow::Result<u64> {
        while after < upto {
            let chunk = hub.read_events(after, upto, REPLAY_CHUNK).await?;
            for e in &chunk {
                if e.event.seq != after + 1 {
                    break;
                }
                if may_receive(who, e) {
                    self.send_event(e).await?;
                }
                after = e.event.seq;
            }
            if after < upto && chunk.last().is_none_or(|e| e.event.seq != after) {
                tracing::info!(account = %who.username, missing = after + 1, "replay gap: resync");
                self.send(&Frame::Resync {
                    oldest: hub.oldest_seq().await?,
                    head: upto,
                })
                .await?;
                return Ok(upto);
            }
        }
        Ok(after)
    }
}

/// The client of a stream: its account, and the token it connected with.
struct Who {
    account: Account,
    token: String,
}

/// The close code that tells a console its token no longer works (it asks for a new one).
pub const CLOSE_TOKEN_REVOKED: u16 = 4001;

async fn run(hub: &Hub, client: &Who, since: Option<u64>, socket: WebSocket) -> anyhow::Result<()> {
    let who = &client.account;
    let mut credentials = hub.credentials_changed.subscribe();
    // Subscribe before reading the head: whatever is published after this point arrives live.
    let mut live = hub.subscribe();
    let head = hub.published_seq();
    let mut conn = Conn { socket };
    conn.send(&Frame::Hello {
        account_id: who.id.clone(),
        head,
    })
    .await?;

    let oldest = hub.oldest_seq().await?;
    let mut last = match since {
        // Ahead of this hub: the client saw events another hub committed that this one has not
        // read from the log yet (it follows it). They come live once it has, the ones the client
        // has skipped; only a client ahead of the log itself (another database) starts over.
        Some(s) if s > head && s as i64 <= hub.db().event_head().await? => s,
        Some(s) if s > head || s + 1 < oldest => {
            conn.send(&Frame::Resync { oldest, head }).await?;
            head
        }
        Some(s) => conn.replay(hub, who, s, head).await?,
        None => head,
    };
    conn.send(&Frame::Live { seq: last }).await?;

    let mut ping = tokio::time::interval(PING_EVERY);
    // After a stall (a client that stopped reading, whose sends blocked) the next ping comes a
    // full period later: the default burst of missed ticks would send a ping and give up on the
    // pong at once, closing a stream that just caught up.
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    let mut awaiting_pong = false;
    loop {
        tokio::select! {
            received = live.recv() => match received {
                Ok(e) => {
                    if e.event.seq <= last { continue; }
                    if e.event.seq > last + 1 {
                        // Cannot happen while subscribed, but never skip: fill from the log.
                        conn.replay(hub, who, last, e.event.seq - 1).await?;
                    }
                    if may_receive(who, &e) {
                        conn.send_event(&e).await?;
                    }
                    last = e.event.seq;
                }
                Err(RecvError::Lagged(_)) => {
                    let upto = hub.published_seq();
                    last = conn.replay(hub, who, last, upto).await?;
                }
                Err(RecvError::Closed) => return Ok(()),
            },
            incoming = conn.socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None => return Ok(()),
                Some(Ok(Message::Pong(_))) => awaiting_pong = false,
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
            },
            changed = credentials.recv() => {
                let mine = match changed {
                    Ok(id) => id == who.id,
                    Err(_) => true, // lagged: check anyway
                };
                if mine && hub.authenticate(&client.token).await?.is_none() {
                    let frame = axum::extract::ws::CloseFrame {
                        code: CLOSE_TOKEN_REVOKED,
                        reason: "token revoked".into(),
                    };
                    let _ = conn.socket.send(Message::Close(Some(frame))).await;
                    return Ok(());
                }
            }
            _ = ping.tick() => {
                if awaiting_pong {
                    anyhow::bail!("no pong within {PING_EVERY:?}");
                }
                awaiting_pong = true;
                conn.socket.send(Message::Ping(Vec::new().into())).await?;
            }
        }
    }
}
