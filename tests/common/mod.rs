//! Shared helpers for the integration tests: a real hub on a loopback port over a real sled store.
#![allow(dead_code)]

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sop_console::config::Config;
use sop_console::model::*;
use sop_console::server::hub::{Hub, Inbound, Ingested, OaInfo};
use sop_console::server::{self, Running};
use sop_console::store::SledStore;
use std::path::PathBuf;
use std::sync::Arc;

pub struct TestHub {
    pub running: Option<Running>,
    pub hub: Arc<Hub>,
    pub base: String,
    pub dir: PathBuf,
    pub http: reqwest::Client,
    pub admin: Account,
    pub admin_token: String,
}

pub fn temp_dir(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("sop-{tag}-{}", rand::random::<u64>()))
}

pub async fn start_hub() -> TestHub {
    start_hub_with(Config::default(), 100_000).await
}

pub async fn start_hub_with(mut config: Config, retention: u64) -> TestHub {
    let dir = temp_dir("it");
    config.server.event_retention = retention;
    let hub = Hub::open(Arc::new(SledStore::open(&dir).unwrap()), retention).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let running = server::start(config, hub.clone(), listener).await.unwrap();
    let base = format!("http://{}", running.addr);
    let (admin, admin_token) = hub
        .create_account(sop_console::wire::NewAccount {
            email: "admin@sop.vn".into(),
            username: "CuongLM".into(),
            name: "Cuong Le Manh".into(),
            role: Role::Admin,
        })
        .await
        .unwrap();
    TestHub {
        running: Some(running),
        hub,
        base,
        dir,
        http: reqwest::Client::new(),
        admin,
        admin_token,
    }
}

impl TestHub {
    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    /// Any request; returns the status and the JSON body (Null when empty or not JSON).
    pub async fn call(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let bytes = resp.bytes().await.unwrap_or_default();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, Some(token), None).await
    }
    pub async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    /// Creates an account through the API; returns it with its token.
    pub async fn account(&self, username: &str, role: &str) -> (Account, String) {
        let (status, body) = self
            .post(
                "/api/v1/accounts",
                &self.admin_token,
                json!({"email": format!("{}@sop.vn", username.to_lowercase()), "username": username, "name": username, "role": role}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        (serde_json::from_value(body["account"].clone()).unwrap(), body["token"].as_str().unwrap().to_string())
    }

    /// A connected page (the OAuth flow is exercised by the Zalo tests).
    pub async fn page(&self, oa_id: &str) -> Connection {
        self.hub
            .upsert_connection(
                OaInfo { oa_id: oa_id.into(), name: format!("OA {oa_id}"), ..Default::default() },
                &self.admin.id,
                TokenPair::default(),
            )
            .await
            .unwrap()
            .0
    }

    pub async fn rule(&self, name: &str, pages: &[&Connection], members: &[&str], method: &str) -> Rule {
        let (status, body) = self
            .post(
                "/api/v1/rules",
                &self.admin_token,
                json!({"name": name, "sources": pages.iter().map(|p| p.id.clone()).collect::<Vec<_>>(),
                       "members": members, "method": method, "old_conversations": "none"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        serde_json::from_value(body).unwrap()
    }

    /// A customer message arriving on a page.
    pub async fn inbound(&self, page: &Connection, user: &str, msg_id: &str) -> Conversation {
        match self
            .hub
            .ingest(Inbound {
                connection_id: page.id.clone(),
                customer_user_id: user.into(),
                direction: Direction::Inbound,
                sender_name: String::new(),
                zalo_msg_id: Some(msg_id.into()),
                kind: MessageKind::Text,
                text: format!("Chào shop, {msg_id}"),
                attachments: vec![],
                quote_msg_id: None,
                at: now_ms(),
                origin: Origin::Live,
                raw: None,
            })
            .await
            .unwrap()
        {
            Ingested::New { conversation, .. } => *conversation,
            Ingested::Duplicate { .. } => panic!("duplicate"),
        }
    }

    pub fn ws_url(&self, since: Option<u64>) -> String {
        let base = self.base.replacen("http://", "ws://", 1);
        match since {
            Some(s) => format!("{base}/api/v1/stream?since={s}"),
            None => format!("{base}/api/v1/stream"),
        }
    }
}

pub mod ws {
    use futures_util::{SinkExt, StreamExt};
    use sop_console::wire::Frame;
    use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};

    pub type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

    pub async fn connect(url: &str, token: &str) -> Socket {
        let mut req = url.into_client_request().unwrap();
        req.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
        tokio_tungstenite::connect_async(req).await.expect("websocket connect").0
    }

    /// The next frame, or None when the socket closed or nothing arrived within `wait`.
    pub async fn next(sock: &mut Socket, wait: std::time::Duration) -> Option<Frame> {
        loop {
            match tokio::time::timeout(wait, sock.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => return Some(serde_json::from_str(&t).expect("frame json")),
                Ok(Some(Ok(Message::Ping(p)))) => {
                    let _ = sock.send(Message::Pong(p)).await;
                }
                Ok(Some(Ok(_))) => {}
                _ => return None,
            }
        }
    }
}
