//! The console's network workers: REST calls for effects, and the live stream with resume from
//! the last seen sequence and reconnect with backoff and jitter. They only send messages to the
//! state owner; nothing here touches the screen.

use super::data::Snapshot;
use super::msg::{ApiCall, Link, Msg, NetEvent};
use crate::model::*;
use crate::wire::{self, ConnectionView, ErrorBody, Frame, OutboundAttachment, OutboundKind};
use base64::Engine;
use futures_util::StreamExt;
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};

#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    pub base: String,
    token: String,
}

#[derive(Debug)]
pub enum ApiErr {
    /// The hub could not be reached.
    Network(String),
    Status {
        status: u16,
        body: Option<ErrorBody>,
    },
}

impl ApiErr {
    /// Worth trying again later, so a reply stays in the outbox: no answer, the hub failed (5xx),
    /// too many attachments waiting for Zalo (429), or the body arrived too slowly (408).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ApiErr::Network(_)
                | ApiErr::Status {
                    status: 408 | 429 | 500..,
                    ..
                }
        )
    }
}

impl std::fmt::Display for ApiErr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiErr::Network(e) => write!(f, "hub unreachable: {e}"),
            ApiErr::Status {
                status,
                body: Some(b),
            } => write!(f, "{} ({status})", b.error.message),
            ApiErr::Status { status, body: None } => write!(f, "HTTP {status}"),
        }
    }
}

impl Api {
    pub fn new(base: &str, token: &str) -> Api {
        Api {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                .build()
                .expect("http client"),
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
        }
    }

    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<T, ApiErr> {
        let mut req = self
            .http
            .request(method, format!("{}/api/v1{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| ApiErr::Network(e.to_string()))?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| ApiErr::Network(e.to_string()))?;
        if !status.is_success() {
            return Err(ApiErr::Status {
                status: status.as_u16(),
                body: serde_json::from_slice(&bytes).ok(),
            });
        }
        let bytes = if bytes.is_empty() {
            &b"null"[..]
        } else {
            &bytes[..]
        };
        serde_json::from_slice(bytes)
            .map_err(|e| ApiErr::Network(format!("unexpected answer: {e}")))
    }

    pub async fn me(&self) -> Result<Account, ApiErr> {
        self.call(Method::GET, "/me", None).await
    }

    async fn all_conversations(&self, view: &str) -> Result<Vec<Conversation>, ApiErr> {
        let mut out = vec![];
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!(
                    "/conversations?view={view}&limit=500&cursor={}",
                    url::form_urlencoded::byte_serialize(c.as_bytes()).collect::<String>()
                ),
                None => format!("/conversations?view={view}&limit=500"),
            };
            let page: wire::Page<Conversation> = self.call(Method::GET, &path, None).await?;
            out.extend(page.items);
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => return Ok(out),
            }
        }
    }

    /// Everything the console shows, from the REST API.
    pub async fn snapshot(&self, head: u64) -> Result<Snapshot, ApiErr> {
        let me = self.me().await?;
        let mut conversations = self.all_conversations("mine").await?;
        conversations.extend(self.all_conversations("unclaimed").await?);
        if me.is_admin() {
            conversations = self.all_conversations("all").await?;
        }
        let connections: Vec<ConnectionView> = self.call(Method::GET, "/connections", None).await?;
        let rules: Vec<Rule> = self.call(Method::GET, "/rules", None).await?;
        let accounts: Vec<Account> = if me.is_admin() {
            self.call(Method::GET, "/accounts", None).await?
        } else {
            vec![me.clone()]
        };
        let dead_webhooks = if me.is_admin() {
            let dead: Vec<serde_json::Value> =
                self.call(Method::GET, "/webhooks/dead", None).await?;
            dead.len()
        } else {
            0
        };
        let quick_replies = self.call(Method::GET, "/quick-replies", None).await?;
        Ok(Snapshot {
            me: Some(me),
            conversations,
            connections,
            rules,
            accounts,
            head,
            dead_webhooks,
            quick_replies,
        })
    }

    /// Performs one effect and reports the outcome as messages.
    pub async fn execute(&self, call: ApiCall, tx: UnboundedSender<Msg>) {
        let send = |e: NetEvent| {
            let _ = tx.send(Msg::Net(e));
        };
        let fail = |e: ApiErr| NetEvent::Failed(e.to_string());
        match call {
            ApiCall::Claim(id) => match self
                .call::<Value>(Method::POST, &format!("/conversations/{id}/claim"), None)
                .await
            {
                Ok(_) => {}
                Err(ApiErr::Status { status: 409, body }) => send(NetEvent::ClaimLost {
                    winner: body
                        .and_then(|b| b.error.winner)
                        .map(|w| format!("{} ({})", w.name, w.username)),
                }),
                Err(e) => send(fail(e)),
            },
            ApiCall::Reply(item) => {
                let body = json!({"client_key": item.client_key, "text": item.text, "quote_msg_id": item.quote_msg_id, "attachment": item.attachment});
                match self
                    .call::<Message>(
                        Method::POST,
                        &format!("/conversations/{}/reply", item.conversation_id),
                        Some(body),
                    )
                    .await
                {
                    Ok(m) => send(NetEvent::ReplyAccepted {
                        client_key: item.client_key,
                        message: Box::new(m),
                    }),
                    Err(e) if e.is_transient() => send(NetEvent::ReplyDeferred {
                        client_key: item.client_key,
                        error: e.to_string(),
                    }),
                    Err(e) => send(NetEvent::ReplyRejected {
                        client_key: item.client_key,
                        error: e.to_string(),
                    }),
                }
            }
            ApiCall::Transfer { id, to } => {
                self.post_simple(
                    &format!("/conversations/{id}/transfer"),
                    Some(json!({"to": to})),
                    &send,
                )
                .await
            }
            ApiCall::Note {
                conversation_id,
                client_key,
                text,
            } => {
                let path = format!("/conversations/{conversation_id}/notes");
                let body = json!({"client_key": client_key, "text": text});
                match self.call(Method::POST, &path, Some(body)).await {
                    Ok(note) => send(NetEvent::NoteAdded(Box::new(note))),
                    Err(e) => send(fail(e)),
                }
            }
            ApiCall::CustomerPanel(id) => {
                let path = format!("/conversations/{id}/customer");
                match self.call(Method::GET, &path, None).await {
                    Ok(panel) => send(NetEvent::CustomerPanel {
                        conversation_id: id,
                        panel: Box::new(panel),
                    }),
                    Err(e) => send(fail(e)),
                }
            }
            ApiCall::Labels(id) => {
                let path = format!("/conversations/{id}/labels");
                match self.call(Method::GET, &path, None).await {
                    Ok(choices) => send(NetEvent::Labels {
                        conversation_id: id,
                        choices,
                    }),
                    Err(e) => send(fail(e)),
                }
            }
            // The conversation comes back changed through the stream.
            ApiCall::AttachLabel { id, name } => {
                let path = format!("/conversations/{id}/labels");
                self.post_simple(&path, Some(json!({ "name": name })), &send)
                    .await
            }
            ApiCall::DetachLabel { id, name } => {
                let path = format!("/conversations/{id}/labels/{}", path_segment(&name));
                if let Err(e) = self.call::<Value>(Method::DELETE, &path, None).await {
                    send(fail(e));
                }
            }
            ApiCall::Colleagues(id) => {
                let path = format!("/conversations/{id}/colleagues");
                match self.call(Method::GET, &path, None).await {
                    Ok(list) => send(NetEvent::Colleagues {
                        conversation_id: id,
                        list,
                    }),
                    Err(e) => send(fail(e)),
                }
            }
            ApiCall::Mentions { cursor } => {
                let mut path = String::from("/mentions?limit=30");
                if let Some(c) = &cursor {
                    path.push_str("&cursor=");
                    path.extend(url::form_urlencoded::byte_serialize(c.as_bytes()));
                }
                match self.call(Method::GET, &path, None).await {
                    Ok(page) => send(NetEvent::Mentions {
                        more: cursor.is_some(),
                        page,
                    }),
                    Err(e) => send(fail(e)),
                }
            }
            ApiCall::Search { query, cursor } => {
                let mut path = String::from("/search?limit=30&q=");
                path.extend(url::form_urlencoded::byte_serialize(query.as_bytes()));
                if let Some(c) = &cursor {
                    path.push_str("&cursor=");
                    path.extend(url::form_urlencoded::byte_serialize(c.as_bytes()));
                }
                match self.call(Method::GET, &path, None).await {
                    Ok(page) => send(NetEvent::SearchResults {
                        query,
                        more: cursor.is_some(),
                        page,
                    }),
                    Err(e) => send(fail(e)),
                }
            }
            ApiCall::TransferTargets(id) => {
                let path = format!("/conversations/{id}/transfer-targets");
                match self.call(Method::GET, &path, None).await {
                    Ok(targets) => send(NetEvent::TransferTargets {
                        conversation_id: id,
                        targets,
                    }),
                    Err(e) => send(fail(e)),
                }
            }
            ApiCall::Release(id) => {
                self.post_simple(&format!("/conversations/{id}/release"), None, &send)
                    .await
            }
            ApiCall::Done(id) => {
                self.post_simple(&format!("/conversations/{id}/done"), None, &send)
                    .await
            }
            ApiCall::Read(id) => {
                self.post_simple(&format!("/conversations/{id}/read"), None, &send)
                    .await
            }
            ApiCall::SetAvailability(a) => match self
                .call::<Value>(
                    Method::PUT,
                    "/me/availability",
                    Some(json!({"availability": a})),
                )
                .await
            {
                Ok(_) => {}
                Err(e) => send(fail(e)),
            },
            ApiCall::LoadMessages { id, before } => {
                let path = match &before {
                    Some(b) => format!("/conversations/{id}/messages?limit=50&before={b}"),
                    None => format!("/conversations/{id}/messages?limit=50"),
                };
                match self
                    .call::<wire::Page<Message>>(Method::GET, &path, None)
                    .await
                {
                    Ok(p) => send(NetEvent::Messages {
                        conversation_id: id,
                        items: p.items,
                        next_cursor: p.next_cursor,
                        older: before.is_some(),
                    }),
                    Err(e) => send(NetEvent::MessagesFailed {
                        conversation_id: id,
                        error: e.to_string(),
                    }),
                }
            }
            ApiCall::Authorize => match self
                .call::<wire::AuthorizeResponse>(
                    Method::POST,
                    "/connections/zalo/authorize",
                    Some(json!({})),
                )
                .await
            {
                Ok(a) => send(NetEvent::Authorize(a)),
                Err(e) => send(fail(e)),
            },
            ApiCall::SetChatMode { id, mode } => match self
                .call::<Value>(
                    Method::PUT,
                    &format!("/connections/{id}/chat-mode"),
                    Some(json!({"chat_mode": mode})),
                )
                .await
            {
                Ok(_) => {}
                Err(e) => send(fail(e)),
            },
            ApiCall::SaveRule { id, input } => {
                let body = serde_json::to_value(&input).unwrap_or_default();
                let r = match id {
                    Some(id) => {
                        self.call::<Value>(Method::PUT, &format!("/rules/{id}"), Some(body))
                            .await
                    }
                    None => self.call::<Value>(Method::POST, "/rules", Some(body)).await,
                };
                match r {
                    Ok(_) => send(NetEvent::Info(format!("✓ {}", input.name))),
                    Err(e) => send(fail(e)),
                }
            }
            ApiCall::DeleteConnection(id) => match self
                .call::<Value>(Method::DELETE, &format!("/connections/{id}"), None)
                .await
            {
                Ok(_) => {}
                Err(e) => send(fail(e)),
            },
            ApiCall::LoadAttachment { path, conversation } => match load_attachment(&path).await {
                Ok(attachment) => send(NetEvent::Attachment {
                    conversation,
                    attachment,
                }),
                Err(e) => send(NetEvent::Failed(e)),
            },
            ApiCall::QuickReplyFile { id, conversation } => match self
                .call::<OutboundAttachment>(
                    Method::GET,
                    &format!("/quick-replies/{id}/attachment"),
                    None,
                )
                .await
            {
                Ok(attachment) => send(NetEvent::Attachment {
                    conversation,
                    attachment,
                }),
                Err(e) => send(fail(e)),
            },
        }
    }

    async fn post_simple(&self, path: &str, body: Option<Value>, send: &impl Fn(NetEvent)) {
        if let Err(e) = self.call::<Value>(Method::POST, path, body).await {
            send(NetEvent::Failed(e.to_string()));
        }
    }
}

/// `text` as one percent-encoded path segment (label names have spaces and Vietnamese letters).
fn path_segment(text: &str) -> String {
    let mut url = url::Url::parse("http://hub/").expect("a valid URL");
    url.path_segments_mut()
        .expect("a base URL")
        .pop_if_empty()
        .push(text);
    url.path()[1..].to_string()
}

/// Reads a file to send: images (png/jpg ≤ 1 MB), gif and documents (≤ 5 MB), as Zalo allows.
pub async fn load_attachment(path: &str) -> Result<OutboundAttachment, String> {
    let path = std::path::Path::new(path);
    let bytes = tokio::fs::read(path)
        .await
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let ext = name.rsplit('.').next().unwrap_or("").to_lowercase();
    let kind = match ext.as_str() {
        "png" | "jpg" | "jpeg" => OutboundKind::Image,
        "gif" => OutboundKind::Gif,
        _ => OutboundKind::File,
    };
    let limit = kind.upload_limit();
    if bytes.len() > limit {
        return Err(format!(
            "{name}: {} KB > {} KB (Zalo)",
            bytes.len() / 1024,
            limit / 1024
        ));
    }
    Ok(OutboundAttachment {
        kind,
        name,
        content_base64: base64::engine::general_purpose::STANDARD.encode(bytes),
    })
}

/// Keeps the live stream up: resume from the last seen sequence, fetch a snapshot when there is
/// none or the hub says to re-sync, reconnect with exponential backoff and jitter.
pub async fn run_stream(api: Api, mut since: Option<u64>, tx: UnboundedSender<Msg>) {
    let mut failures: u32 = 0;
    loop {
        match stream_once(&api, &mut since, &tx, &mut failures).await {
            Ok(()) => {}
            Err(StreamEnd::Unauthorized) => {
                let _ = tx.send(Msg::Net(NetEvent::Link(Link::Offline)));
                let _ = tx.send(Msg::Net(NetEvent::Failed(
                    "the hub refused this token — run `sop login`".into(),
                )));
                return;
            }
            Err(StreamEnd::Other(e)) => tracing::info!("stream: {e}"),
        }
        if tx.is_closed() {
            return;
        }
        failures += 1;
        let base = 500u64.saturating_mul(1 << failures.min(6)).min(30_000);
        let jitter = rand::random::<u64>() % (base / 2 + 1);
        let delay = base / 2 + jitter;
        let _ = tx.send(Msg::Net(NetEvent::Link(Link::Reconnecting {
            retry_at: now_ms() + delay as i64,
        })));
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
}

/// The hub's close code for a stream whose token was revoked (server::stream).
const TOKEN_REVOKED: u16 = 4001;

enum StreamEnd {
    Unauthorized,
    Other(String),
}

async fn stream_once(
    api: &Api,
    since: &mut Option<u64>,
    tx: &UnboundedSender<Msg>,
    failures: &mut u32,
) -> Result<(), StreamEnd> {
    let ws_base = api
        .base
        .replacen("http://", "ws://", 1)
        .replacen("https://", "wss://", 1);
    let url = match since {
        Some(s) => format!("{ws_base}/api/v1/stream?since={s}"),
        None => format!("{ws_base}/api/v1/stream"),
    };
    let mut req = url
        .into_client_request()
        .map_err(|e| StreamEnd::Other(e.to_string()))?;
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {}", api.token)
            .parse()
            .map_err(|_| StreamEnd::Unauthorized)?,
    );
    let (mut ws, _) = match tokio_tungstenite::connect_async(req).await {
        Ok(x) => x,
        Err(tungstenite::Error::Http(resp)) if resp.status() == 401 => {
            return Err(StreamEnd::Unauthorized)
        }
        Err(e) => return Err(StreamEnd::Other(e.to_string())),
    };
    while let Some(msg) = ws.next().await {
        let text = match msg {
            Ok(tungstenite::Message::Text(t)) => t,
            // The hub closed it because this token was replaced: ask for a new one.
            Ok(tungstenite::Message::Close(Some(f))) if u16::from(f.code) == TOKEN_REVOKED => {
                return Err(StreamEnd::Unauthorized)
            }
            Ok(tungstenite::Message::Close(_)) => break,
            Ok(_) => continue,
            Err(e) => return Err(StreamEnd::Other(e.to_string())),
        };
        let frame: Frame =
            serde_json::from_str(&text).map_err(|e| StreamEnd::Other(format!("bad frame: {e}")))?;
        match frame {
            Frame::Hello { head, .. } => {
                if since.is_none() {
                    resync(api, head, since, tx).await?;
                }
            }
            Frame::Resync { head, .. } => resync(api, head, since, tx).await?,
            Frame::Event { event } => {
                *since = Some(event.seq);
                if tx.send(Msg::Net(NetEvent::Event(Box::new(event)))).is_err() {
                    return Ok(());
                }
            }
            Frame::Live { .. } => {
                *failures = 0;
                let _ = tx.send(Msg::Net(NetEvent::Link(Link::Connected)));
            }
        }
    }
    Err(StreamEnd::Other("the hub closed the stream".into()))
}

async fn resync(
    api: &Api,
    head: u64,
    since: &mut Option<u64>,
    tx: &UnboundedSender<Msg>,
) -> Result<(), StreamEnd> {
    let snap = api.snapshot(head).await.map_err(|e| match e {
        ApiErr::Status { status: 401, .. } => StreamEnd::Unauthorized,
        e => StreamEnd::Other(e.to_string()),
    })?;
    *since = Some(head);
    let _ = tx.send(Msg::Net(NetEvent::Snapshot(Box::new(snap))));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::ApiErr;

    #[test]
    fn replies_wait_in_the_outbox_only_for_what_may_pass() {
        let status = |status| ApiErr::Status { status, body: None };
        for e in [
            ApiErr::Network("reset".into()),
            status(503),
            status(507),
            status(429),
            status(408),
        ] {
            assert!(e.is_transient(), "{e}");
        }
        for code in [400, 403, 404, 409, 413, 422] {
            assert!(!status(code).is_transient(), "{code}");
        }
    }
}
