//! Shared helpers for the integration tests: a real hub on a loopback port over a real database
//! (SQLite in the test's data dir; PostgreSQL when `SOP_TEST_ENGINE=postgres`).
#![allow(dead_code)]

pub mod pg;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sop_console::config::Config;
use sop_console::model::*;
use sop_console::server::hub::{Hub, Inbound, Ingested, OaInfo};
use sop_console::server::{self, Running};
use sop_console::store::sql::Db;
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

/// A fresh database on each engine, as URLs: a SQLite file and a PostgreSQL database.
pub async fn databases() -> Vec<String> {
    vec![
        format!("sqlite://{}/sop.db", temp_dir("sql").display()),
        pg::database().await,
    ]
}

pub async fn start_hub() -> TestHub {
    start_hub_with(Config::default(), 100_000).await
}

pub async fn start_hub_with(config: Config, retention: u64) -> TestHub {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    start_hub_on(config, retention, listener, temp_dir("it")).await
}

pub async fn start_hub_on(
    config: Config,
    retention: u64,
    listener: tokio::net::TcpListener,
    dir: PathBuf,
) -> TestHub {
    let db = open_database(&dir).await;
    start_hub_over(config, retention, listener, dir, db).await
}

/// The database the suite runs on, chosen by `SOP_TEST_ENGINE` (`sqlite`, the default, or
/// `postgres`): SQLite in the data dir, or a fresh PostgreSQL database. The choice is remembered
/// in the data dir (`database-url`), so a restart on the same dir finds it again, and a test can
/// write that file to pick its database.
pub async fn database_url(dir: &std::path::Path) -> String {
    std::fs::create_dir_all(dir).unwrap();
    let remembered = dir.join("database-url");
    if let Ok(url) = std::fs::read_to_string(&remembered) {
        return url;
    }
    match std::env::var("SOP_TEST_ENGINE").as_deref() {
        Ok("postgres") => {
            let url = pg::database().await;
            std::fs::write(&remembered, &url).unwrap();
            url
        }
        Ok("sqlite") | Err(_) => format!("sqlite://{}/sop.db", dir.display()),
        Ok(other) => panic!("SOP_TEST_ENGINE={other}: use sqlite or postgres"),
    }
}

/// The test's database, migrated (as the hub opens it).
pub async fn open_database(dir: &std::path::Path) -> Arc<Db> {
    Arc::new(Db::open(&database_url(dir).await).await.unwrap())
}

/// `start_hub_on` over a given database.
pub async fn start_hub_over(
    mut config: Config,
    retention: u64,
    listener: tokio::net::TcpListener,
    dir: PathBuf,
    db: Arc<Db>,
) -> TestHub {
    config.server.event_retention = retention;
    let hub = Hub::open(db, &dir, retention).await.unwrap();
    let running = server::start(config, hub.clone(), listener).await.unwrap();
    let base = format!("http://{}", running.addr);
    // Reopening a data dir (restart tests) keeps the first admin.
    let existing = hub.read(|st| st.find_account("CuongLM").cloned()).await;
    let (admin, admin_token) = match existing {
        Some(a) => hub.rotate_token(&a.id).await.unwrap(),
        None => hub
            .create_account(sop_console::wire::NewAccount {
                email: "admin@sop.vn".into(),
                username: "CuongLM".into(),
                name: "Cuong Le Manh".into(),
                role: Role::Admin,
            })
            .await
            .unwrap(),
    };
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

/// A customer's text message on a page, as the webhook worker hands it to the hub.
pub fn customer_message(page: &str, user: &str, zalo_msg_id: &str) -> Inbound {
    Inbound {
        connection_id: page.into(),
        customer_user_id: user.into(),
        direction: Direction::Inbound,
        sender_name: String::new(),
        zalo_msg_id: Some(zalo_msg_id.into()),
        kind: MessageKind::Text,
        text: format!("Chào shop, {zalo_msg_id}"),
        attachments: vec![],
        quote_msg_id: None,
        at: now_ms(),
        origin: Origin::Live,
        raw: None,
    }
}

/// Ingests a message that must be new; its conversation.
pub async fn new_conversation_of(hub: &Hub, message: Inbound) -> Conversation {
    match hub.ingest(message).await.unwrap() {
        Ingested::New { conversation, .. } => *conversation,
        Ingested::Duplicate { .. } => panic!("duplicate"),
    }
}

impl TestHub {
    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    /// Stops the server but keeps the data dir (for restart tests); returns the dir.
    pub async fn stop_keep_data(mut self) -> PathBuf {
        if let Some(r) = self.running.take() {
            r.stop().await;
        }
        std::mem::take(&mut self.dir)
    }

    /// Any request; returns the status and the JSON body (Null when empty or not JSON).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
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
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
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
        (
            serde_json::from_value(body["account"].clone()).unwrap(),
            body["token"].as_str().unwrap().to_string(),
        )
    }

    /// A connected page (the OAuth flow is exercised by the Zalo tests).
    pub async fn page(&self, oa_id: &str) -> Connection {
        self.hub
            .upsert_connection(
                OaInfo {
                    oa_id: oa_id.into(),
                    name: format!("OA {oa_id}"),
                    ..Default::default()
                },
                &self.admin.id,
                TokenPair::default(),
            )
            .await
            .unwrap()
            .0
    }

    pub async fn rule(
        &self,
        name: &str,
        pages: &[&Connection],
        members: &[&str],
        method: &str,
    ) -> Rule {
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
        new_conversation_of(&self.hub, customer_message(&page.id, user, msg_id)).await
    }

    /// `GET /metrics` (open, like `/healthz`).
    pub async fn metrics(&self) -> String {
        let url = format!("{}/metrics", self.base);
        self.http
            .get(url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// `DELETE` an API path; the status.
    pub async fn delete(&self, path: &str, token: &str) -> StatusCode {
        self.call(Method::DELETE, path, Some(token), None).await.0
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

    pub type Socket = tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >;

    pub async fn connect(url: &str, token: &str) -> Socket {
        try_connect(url, token).await.expect("websocket connect")
    }

    /// `connect` for a test that expects refusals (a hub down, a balancer without a hub).
    pub async fn try_connect(
        url: &str,
        token: &str,
    ) -> Result<Socket, tokio_tungstenite::tungstenite::Error> {
        let mut req = url.into_client_request().unwrap();
        req.headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        Ok(tokio_tungstenite::connect_async(req).await?.0)
    }

    /// The next frame, or None when the socket closed or nothing arrived within `wait`.
    pub async fn next(sock: &mut Socket, wait: std::time::Duration) -> Option<Frame> {
        loop {
            match tokio::time::timeout(wait, sock.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => {
                    return Some(serde_json::from_str(&t).expect("frame json"))
                }
                Ok(Some(Ok(Message::Ping(p)))) => {
                    let _ = sock.send(Message::Pong(p)).await;
                }
                Ok(Some(Ok(_))) => {}
                _ => return None,
            }
        }
    }
}

/// A real simulator and a real hub wired to each other on loopback.
pub struct Stack {
    pub t: TestHub,
    pub sim: Arc<sop_console::sim::Sim>,
    pub sim_base: String,
}

pub const APP_ID: &str = "3608465249409039670";
pub const APP_SECRET: &str = "app-secret-for-oauth";
pub const OA_SECRET: &str = "oa-secret-key-for-webhooks";

pub async fn start_stack() -> Stack {
    start_stack_in(temp_dir("stack")).await
}

/// Starts (or restarts, on an existing data dir) the hub with a fresh simulator.
pub async fn start_stack_in(dir: PathBuf) -> Stack {
    start_stack_with(dir, |_| {}).await
}

/// `start_stack_in` with the hub's configuration adjusted by `tune`.
pub async fn start_stack_with(dir: PathBuf, tune: impl FnOnce(&mut Config)) -> Stack {
    let db = open_database(&dir).await;
    let hub_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hub_addr = hub_listener.local_addr().unwrap();
    let sim_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim_base = format!("http://{}", sim_listener.local_addr().unwrap());
    let redirect = format!("http://{hub_addr}/zalo/oauth/callback");
    let sim = sop_console::sim::Sim::new(sop_console::sim::SimConfig {
        webhook: format!("http://{hub_addr}/zalo/webhook"),
        app_id: APP_ID.into(),
        app_secret: APP_SECRET.into(),
        oa_secret_key: OA_SECRET.into(),
        redirect_uri: Some(redirect.clone()),
        retry_scale: 0.001,
        ..Default::default()
    })
    .unwrap();
    sop_console::sim::spawn(sim.clone(), sim_listener).unwrap();
    let mut config = Config::default();
    config.zalo.app_id = APP_ID.into();
    config.zalo.app_secret = APP_SECRET.into();
    config.zalo.oa_secret_key = OA_SECRET.into();
    config.zalo.redirect_uri = redirect;
    config.zalo.oauth_base = sim_base.clone();
    config.zalo.api_base = sim_base.clone();
    tune(&mut config);
    let t = start_hub_over(config, 1_000_000, hub_listener, dir, db).await;
    Stack { t, sim, sim_base }
}

impl Stack {
    pub async fn sim_post(&self, path: &str, body: Value) -> Value {
        sim_post(&self.t.http, &self.sim_base, path, body).await
    }

    pub async fn sim_get(&self, path: &str) -> Value {
        sim_get(&self.t.http, &self.sim_base, path).await
    }

    /// Creates an OA at the simulator; `customers` are (user_id, name, days since last interaction).
    pub async fn sim_oa(&self, oa_id: &str, name: &str, customers: &[(&str, &str, i64)]) {
        let now = now_ms();
        let customers: Vec<Value> = customers
            .iter()
            .map(|(id, n, days)| json!({"user_id": id, "name": n, "last_interaction": now - days * DAY_MS}))
            .collect();
        self.sim_post("/oas", json!({"oa_id": oa_id, "name": name, "admins": ["zalo-admin-1"], "customers": customers})).await;
    }

    /// Walks the consent flow as a browser would (see `consent`).
    pub async fn connect(
        &self,
        oa_id: &str,
        zalo_user: &str,
        decision: &str,
    ) -> (StatusCode, String) {
        consent(
            &self.t.http,
            &self.t.base,
            &self.t.admin_token,
            &self.sim_base,
            oa_id,
            zalo_user,
            decision,
        )
        .await
    }

    /// Connects the simulator's OA (allowed by its admin) and shares it with one agent by a
    /// round-robin rule: the page and the agent's token.
    pub async fn page_for_agent(&self, oa_id: &str, agent: &str) -> (Connection, String) {
        assert_eq!(
            self.connect(oa_id, "zalo-admin-1", "allow").await.0,
            StatusCode::OK
        );
        let (_, token) = self.t.account(agent, "agent").await;
        let page = self.t.hub.read(|st| st.connection_by_oa(oa_id).cloned());
        let page = page.await.expect("the page connected");
        self.t.rule("r", &[&page], &[agent], "round_robin").await;
        (page, token)
    }

    /// A customer writes to the OA through the simulator (a signed webhook follows).
    pub async fn customer_says(&self, oa_id: &str, user: &str, text: &str) -> String {
        let r = self
            .sim_post(
                &format!("/oas/{oa_id}/customers/{user}/messages"),
                json!({"kind": "text", "text": text}),
            )
            .await;
        r["msg_id"].as_str().unwrap().to_string()
    }
}

/// POSTs to the simulator's control API (`/sim…`); its JSON answer.
pub async fn sim_post(http: &reqwest::Client, sim_base: &str, path: &str, body: Value) -> Value {
    let r = http
        .post(format!("{sim_base}/sim{path}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "sim {path}: {}", r.status());
    r.json().await.unwrap_or(Value::Null)
}

pub async fn sim_get(http: &reqwest::Client, sim_base: &str, path: &str) -> Value {
    get_json(http, format!("{sim_base}/sim{path}"), "").await
}

/// Re-raises, here and now, the panic of any of these tasks that already ended: an assertion that
/// failed inside a spawned task then fails the test with its own message, not a later timeout.
pub fn rethrow_panics(tasks: &mut [tokio::task::JoinHandle<()>]) {
    use futures_util::FutureExt;
    for task in tasks.iter_mut().filter(|t| t.is_finished()) {
        if let Some(Err(e)) = task.now_or_never() {
            if e.is_panic() {
                std::panic::resume_unwind(e.into_panic());
            }
            panic!("a task ended early: {e}");
        }
    }
}

/// The `X-ZEvent-Signature` Zalo would send for this webhook body (its own `timestamp` field).
pub fn signed(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap();
    let timestamp = match &v["timestamp"] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    sop_console::zalo::webhook_mac(APP_ID, body.as_bytes(), &timestamp, OA_SECRET)
}

impl Stack {
    /// POSTs a webhook body to the hub as Zalo would, signed; the status and JSON answer.
    pub async fn post_webhook(&self, body: &str) -> (StatusCode, Value) {
        let r = self
            .t
            .http
            .post(format!("{}/zalo/webhook", self.t.base))
            .header("content-type", "application/json")
            .header("x-zevent-signature", signed(body))
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

/// GET an API path with a bearer token; the JSON answer.
pub async fn get_json(http: &reqwest::Client, url: impl reqwest::IntoUrl, token: &str) -> Value {
    http.get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Polls `check` until it returns Some, for up to 60 seconds: a bound for a stuck test, not a
/// speed goal (CI runs the heavy tests side by side on two cores).
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    eventually_explained(what, || {
        let attempt = check();
        async move { attempt.await.ok_or_else(String::new) }
    })
    .await
}

/// `eventually` for checks that can say what is still missing: the last reason goes in the panic.
pub async fn eventually_explained<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let mut why = String::new();
    for _ in 0..1200 {
        match check().await {
            Ok(v) => return v,
            Err(e) => why = e,
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}{why}");
}

/// The consent flow as a browser walks it: authorize → Zalo's consent page → "Cho phép" (or
/// "Từ chối") → redirect to the hub's callback. Returns the final page's status and body.
pub async fn consent(
    http: &reqwest::Client,
    hub: &str,
    admin_token: &str,
    sim: &str,
    oa_id: &str,
    zalo_user: &str,
    decision: &str,
) -> (StatusCode, String) {
    let url = authorize(http, hub, admin_token).await;
    walk_consent(url, sim, oa_id, zalo_user, decision).await
}

/// Asks the hub for a consent URL, as the console's "Add connection" does.
pub async fn authorize(http: &reqwest::Client, hub: &str, admin_token: &str) -> url::Url {
    let auth: Value = http
        .post(format!("{hub}/api/v1/connections/zalo/authorize"))
        .bearer_auth(admin_token)
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    url::Url::parse(
        auth["authorization_url"]
            .as_str()
            .expect("authorization_url"),
    )
    .unwrap()
}

/// A browser on Zalo's consent page: "Cho phép" (or "Từ chối"), then the redirect to the hub's
/// callback. Returns the final page's status and body.
pub async fn walk_consent(
    url: url::Url,
    sim: &str,
    oa_id: &str,
    zalo_user: &str,
    decision: &str,
) -> (StatusCode, String) {
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = browser.get(url.clone()).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("Cho phép") && html.contains("Từ chối"),
        "{html}"
    );
    let q: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert!(
        q.contains_key("code_challenge")
            && q.contains_key("state")
            && q.contains_key("redirect_uri")
    );
    let form = [
        ("app_id", q["app_id"].as_str()),
        ("redirect_uri", q["redirect_uri"].as_str()),
        ("code_challenge", q["code_challenge"].as_str()),
        ("state", q["state"].as_str()),
        ("oa_id", oa_id),
        ("zalo_user", zalo_user),
        ("decision", decision),
    ];
    let resp = browser
        .post(format!("{sim}/v4/oa/permission"))
        .form(&form)
        .send()
        .await
        .unwrap();
    if resp.status() != 303 && resp.status() != 302 {
        let s = resp.status();
        return (s, resp.text().await.unwrap());
    }
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    let cb = browser.get(location).send().await.unwrap();
    let s = cb.status();
    (s, cb.text().await.unwrap())
}

/// The real `sop` binary as a separate process.
pub mod process {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::process::{Child, Command, Stdio};

    pub const SOP: &str = env!("CARGO_BIN_EXE_sop");

    /// Creates the first admin with `sop admin` and returns its token (the last line of stdout).
    /// The test engine's database for a process hub on `dir` (see `database_url`), passed as
    /// `SOP_DATABASE_URL`.
    pub fn with_database(cmd: &mut Command, dir: &std::path::Path) {
        let dir = dir.to_path_buf();
        let url = std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(super::database_url(&dir))
        })
        .join()
        .unwrap();
        cmd.env("SOP_DATABASE_URL", url);
    }

    pub fn admin_token(dir: &std::path::Path) -> String {
        let mut cmd = Command::new(SOP);
        with_database(&mut cmd, dir);
        let out = cmd
            .args(["admin", "--data-dir"])
            .arg(dir)
            .args([
                "account",
                "add",
                "--email",
                "admin@sop.vn",
                "--username",
                "admin",
                "--name",
                "Admin",
                "--role",
                "admin",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .last()
            .unwrap()
            .trim()
            .to_string()
    }

    /// A free loopback port (bound and released).
    pub fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    /// A child process killed when dropped, so a failing test leaves no hub behind.
    pub struct Proc(pub Child);

    impl std::ops::Deref for Proc {
        type Target = Child;
        fn deref(&self) -> &Child {
            &self.0
        }
    }
    impl std::ops::DerefMut for Proc {
        fn deref_mut(&mut self) -> &mut Child {
            &mut self.0
        }
    }
    impl Drop for Proc {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// `sop serve` on the port, talking to the simulator at `sim` (when given).
    pub fn hub(dir: &std::path::Path, port: u16, sim: Option<&str>) -> Proc {
        launch(hub_command(dir, port, sim))
    }

    /// The command `hub` runs, for a test to add settings or limits to.
    pub fn hub_command(dir: &std::path::Path, port: u16, sim: Option<&str>) -> Command {
        let mut cmd = Command::new(SOP);
        with_database(&mut cmd, dir);
        cmd.args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(dir);
        if let Some(sim) = sim {
            cmd.env("SOP_ZALO_APP_ID", APP_ID)
                .env("SOP_ZALO_APP_SECRET", APP_SECRET)
                .env("SOP_ZALO_OA_SECRET_KEY", OA_SECRET)
                .env(
                    "SOP_ZALO_REDIRECT_URI",
                    format!("http://127.0.0.1:{port}/zalo/oauth/callback"),
                )
                .env("SOP_ZALO_OAUTH_BASE", sim)
                .env("SOP_ZALO_API_BASE", sim);
        }
        cmd
    }

    /// Starts a hub command and waits until it listens. Its log goes to `$TMPDIR/sop-hub-<pid>.log`
    /// (appended; read it when a test fails).
    pub fn launch(mut cmd: Command) -> Proc {
        let log = tempfile::Builder::new()
            .prefix("sop-hub-")
            .suffix(".log")
            .disable_cleanup(true)
            .tempfile()
            .unwrap();
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log.into_file()))
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.contains("listening"), "hub did not start: {line:?}");
        Proc(child)
    }

    /// An in-process simulator delivering webhooks to the hub on `hub_port`.
    pub async fn sim_for(hub_port: u16) -> (Arc<sop_console::sim::Sim>, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let sim = sop_console::sim::Sim::new(sop_console::sim::SimConfig {
            webhook: format!("http://127.0.0.1:{hub_port}/zalo/webhook"),
            app_id: APP_ID.into(),
            app_secret: APP_SECRET.into(),
            oa_secret_key: OA_SECRET.into(),
            retry_scale: 0.002,
            ..Default::default()
        })
        .unwrap();
        sop_console::sim::spawn(sim.clone(), listener).unwrap();
        (sim, base)
    }
}

/// One number from the test's database (`SELECT COUNT(*) …`).
pub async fn count(db: &Db, sql: &str) -> i64 {
    match db {
        Db::Sqlite(d) => sqlx::query_scalar(sql).fetch_one(&d.readers).await.unwrap(),
        Db::Postgres(d) => sqlx::query_scalar(sql).fetch_one(&d.pool).await.unwrap(),
    }
}

/// Faults injected into the real database with triggers, the same on both engines: a message
/// whose text carries a marker cannot be stored (a webhook that can never be applied), and a
/// switch under which every change fails as on a full disk.
pub mod faults {
    use sop_console::store::sql::Db;

    async fn execute(db: &Db, sql: &str) {
        match db {
            Db::Sqlite(d) => {
                sqlx::raw_sql(sql).execute(&d.writer).await.unwrap();
            }
            Db::Postgres(d) => {
                sqlx::raw_sql(sql).execute(&d.pool).await.unwrap();
            }
        }
    }

    /// A message whose text contains `marker` cannot be marked sent (its send's outcome can
    /// never be recorded).
    pub async fn poison_sent(db: &Db, marker: &str) {
        let sql = match db {
            Db::Sqlite(_) => format!(
                "CREATE TRIGGER poison_sent BEFORE UPDATE ON messages \
                 WHEN NEW.text LIKE '%{marker}%' AND NEW.delivery = 'sent' \
                 BEGIN SELECT RAISE(ABORT, 'injected write failure'); END;"
            ),
            Db::Postgres(_) => format!(
                "CREATE FUNCTION poison_sent() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
                 IF NEW.text LIKE '%{marker}%' AND NEW.delivery = 'sent' THEN \
                 RAISE EXCEPTION 'injected write failure'; END IF; RETURN NEW; END $$; \
                 CREATE TRIGGER poison_sent BEFORE UPDATE ON messages \
                 FOR EACH ROW EXECUTE FUNCTION poison_sent();"
            ),
        };
        execute(db, &sql).await;
    }

    /// Messages whose text contains `marker` are refused ("injected write failure").
    pub async fn poison_messages(db: &Db, marker: &str) {
        let sql = match db {
            Db::Sqlite(_) => format!(
                "CREATE TRIGGER poison BEFORE INSERT ON messages WHEN NEW.text LIKE '%{marker}%' \
                 BEGIN SELECT RAISE(ABORT, 'injected write failure'); END;"
            ),
            Db::Postgres(_) => format!(
                "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
                 IF NEW.text LIKE '%{marker}%' THEN RAISE EXCEPTION 'injected write failure'; \
                 END IF; RETURN NEW; END $$; \
                 CREATE TRIGGER poison BEFORE INSERT ON messages \
                 FOR EACH ROW EXECUTE FUNCTION poison();"
            ),
        };
        execute(db, &sql).await;
    }

    /// While on, every change fails as the engine fails on a full disk (numbering and the
    /// health probe's write are refused, so nothing commits).
    pub async fn disk_full(db: &Db, on: bool) {
        let sql = match (db, on) {
            (Db::Sqlite(_), true) => {
                "\
                CREATE TRIGGER full_counters BEFORE UPDATE ON counters \
                BEGIN SELECT RAISE(ABORT, 'database or disk is full (injected)'); END; \
                CREATE TRIGGER full_health BEFORE UPDATE ON health \
                BEGIN SELECT RAISE(ABORT, 'database or disk is full (injected)'); END;"
            }
            (Db::Sqlite(_), false) => "DROP TRIGGER full_counters; DROP TRIGGER full_health;",
            (Db::Postgres(_), true) => {
                "\
                CREATE OR REPLACE FUNCTION disk_full() RETURNS trigger LANGUAGE plpgsql AS $$ \
                BEGIN RAISE EXCEPTION USING ERRCODE = 'disk_full', \
                MESSAGE = 'database or disk is full (injected)'; END $$; \
                CREATE TRIGGER full_counters BEFORE UPDATE ON counters \
                FOR EACH ROW EXECUTE FUNCTION disk_full(); \
                CREATE TRIGGER full_health BEFORE UPDATE ON health \
                FOR EACH ROW EXECUTE FUNCTION disk_full();"
            }
            (Db::Postgres(_), false) => {
                "DROP TRIGGER full_counters ON counters; DROP TRIGGER full_health ON health;"
            }
        };
        execute(db, sql).await;
    }
}

/// A TCP proxy in front of a server that a test can cut: while down, it drops every connection it
/// carries and refuses new ones (a network outage between a console and its hub).
pub struct Proxy {
    pub addr: std::net::SocketAddr,
    down: tokio::sync::watch::Sender<bool>,
}

impl Proxy {
    pub async fn start(target: std::net::SocketAddr) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (down, watch) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if *watch.borrow() {
                    continue; // dropped: refused
                }
                let mut watch = watch.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = watch.wait_for(|d| *d) => {}
                    }
                });
            }
        });
        Proxy { addr, down }
    }

    pub fn set_down(&self, down: bool) {
        let _ = self.down.send(down);
    }
}
