//! `sop bench`: measures DESIGN §6's budgets on the real binaries over loopback (a `sop serve`
//! process, a `sop zalo-sim` process, websocket clients), each next to the physical limit measured
//! in the same run on the same machine, and prints a table. `--smoke` runs it small (CI).

mod search;
mod sql;

use crate::console::{self, data::Snapshot};
use crate::model::*;
use crate::wire::{EventBody, Frame};
use crate::zalo::webhook_mac;
use anyhow::{bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};

const APP_ID: &str = "3608465249409039670";
const APP_SECRET: &str = "bench-app-secret";
const OA_SECRET: &str = "bench-oa-secret";
const OA: &str = "1423847451268726170";

pub struct Sizes {
    pub webhooks: usize,
    pub latency_samples: usize,
    pub fanout_clients: usize,
    pub fanout_rounds: usize,
    pub claim_rounds: usize,
    pub console_conversations: usize,
    pub replies: usize,
    /// Conversations in the hub while reads are timed (`reads`).
    pub read_conversations: usize,
    /// Messages in the store searched (`search`).
    pub search_messages: usize,
    /// Sections to run (`--only`); empty runs them all.
    pub only: Vec<String>,
}

/// The sections of a run, as `--only` names them.
pub const SECTIONS: [&str; 10] = [
    "intake", "latency", "fanout", "claims", "replies", "reads", "hubs", "console", "sql", "search",
];

impl Sizes {
    fn wants(&self, section: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == section)
    }
    pub fn full() -> Sizes {
        Sizes {
            webhooks: 20_000,
            latency_samples: 1_000,
            fanout_clients: 1_000,
            fanout_rounds: 10,
            claim_rounds: 20,
            console_conversations: 100_000,
            replies: 2_000,
            read_conversations: 100_000,
            search_messages: 1_000_000,
            only: vec![],
        }
    }
    pub fn smoke() -> Sizes {
        Sizes {
            webhooks: 300,
            latency_samples: 30,
            fanout_clients: 30,
            fanout_rounds: 2,
            claim_rounds: 2,
            console_conversations: 2_000,
            replies: 30,
            read_conversations: 500,
            search_messages: 5_000,
            only: vec![],
        }
    }
}

/// One line of the result table.
pub struct Row {
    pub name: &'static str,
    pub value: String,
    pub budget: &'static str,
    pub limit: String,
    pub ratio: String,
    pub ok: bool,
}

struct Guard(Vec<Child>);
impl Drop for Guard {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn exe() -> Result<PathBuf> {
    std::env::current_exe().context("cannot find the sop binary")
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Starts a child and waits for its "listening" line.
fn spawn_listening(mut cmd: Command) -> Result<Child> {
    let stderr = if std::env::var_os("SOP_BENCH_DEBUG").is_some() {
        Stdio::inherit()
    } else {
        Stdio::null()
    };
    let mut child = cmd.stdout(Stdio::piped()).stderr(stderr).spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().context("stdout")?).read_line(&mut line)?;
    if !line.contains("listening") {
        bail!("child did not start: {line:?}");
    }
    Ok(child)
}

/// A process's CPU time so far (user + system) in seconds, from /proc; NaN where there is none.
pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return f64::NAN;
    };
    // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: f64 = fields
        .get(11..13)
        .map(|t| t.iter().filter_map(|v| v.parse::<f64>().ok()).sum())
        .unwrap_or(f64::NAN);
    // USER_HZ is 100 on Linux.
    ticks / 100.0
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn webhook(user: &str, msg_id: &str, text: &str) -> (String, String) {
    let ts = now_ms().to_string();
    let body = json!({"app_id": APP_ID, "sender": {"id": user}, "recipient": {"id": OA}, "event_name": "user_send_text",
                      "message": {"text": text, "msg_id": msg_id}, "timestamp": ts})
    .to_string();
    let sig = webhook_mac(APP_ID, body.as_bytes(), &ts, OA_SECRET);
    (body, sig)
}

/// POSTs signed bodies with `concurrency` in flight, to the `urls` in turn; returns the elapsed
/// time.
async fn blast(
    http: &reqwest::Client,
    urls: &[String],
    bodies: Vec<(String, String)>,
    concurrency: usize,
) -> Result<Duration> {
    let start = Instant::now();
    let results: Vec<bool> = futures_util::stream::iter(bodies.into_iter().enumerate())
        .map(|(i, (body, sig))| {
            let (http, url) = (http.clone(), urls[i % urls.len()].clone());
            async move {
                matches!(http.post(url).header("content-type", "application/json").header("X-ZEvent-Signature", sig).body(body).send().await, Ok(r) if r.status() == 200)
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let failed = results.iter().filter(|ok| !**ok).count();
    if failed > 0 {
        bail!("{failed} webhook posts failed");
    }
    Ok(start.elapsed())
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn stream(hub: &str, token: &str) -> Result<Ws> {
    let mut req =
        format!("{}/api/v1/stream", hub.replacen("http://", "ws://", 1)).into_client_request()?;
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await?;
    // hello, live
    for _ in 0..2 {
        ws.next().await.context("stream closed")??;
    }
    Ok(ws)
}

/// Waits on a stream for the message event carrying this Zalo msg_id.
async fn wait_message(ws: &mut Ws, msg_id: &str) -> Result<Instant> {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .context("no event within 10 s")?
            .context("closed")??;
        if let Message::Text(t) = m {
            // Cheap check first: most frames are not the one.
            if !t.contains(msg_id) {
                continue;
            }
            if let Ok(Frame::Event { event }) = serde_json::from_str::<Frame>(&t) {
                if let EventBody::Message { message } = event.body {
                    if message.zalo_msg_id.as_deref() == Some(msg_id) {
                        return Ok(Instant::now());
                    }
                }
            }
        }
    }
}

/// Milliseconds from posting a webhook (to the `urls` in turn) to its message's frame on `ws`,
/// `n` times; sorted.
async fn latency_samples(
    http: &reqwest::Client,
    urls: &[String],
    ws: &mut Ws,
    tag: &str,
    n: usize,
) -> Result<Vec<f64>> {
    let mut samples = vec![];
    for i in 0..n {
        let id = format!("{tag}{i}");
        let (body, sig) = webhook("u00001", &id, "ping");
        let t0 = Instant::now();
        http.post(&urls[i % urls.len()])
            .header("content-type", "application/json")
            .header("X-ZEvent-Signature", sig)
            .body(body)
            .send()
            .await?
            .error_for_status()?;
        let t1 = wait_message(ws, &id).await?;
        samples.push(ms(t1 - t0));
    }
    samples.sort_by(f64::total_cmp);
    Ok(samples)
}

async fn metric(http: &reqwest::Client, hub: &str, name: &str) -> Result<f64> {
    let text = http
        .get(format!("{hub}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

/// A `sop serve` on `port` with its data in `dir`, talking to the simulator at `sim`. Its
/// database is `SOP_DATABASE_URL` when set (then every hub of the run shares it), else SQLite in
/// `dir`.
fn spawn_hub(exe: &Path, dir: &Path, port: u16, sim: &str) -> Result<Child> {
    let mut c = Command::new(exe);
    c.args([
        "serve",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--data-dir",
    ])
    .arg(dir)
    .env("SOP_ZALO_APP_ID", APP_ID)
    .env("SOP_ZALO_APP_SECRET", APP_SECRET)
    .env("SOP_ZALO_OA_SECRET_KEY", OA_SECRET)
    .env(
        "SOP_ZALO_REDIRECT_URI",
        format!("http://127.0.0.1:{port}/zalo/oauth/callback"),
    )
    .env("SOP_ZALO_OAUTH_BASE", sim)
    .env("SOP_ZALO_API_BASE", sim)
    .env(
        "RUST_LOG",
        std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
    );
    spawn_listening(c)
}

/// The CPU seconds of every PostgreSQL process on the machine (the server and its backends).
fn postgres_cpu_seconds() -> f64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return f64::NAN;
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "postgres")
        })
        .map(cpu_seconds)
        .filter(|s| s.is_finite())
        .sum()
}

pub async fn run(sizes: Sizes) -> Result<Vec<Row>> {
    let dir = std::env::temp_dir().join(format!("sop-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let exe = exe()?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let mut rows = vec![];

    // The physical limit: the same HTTP/websocket stack doing nothing.
    let empty_port = free_port()?;
    let empty = spawn_listening({
        let mut c = Command::new(&exe);
        c.args([
            "bench-empty",
            "--listen",
            &format!("127.0.0.1:{empty_port}"),
        ]);
        c
    })?;
    let hub_port = free_port()?;
    let sim_port = free_port()?;
    let hub = format!("http://127.0.0.1:{hub_port}");
    let sim = format!("http://127.0.0.1:{sim_port}");
    let out = Command::new(&exe)
        .args(["admin", "--data-dir"])
        .arg(dir.join("hub"))
        .args([
            "account",
            "add",
            "--email",
            "bench@sop.vn",
            "--username",
            "bench",
            "--name",
            "Bench",
            "--role",
            "admin",
        ])
        .output()?;
    let token = String::from_utf8(out.stdout)?
        .lines()
        .last()
        .context("no token")?
        .trim()
        .to_string();
    let sim_child = spawn_listening({
        let mut c = Command::new(&exe);
        c.args([
            "zalo-sim",
            "--listen",
            &format!("127.0.0.1:{sim_port}"),
            "--webhook",
            &format!("{hub}/zalo/webhook"),
            "--app-id",
            APP_ID,
            "--app-secret",
            APP_SECRET,
            "--oa-secret-key",
            OA_SECRET,
            "--auto-approve",
        ]);
        c
    })?;
    let hub_child = spawn_hub(&exe, &dir.join("hub"), hub_port, &sim)?;
    let hub_pid = hub_child.id();
    let servers = Guard(vec![empty, sim_child, hub_child]);

    // Seed: an OA whose customers all follow, connected through the real consent flow.
    let customers: Vec<Value> = (0..sizes.replies.max(200))
        .map(|i| json!({"user_id": format!("u{i:05}"), "name": format!("Khách {i}")}))
        .collect();
    http.post(format!("{sim}/sim/oas"))
        .json(&json!({"oa_id": OA, "name": "Bench OA", "admins": ["z1"], "customers": customers}))
        .send()
        .await?
        .error_for_status()?;
    let auth: Value = http
        .post(format!("{hub}/api/v1/connections/zalo/authorize"))
        .bearer_auth(&token)
        .json(&json!({}))
        .send()
        .await?
        .json()
        .await?;
    let page = http
        .get(auth["authorization_url"].as_str().context("authorize")?)
        .send()
        .await?;
    if !page.status().is_success() {
        bail!("consent failed: {}", page.status());
    }
    let conns: Value = http
        .get(format!("{hub}/api/v1/connections"))
        .bearer_auth(&token)
        .send()
        .await?
        .json()
        .await?;
    let conn_id = conns[0]["id"]
        .as_str()
        .context("no connection")?
        .to_string();

    let ctx = Ctx {
        sizes,
        dir: dir.clone(),
        http,
        exe,
        hub,
        sim,
        token,
        hub_pid,
        empty_port,
        conn_id,
        // The latency section's p50 is the fan-out's single-console reference.
        single_console_p50: std::cell::Cell::new(None),
    };
    let sizes = &ctx.sizes;

    // 1. Webhook intake, at two levels of deliveries in flight. Each acknowledgement waits for an
    //    fsync (group-committed), so throughput is bounded by in-flight / fsync latency; the fsync
    //    latency of this disk is measured alongside.
    if sizes.wants("intake") {
        rows.extend(intake(&ctx).await?);
    }

    // 2. Live latency webhook → event frame, against a raw websocket echo.
    if sizes.wants("latency") {
        rows.extend(latency(&ctx).await?);
    }

    // 3. Fan-out to many connected consoles.
    if sizes.wants("fanout") {
        rows.extend(fanout(&ctx).await?);
    }

    // 4. Claim race: 100 concurrent claims per conversation, exactly one winner every time.
    if sizes.wants("claims") {
        rows.extend(claims(&ctx).await?);
    }

    // 5. Replies through the outbound sender, against sending straight to the simulator.
    if sizes.wants("replies") {
        rows.extend(replies(&ctx).await?);
    }

    // 6. Reads while intake runs, with many conversations.
    if sizes.wants("reads") {
        rows.extend(reads(&ctx).await?);
    }

    // 7. Three hubs on one PostgreSQL (when the run's hubs are on PostgreSQL).
    if sizes.wants("hubs") {
        rows.extend(hubs(&ctx).await?);
    }

    // The servers are stopped for what follows: it measures in this process or its own.
    drop(servers);

    // 8. The SQL store's cost per webhook (issue 10), in this process.
    if sizes.wants("sql") {
        rows.extend(sql::run(&dir.join("sql"), sizes.webhooks).await?);
    }

    // 9. Search over many messages (issue 11), in this process.
    if sizes.wants("search") {
        rows.extend(search::run(&dir.join("search"), sizes.search_messages).await?);
    }

    // 10. The console with a big cache, in its own processes (memory is per process): a console
    //    runs on an agent's machine, not beside a loaded hub.
    if sizes.wants("console") {
        rows.extend(console(&ctx).await?);
    }

    Ok(rows)
}

/// What every section of a run shares: the servers' addresses, the admin token, the seeded page.
struct Ctx {
    sizes: Sizes,
    dir: PathBuf,
    http: reqwest::Client,
    exe: PathBuf,
    hub: String,
    sim: String,
    token: String,
    hub_pid: u32,
    empty_port: u16,
    conn_id: String,
    single_console_p50: std::cell::Cell<Option<f64>>,
}

async fn intake(ctx: &Ctx) -> Result<Vec<Row>> {
    let Ctx {
        sizes,
        dir,
        http,
        hub,
        ..
    } = ctx;
    let hub_pid = ctx.hub_pid;
    let empty_port = ctx.empty_port;
    let mut rows = vec![];
    let fsync = fsync_latency_ms(dir)?;
    for (label, concurrency) in [
        ("webhook intake, 64 in flight", 64usize),
        ("webhook intake, 256 in flight", 256),
    ] {
        let n = sizes.webhooks;
        let tag = format!("c{concurrency}-");
        let bodies: Vec<_> = (0..n)
            .map(|i| {
                webhook(
                    &format!("u{:05}", i % 200),
                    &format!("{tag}w{i}"),
                    "Xin chào",
                )
            })
            .collect();
        let empty_time = blast(
            http,
            &[format!("http://127.0.0.1:{empty_port}/zalo/webhook")],
            bodies.clone(),
            concurrency,
        )
        .await?;
        let hubs = [hub.clone()];
        let applied_before = applied(http, &hubs).await?;
        let cpu_before = cpu_seconds(hub_pid);
        let ack_time = blast(http, &[format!("{hub}/zalo/webhook")], bodies, concurrency).await?;
        let start_wait = Instant::now();
        wait_applied(http, &hubs, applied_before + n as f64).await?;
        let routed_time = ack_time + start_wait.elapsed();
        let hub_cpu_us = (cpu_seconds(hub_pid) - cpu_before) * 1e6 / n as f64;
        let rate = n as f64 / routed_time.as_secs_f64();
        let ack_rate = n as f64 / ack_time.as_secs_f64();
        let empty_rate = n as f64 / empty_time.as_secs_f64();
        rows.push(Row {
            name: label,
            value: format!(
                "{rate:.0}/s durable+routed (acked {ack_rate:.0}/s; hub CPU {hub_cpu_us:.0} µs each)"
            ),
            budget: "≥ 10,000/s and ≥ 50% of limit",
            limit: format!(
                "{empty_rate:.0}/s empty handler; fsync p50 {:.2} ms → ≤ {:.0}/s",
                fsync.0,
                concurrency as f64 / (fsync.0 / 1000.0)
            ),
            ratio: format!("{:.0}% of empty", 100.0 * rate / empty_rate),
            ok: rate >= 10_000.0 && rate >= 0.5 * empty_rate,
        });
    }
    Ok(rows)
}

async fn latency(ctx: &Ctx) -> Result<Vec<Row>> {
    let Ctx {
        sizes,
        http,
        hub,
        token,
        ..
    } = ctx;
    let empty_port = ctx.empty_port;
    let mut rows = vec![];
    let mut ws = stream(hub, token).await?;
    let urls = [format!("{hub}/zalo/webhook")];
    let samples = latency_samples(http, &urls, &mut ws, "lat", sizes.latency_samples).await?;
    drop(ws);
    let (mut echo, _) =
        tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{empty_port}/echo")).await?;
    let mut echo_samples = vec![];
    for _ in 0..sizes.latency_samples {
        let t0 = Instant::now();
        echo.send(Message::Text("ping".into())).await?;
        loop {
            if let Message::Text(_) = echo.next().await.context("echo closed")?? {
                break;
            }
        }
        echo_samples.push(ms(t0.elapsed()));
    }
    echo_samples.sort_by(f64::total_cmp);
    let (p50, p99, max) = (
        percentile(&samples, 0.5),
        percentile(&samples, 0.99),
        samples.last().copied().unwrap_or(f64::NAN),
    );
    ctx.single_console_p50.set(Some(p50));
    rows.push(Row {
        name: "live latency webhook → console frame",
        value: format!("p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms"),
        budget: "p50 ≤ 2 ms, p99 ≤ 10 ms",
        limit: format!(
            "ws echo p50 {:.2} ms, p99 {:.2} ms",
            percentile(&echo_samples, 0.5),
            percentile(&echo_samples, 0.99)
        ),
        ratio: format!("{:.1}× echo p50", p50 / percentile(&echo_samples, 0.5)),
        ok: p50 <= 2.0 && p99 <= 10.0,
    });
    Ok(rows)
}

async fn fanout(ctx: &Ctx) -> Result<Vec<Row>> {
    let Ctx {
        sizes,
        http,
        hub,
        token,
        ..
    } = ctx;
    let single_console_p50 = ctx.single_console_p50.get();
    let mut rows = vec![];
    let clients = sizes.fanout_clients;
    let mut sockets = Vec::with_capacity(clients);
    for _ in 0..clients {
        sockets.push(stream(hub, token).await?);
    }
    let mut fan = vec![];
    for round in 0..sizes.fanout_rounds {
        let id = format!("fan{round}");
        let waits: Vec<_> = sockets
            .drain(..)
            .map(|mut ws| {
                let id = id.clone();
                tokio::spawn(async move {
                    let r = wait_message(&mut ws, &id).await;
                    (ws, r)
                })
            })
            .collect();
        let (body, sig) = webhook("u00002", &id, "fan-out");
        let t0 = Instant::now();
        http.post(format!("{hub}/zalo/webhook"))
            .header("content-type", "application/json")
            .header("X-ZEvent-Signature", sig)
            .body(body)
            .send()
            .await?
            .error_for_status()?;
        for w in waits {
            let (ws, r) = w.await?;
            fan.push(ms(r? - t0));
            sockets.push(ws);
        }
    }
    drop(sockets);
    fan.sort_by(f64::total_cmp);
    let fan_p99 = percentile(&fan, 0.99);
    rows.push(Row {
        name: "fan-out: one event to every console",
        value: format!(
            "{clients} consoles: p50 {:.1} ms, p99 {fan_p99:.1} ms, max {:.1} ms",
            percentile(&fan, 0.5),
            fan.last().copied().unwrap_or(f64::NAN)
        ),
        budget: "1,000 consoles, p99 ≤ 100 ms",
        limit: single_console_p50
            .map(|p50| format!("1 console p50 {p50:.2} ms"))
            .unwrap_or_else(|| "(run with latency)".into()),
        ratio: single_console_p50
            .map(|p50| format!("{:.1}× single", percentile(&fan, 0.5) / p50))
            .unwrap_or_else(|| "—".into()),
        ok: fan_p99 <= 100.0 && clients >= 1000,
    });
    Ok(rows)
}

async fn claims(ctx: &Ctx) -> Result<Vec<Row>> {
    let Ctx {
        sizes,
        http,
        hub,
        sim,
        token,
        conn_id,
        ..
    } = ctx;
    let mut rows = vec![];
    let mut agents = vec![];
    for i in 0..100 {
        let a: Value = http
        .post(format!("{hub}/api/v1/accounts"))
        .bearer_auth(token)
        .json(&json!({"email": format!("agent{i}@bench.vn"), "username": format!("agent{i}"), "name": format!("Agent {i}"), "role": "agent"}))
        .send()
        .await?
        .json()
        .await?;
        agents.push((
            a["account"]["username"]
                .as_str()
                .context("account")?
                .to_string(),
            a["token"].as_str().context("token")?.to_string(),
        ));
    }
    let members: Vec<&str> = agents.iter().map(|(u, _)| u.as_str()).collect();
    http.post(format!("{hub}/api/v1/rules"))
    .bearer_auth(token)
    .json(&json!({"name": "claim race", "sources": [conn_id], "members": members, "method": "self_claim", "old_conversations": "none"}))
    .send()
    .await?
    .error_for_status()?;
    let mut exact = 0;
    let mut claim_time = Duration::ZERO;
    for round in 0..sizes.claim_rounds {
        let user = format!("claim{round}");
        http.post(format!("{sim}/sim/oas/{OA}/customers"))
            .json(&json!({"user_id": user, "name": "Race"}))
            .send()
            .await?
            .error_for_status()?;
        let mut ws = stream(hub, token).await?;
        let id = format!("race{round}");
        let (body, sig) = webhook(&user, &id, "ai nhận?");
        http.post(format!("{hub}/zalo/webhook"))
            .header("content-type", "application/json")
            .header("X-ZEvent-Signature", sig)
            .body(body)
            .send()
            .await?
            .error_for_status()?;
        wait_message(&mut ws, &id).await?;
        let list: Value = http
            .get(format!(
                "{hub}/api/v1/conversations?view=unclaimed&limit=500"
            ))
            .bearer_auth(token)
            .send()
            .await?
            .json()
            .await?;
        let conv = list["items"]
            .as_array()
            .and_then(|a| a.iter().find(|c| c["customer"]["user_id"] == json!(user)))
            .context("unclaimed conversation")?["id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let t0 = Instant::now();
        let claims: Vec<_> = agents
            .iter()
            .map(|(_, t)| {
                let (http, url, t) = (
                    http.clone(),
                    format!("{hub}/api/v1/conversations/{conv}/claim"),
                    t.clone(),
                );
                tokio::spawn(async move {
                    let r = http.post(url).bearer_auth(t).send().await.ok()?;
                    let status = r.status().as_u16();
                    let body: Value = r.json().await.unwrap_or(Value::Null);
                    Some((status, body))
                })
            })
            .collect();
        // Exactly one 200; every other claim a 409 naming that winner.
        let mut winners = Vec::new();
        let mut losers = Vec::new();
        for c in claims {
            match c.await? {
                Some((200, body)) => winners.push(body["assignee"].clone()),
                Some((409, body)) => losers.push(body["error"]["winner"]["id"].clone()),
                _ => {}
            }
        }
        claim_time += t0.elapsed();
        let exact_round = winners.len() == 1
            && losers.len() == agents.len() - 1
            && losers.iter().all(|w| *w == winners[0]);
        if exact_round {
            exact += 1;
        }
    }
    let claims_per_s = (sizes.claim_rounds * 100) as f64 / claim_time.as_secs_f64();
    rows.push(Row {
        name: "claim race (100 concurrent claims)",
        value: format!(
            "{exact}/{} rounds with one 200 and 99 × 409 naming the winner; {claims_per_s:.0} claims/s",
            sizes.claim_rounds
        ),
        budget: "exactly one winner, every time",
        limit: "—".into(),
        ratio: "—".into(),
        ok: exact == sizes.claim_rounds,
    });
    Ok(rows)
}

async fn replies(ctx: &Ctx) -> Result<Vec<Row>> {
    let Ctx {
        sizes,
        http,
        hub,
        sim,
        token,
        ..
    } = ctx;
    let mut rows = vec![];
    let replies = sizes.replies;
    let mut convs = vec![];
    let mut ws = stream(hub, token).await?;
    for i in 0..replies {
        let id = format!("rq{i}");
        let (body, sig) = webhook(&format!("u{i:05}"), &id, "cần tư vấn");
        http.post(format!("{hub}/zalo/webhook"))
            .header("content-type", "application/json")
            .header("X-ZEvent-Signature", sig)
            .body(body)
            .send()
            .await?
            .error_for_status()?;
        if i + 1 == replies {
            wait_message(&mut ws, &id).await?;
        }
    }
    let list: Value = http
        .get(format!("{hub}/api/v1/conversations?view=all&limit=500"))
        .bearer_auth(token)
        .send()
        .await?
        .json()
        .await?;
    let mut cursor = list["next_cursor"].as_str().map(str::to_string);
    convs.extend(list["items"].as_array().cloned().unwrap_or_default());
    while let Some(c) = cursor {
        let page: Value = http
            .get(format!(
                "{hub}/api/v1/conversations?view=all&limit=500&cursor={c}"
            ))
            .bearer_auth(token)
            .send()
            .await?
            .json()
            .await?;
        convs.extend(page["items"].as_array().cloned().unwrap_or_default());
        cursor = page["next_cursor"].as_str().map(str::to_string);
    }
    let targets: Vec<String> = convs
        .iter()
        .filter(|c| {
            c["customer"]["user_id"]
                .as_str()
                .is_some_and(|u| u.starts_with('u'))
        })
        .map(|c| c["id"].as_str().unwrap_or_default().to_string())
        .take(replies)
        .collect();
    let sent_before = http
        .get(format!("{sim}/sim/stats"))
        .send()
        .await?
        .json::<Value>()
        .await?["sent"]
        .as_u64()
        .unwrap_or(0);
    let t0 = Instant::now();
    futures_util::stream::iter(targets.iter().enumerate())
        .map(|(i, c)| {
            let (http, url, token) = (
                http.clone(),
                format!("{hub}/api/v1/conversations/{c}/reply"),
                token.clone(),
            );
            async move {
                http.post(url)
                    .bearer_auth(token)
                    .json(
                        &json!({"client_key": format!("bench{i}"), "text": "Dạ, em xin tư vấn ạ"}),
                    )
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0)
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<u16>>()
        .await
        .into_iter()
        .find(|s| *s != 202)
        .map_or(Ok(()), |s| {
            Err(anyhow::anyhow!("a reply was refused with HTTP {s}"))
        })?;
    loop {
        let sent = http
            .get(format!("{sim}/sim/stats"))
            .send()
            .await?
            .json::<Value>()
            .await?["sent"]
            .as_u64()
            .unwrap_or(0);
        if sent >= sent_before + targets.len() as u64 {
            break;
        }
        if t0.elapsed() > Duration::from_secs(120) {
            bail!(
                "replies not sent within 2 minutes ({} of {})",
                sent - sent_before,
                targets.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let reply_rate = targets.len() as f64 / t0.elapsed().as_secs_f64();
    let direct_token: Value = http
        .post(format!("{sim}/sim/oas/{OA}/tokens"))
        .send()
        .await?
        .json()
        .await?;
    let direct_token = direct_token["access_token"]
        .as_str()
        .context("sim token")?
        .to_string();
    let t0 = Instant::now();
    futures_util::stream::iter(0..targets.len())
    .map(|i| {
        let (http, url, t) = (http.clone(), format!("{sim}/v3.0/oa/message/cs"), direct_token.clone());
        async move { http.post(url).header("access_token", t).json(&json!({"recipient": {"user_id": format!("u{i:05}")}, "message": {"text": "trực tiếp"}})).send().await.map(|r| r.status().as_u16()).unwrap_or(0) }
    })
    .buffer_unordered(32)
    .collect::<Vec<_>>()
    .await;
    let direct_rate = targets.len() as f64 / t0.elapsed().as_secs_f64();
    rows.push(Row {
        name: "replies through the outbound sender",
        value: format!(
            "{reply_rate:.0}/s ({} replies, accepted → sent at Zalo)",
            targets.len()
        ),
        budget: "(no budget; recorded)",
        limit: format!("{direct_rate:.0}/s straight to message/cs"),
        ratio: format!("{:.0}%", 100.0 * reply_rate / direct_rate),
        ok: true,
    });
    Ok(rows)
}

/// Waits until the hubs at `bases` have applied `target` webhooks between them.
async fn wait_applied(http: &reqwest::Client, bases: &[String], target: f64) -> Result<()> {
    let start = Instant::now();
    loop {
        let applied = applied(http, bases).await?;
        if applied >= target {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(300) {
            bail!("webhooks were not applied within 5 minutes ({applied} of {target})");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Webhooks the hubs at `bases` applied so far, between them.
async fn applied(http: &reqwest::Client, bases: &[String]) -> Result<f64> {
    let mut n = 0.0;
    for base in bases {
        n += metric(http, base, "sop_webhooks_applied_total").await?;
    }
    Ok(n)
}

/// An agent's list (`view=mine`, first page) with `sizes.read_conversations` conversations of
/// theirs in the hub, idle and while webhooks arrive at full speed.
async fn reads(ctx: &Ctx) -> Result<Vec<Row>> {
    let Ctx {
        sizes,
        http,
        hub,
        token,
        conn_id,
        ..
    } = ctx;
    // Every new conversation goes to the bench's admin (in place of an earlier section's rule).
    let rules: Value = http
        .get(format!("{hub}/api/v1/rules"))
        .bearer_auth(token)
        .send()
        .await?
        .json()
        .await?;
    for r in rules.as_array().into_iter().flatten() {
        http.delete(format!(
            "{hub}/api/v1/rules/{}",
            r["id"].as_str().unwrap_or_default()
        ))
        .bearer_auth(token)
        .send()
        .await?
        .error_for_status()?;
    }
    let rule: Value = http
        .post(format!("{hub}/api/v1/rules"))
        .bearer_auth(token)
        .json(
            &json!({"name": "bench reads", "sources": [conn_id], "members": ["bench"],
                      "method": "round_robin", "old_conversations": "none"}),
        )
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let bases = [hub.clone()];
    let urls = [format!("{hub}/zalo/webhook")];
    let n = sizes.read_conversations;
    let seed: Vec<_> = (0..n)
        .map(|i| webhook(&format!("r{i:06}"), &format!("seed{i}"), "Cho mình hỏi"))
        .collect();
    let before = applied(http, &bases).await?;
    blast(http, &urls, seed, 64).await?;
    wait_applied(http, &bases, before + n as f64).await?;

    let list = format!("{hub}/api/v1/conversations?view=mine");
    let read_for = |stop: Option<tokio::sync::watch::Receiver<bool>>| {
        let (http, list, token) = (http.clone(), list.clone(), token.clone());
        async move {
            let mut samples = vec![];
            loop {
                let t0 = Instant::now();
                let r = http.get(&list).bearer_auth(&token).send().await?;
                r.error_for_status()?.bytes().await?;
                samples.push(ms(t0.elapsed()));
                let done = match &stop {
                    Some(stop) => *stop.borrow(),
                    None => samples.len() >= 1000,
                };
                if done {
                    samples.sort_by(f64::total_cmp);
                    return Ok::<_, anyhow::Error>(samples);
                }
            }
        }
    };
    let idle = read_for(None).await?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let reader = tokio::spawn(read_for(Some(stopped)));
    let load: Vec<_> = (0..sizes.webhooks)
        .map(|i| {
            webhook(
                &format!("r{:06}", i % n),
                &format!("load{i}"),
                "Còn hàng không?",
            )
        })
        .collect();
    let before = applied(http, &bases).await?;
    let t0 = Instant::now();
    blast(http, &urls, load, 64).await?;
    wait_applied(http, &bases, before + sizes.webhooks as f64).await?;
    let rate = sizes.webhooks as f64 / t0.elapsed().as_secs_f64();
    stop.send(true)?;
    let busy = reader.await??;
    http.delete(format!(
        "{hub}/api/v1/rules/{}",
        rule["id"].as_str().unwrap_or_default()
    ))
    .bearer_auth(token)
    .send()
    .await?
    .error_for_status()?;
    let p99 = percentile(&busy, 0.99);
    Ok(vec![Row {
        name: "GET /conversations?view=mine under intake",
        value: format!(
            "p50 {:.2} ms, p99 {p99:.2} ms ({} reads, {n} conversations of theirs, intake {rate:.0}/s meanwhile)",
            percentile(&busy, 0.5),
            busy.len()
        ),
        budget: "p99 ≤ 10 ms",
        limit: format!(
            "idle: p50 {:.2} ms, p99 {:.2} ms",
            percentile(&idle, 0.5),
            percentile(&idle, 0.99)
        ),
        ratio: format!("{:.1}× idle p99", p99 / percentile(&idle, 0.99)),
        ok: p99 <= 10.0,
    }])
}

/// Three hubs on one PostgreSQL (issue 10): intake spread over the three with each process's
/// CPU per webhook (for docs/deploy.md's capacity table), and the live latency from a webhook
/// taken by one hub to a console on another. Runs when the run's hubs are on PostgreSQL
/// (`SOP_DATABASE_URL`); the two extra hubs share that database.
async fn hubs(ctx: &Ctx) -> Result<Vec<Row>> {
    let Ctx {
        sizes,
        http,
        token,
        dir,
        exe,
        sim,
        ..
    } = ctx;
    let on_postgres = std::env::var("SOP_DATABASE_URL").is_ok_and(|u| u.starts_with("postgres"));
    if !on_postgres {
        return Ok(vec![Row {
            name: "three hubs on one PostgreSQL",
            value: "not run: the hubs are on SQLite (set SOP_DATABASE_URL=postgres://… to an empty database)".into(),
            budget: "",
            limit: String::new(),
            ratio: String::new(),
            ok: true,
        }]);
    }
    let ports = [free_port()?, free_port()?];
    let mut others = Guard(vec![]);
    for (i, port) in ports.iter().enumerate() {
        others.0.push(spawn_hub(
            exe,
            &dir.join(format!("hub{}", i + 2)),
            *port,
            sim,
        )?);
    }
    let bases: Vec<String> = std::iter::once(ctx.hub.clone())
        .chain(ports.iter().map(|p| format!("http://127.0.0.1:{p}")))
        .collect();
    let pids: Vec<u32> = std::iter::once(ctx.hub_pid)
        .chain(others.0.iter().map(|c| c.id()))
        .collect();
    let urls: Vec<String> = bases.iter().map(|b| format!("{b}/zalo/webhook")).collect();

    let n = sizes.webhooks;
    let bodies: Vec<_> = (0..n)
        .map(|i| webhook(&format!("u{:05}", i % 200), &format!("h3-{i}"), "Xin chào"))
        .collect();
    let before = applied(http, &bases).await?;
    let hub_cpu: Vec<f64> = pids.iter().map(|p| cpu_seconds(*p)).collect();
    let (pg_cpu, own_cpu) = (postgres_cpu_seconds(), cpu_seconds(std::process::id()));
    let t0 = Instant::now();
    blast(http, &urls, bodies, 3 * 64).await?;
    wait_applied(http, &bases, before + n as f64).await?;
    let rate = n as f64 / t0.elapsed().as_secs_f64();
    let per = |before: f64, after: f64| (after - before) * 1e6 / n as f64;
    let hubs_us: Vec<String> = pids
        .iter()
        .zip(&hub_cpu)
        .map(|(p, before)| format!("{:.0}", per(*before, cpu_seconds(*p))))
        .collect();
    let pg_us = per(pg_cpu, postgres_cpu_seconds());
    let own_us = per(own_cpu, cpu_seconds(std::process::id()));
    let mut rows = vec![Row {
        name: "intake, three hubs on one PostgreSQL",
        value: format!(
            "{rate:.0}/s durable+routed; CPU per webhook: hubs {} µs, PostgreSQL {pg_us:.0} µs, load generator {own_us:.0} µs",
            hubs_us.join(" + ")
        ),
        budget: "(recorded: docs/deploy.md's capacity table)",
        limit: "3 × 64 in flight, all on these cores".into(),
        ratio: String::new(),
        ok: true,
    }];

    // A console on the first hub; webhooks taken by the other two.
    let mut ws = stream(&bases[0], token).await?;
    let samples = latency_samples(http, &urls[1..], &mut ws, "xlat", sizes.latency_samples).await?;
    let (p50, p99) = (percentile(&samples, 0.5), percentile(&samples, 0.99));
    rows.push(Row {
        name: "live latency across hubs (webhook on B or C → console on A)",
        value: format!(
            "p50 {p50:.2} ms, p99 {p99:.2} ms, max {:.2} ms",
            samples.last().copied().unwrap_or(f64::NAN)
        ),
        budget: "p50 ≤ 5 ms, p99 ≤ 25 ms",
        limit: ctx
            .single_console_p50
            .get()
            .map_or(String::new(), |p| format!("one hub: p50 {p:.2} ms")),
        ratio: String::new(),
        ok: p50 <= 5.0 && p99 <= 25.0,
    });
    Ok(rows)
}

async fn console(ctx: &Ctx) -> Result<Vec<Row>> {
    let Ctx {
        sizes, dir, exe, ..
    } = ctx;
    let mut rows = vec![];
    let cache_dir = dir.join("console-cache");
    let status = Command::new(exe)
        .args(["bench-console", "--prepare"])
        .arg(&cache_dir)
        .arg("--conversations")
        .arg(sizes.console_conversations.to_string())
        .status()?;
    if !status.success() {
        bail!("bench-console --prepare failed");
    }
    let out = Command::new(exe)
        .args(["bench-console", "--measure"])
        .arg(&cache_dir)
        .output()?;
    let m: Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("bench-console: {}", String::from_utf8_lossy(&out.stderr)))?;
    let (first, redraw, rss) = (
        m["first_frame_ms"].as_f64().unwrap_or(f64::NAN),
        m["redraw_ms"].as_f64().unwrap_or(f64::NAN),
        m["peak_rss_mb"].as_f64().unwrap_or(f64::NAN),
    );
    rows.push(Row {
        name: "console: cold start to first frame",
        value: format!(
            "{first:.0} ms ({} cached conversations)",
            sizes.console_conversations
        ),
        budget: "≤ 300 ms (100,000 conversations)",
        limit: format!(
            "{:.0} ms just reading the cache file",
            m["read_only_ms"].as_f64().unwrap_or(f64::NAN)
        ),
        ratio: "—".into(),
        ok: first <= 300.0,
    });
    rows.push(Row {
        name: "console: redraw",
        value: format!("{redraw:.2} ms (80×24, after a live event)"),
        budget: "≤ 5 ms",
        limit: format!(
            "{:.2} ms drawing an empty screen",
            m["empty_draw_ms"].as_f64().unwrap_or(f64::NAN)
        ),
        ratio: "—".into(),
        ok: redraw <= 5.0,
    });
    rows.push(Row {
        name: "console: peak memory",
        value: format!("{rss:.0} MB"),
        budget: "≤ 150 MB",
        limit: format!(
            "{:.0} MB for an empty process",
            m["baseline_rss_mb"].as_f64().unwrap_or(f64::NAN)
        ),
        ratio: "—".into(),
        ok: rss <= 150.0,
    });
    let _ = std::fs::remove_dir_all(dir);
    Ok(rows)
}

pub fn print(rows: &[Row]) {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    println!("machine: {cpu}, {cores} cores\n");
    println!("| measure | value | budget | limit (same run) | ratio | meets budget |");
    println!("|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            r.name,
            r.value,
            r.budget,
            r.limit,
            r.ratio,
            if r.ok { "yes" } else { "NO" }
        );
    }
}

/// `sop bench-empty`: the same axum stack with handlers that do nothing (the physical limit).
pub async fn empty_server(listen: &str) -> Result<()> {
    use axum::extract::ws::{Message as AxMsg, WebSocketUpgrade};
    use axum::routing::{any, post};
    let app = axum::Router::new()
        .route(
            "/zalo/webhook",
            post(|_body: axum::body::Bytes| async {
                axum::Json(json!({"error": 0, "message": "Success"}))
            }),
        )
        .route(
            "/echo",
            any(|ws: WebSocketUpgrade| async move {
                ws.on_upgrade(|mut socket| async move {
                    while let Some(Ok(m)) = socket.recv().await {
                        if let AxMsg::Text(t) = m {
                            if socket.send(AxMsg::Text(t)).await.is_err() {
                                return;
                            }
                        }
                    }
                })
            }),
        );
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!(
        "empty server listening on http://{}",
        listener.local_addr()?
    );
    axum::serve(listener, app).await?;
    Ok(())
}

/// fdatasync latency of the disk under `dir` (p50, p99 in ms): the floor of any durable write.
fn fsync_latency_ms(dir: &Path) -> Result<(f64, f64)> {
    use std::io::Write;
    let path = dir.join("fsync-probe");
    let mut f = std::fs::File::create(&path)?;
    let mut t = vec![];
    for _ in 0..200 {
        f.write_all(&[0u8; 512])?;
        let s = Instant::now();
        f.sync_data()?;
        t.push(ms(s.elapsed()));
    }
    let _ = std::fs::remove_file(&path);
    t.sort_by(f64::total_cmp);
    Ok((percentile(&t, 0.5), percentile(&t, 0.99)))
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// `sop bench-console --prepare DIR`: writes a console cache with many conversations.
pub fn console_prepare(dir: &Path, n: usize) -> Result<()> {
    let _ = std::fs::remove_dir_all(dir);
    let now = now_ms();
    let conversations = (0..n)
        .map(|i| Conversation {
            id: format!("c{i}"),
            connection_id: "p1".into(),
            customer: Customer {
                user_id: format!("84{i:012}"),
                display_name: format!("Khách hàng số {i}"),
                avatar: String::new(),
                fetched_at: now,
                labels: vec![],
                follows: None,
            },
            assignee: (i % 3 == 0).then(|| "a1".to_string()),
            state: if i % 3 == 0 {
                ConvState::Assigned
            } else {
                ConvState::Unclaimed
            },
            status: ConvStatus::Open,
            origin: Origin::Live,
            last_interaction_at: Some(now - i as i64 * 1000),
            last_activity_at: now - i as i64 * 1000,
            waiting_since: (i % 3 != 0).then_some(now - i as i64 * 1000),
            unread: Default::default(),
            preview: "Chào shop, cho em hỏi giá dịch vụ tư vấn hợp đồng ạ?".into(),
            assignments: vec![],
            created_at: now - i as i64 * 1000,
        })
        .collect();
    let me = Account {
        id: "a1".into(),
        email: "a@sop.vn".into(),
        username: "admin".into(),
        name: "Admin".into(),
        role: Role::Admin,
        availability: Availability::Available,
        created_at: 0,
    };
    let snapshot = Snapshot {
        me: Some(me),
        conversations,
        connections: vec![],
        rules: vec![],
        accounts: vec![],
        head: 1,
        dead_webhooks: 0,
        quick_replies: vec![],
    };
    match console::cache::Cache::open(dir)? {
        console::cache::Opened::Ready(c) => c.save_snapshot(&snapshot),
        console::cache::Opened::Locked => bail!("cache locked"),
    }
}

/// `sop bench-console --measure DIR`: cold start to first frame, redraw, peak memory (JSON).
pub fn console_measure(dir: &Path) -> Result<()> {
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;
    let baseline = peak_rss_mb();
    let theme = console::ui::Theme {
        color: true,
        utc_offset_min: 420,
    };
    let t0 = Instant::now();
    let cache = match console::cache::Cache::open(dir)? {
        console::cache::Opened::Ready(c) => c,
        console::cache::Opened::Locked => bail!("cache locked"),
    };
    let mut app = console::app::App::new(
        console::i18n::Lang::Vi,
        console::keymap::Keymap::default_map(),
        console::data::Notify {
            unclaimed: false,
            mine: false,
            mention: false,
        },
        now_ms(),
    );
    let (snapshot, _) = cache.load();
    app.load_snapshot(snapshot.context("no snapshot")?);
    app.update(console::msg::Msg::Net(console::msg::NetEvent::Link(
        console::msg::Link::Connected,
    )));
    let mut terminal = Terminal::new(TestBackend::new(80, 24))?;
    terminal.draw(|f| app.draw(f, &theme))?;
    let first_frame = ms(t0.elapsed());
    // Reading the same bytes without decoding them: the floor for a cold start.
    let t1 = Instant::now();
    fn read_all(dir: &Path) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)?.flatten() {
            if entry.path().is_dir() {
                read_all(&entry.path())?;
            } else {
                std::hint::black_box(std::fs::read(entry.path())?);
            }
        }
        Ok(())
    }
    read_all(dir)?;
    let read_only = ms(t1.elapsed());
    // Redraws after live events.
    let mut times = vec![];
    for i in 0..100 {
        let mut c = app.data.conversations.get("c5").cloned().context("c5")?;
        c.last_activity_at += 1;
        c.preview = format!("tin mới {i}");
        let ev = crate::wire::Event {
            seq: 2 + i,
            at: now_ms(),
            body: EventBody::Conversation { conversation: c },
        };
        app.update(console::msg::Msg::Net(console::msg::NetEvent::Event(
            Box::new(ev),
        )));
        let t = Instant::now();
        terminal.draw(|f| app.draw(f, &theme))?;
        times.push(ms(t.elapsed()));
    }
    times.sort_by(f64::total_cmp);
    let empty_app = console::app::App::new(
        console::i18n::Lang::Vi,
        console::keymap::Keymap::default_map(),
        console::data::Notify {
            unclaimed: false,
            mine: false,
            mention: false,
        },
        now_ms(),
    );
    let t = Instant::now();
    terminal.draw(|f| empty_app.draw(f, &theme))?;
    let empty_draw = ms(t.elapsed());
    println!(
        "{}",
        json!({"first_frame_ms": first_frame, "redraw_ms": percentile(&times, 0.5), "redraw_p99_ms": percentile(&times, 0.99),
               "peak_rss_mb": peak_rss_mb(), "baseline_rss_mb": baseline, "read_only_ms": read_only, "empty_draw_ms": empty_draw})
    );
    Ok(())
}

/// Keeps the sizes honest in the table header.
pub fn describe(sizes: &Sizes) -> String {
    format!(
        "{} webhooks, {} latency samples, {} consoles × {} rounds, {} claim rounds, {} replies, {} cached conversations, {} messages searched",
        sizes.webhooks, sizes.latency_samples, sizes.fanout_clients, sizes.fanout_rounds, sizes.claim_rounds, sizes.replies, sizes.console_conversations, sizes.search_messages
    )
}
