//! Three `sop serve` processes on one PostgreSQL behind a real HAProxy running
//! `assets/haproxy.cfg` with only the addresses changed: the shape docs/deploy.md describes
//! (issue 10). The simulator delivers Zalo's webhooks to the balancer, as Zalo does to a public
//! address, many at once and retrying what was not answered 200.
//!
//! These tests are on PostgreSQL whatever `SOP_TEST_ENGINE` says (several hubs need it); HAProxy
//! missing fails them with the install command.

mod common;
use common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sop_console::store::sql::Db;
use sop_console::wire::Frame;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const HUBS: usize = 3;

/// The hubs, the balancer in front of them and the simulator behind it.
struct Balanced {
    /// The balancer: what consoles, browsers and Zalo are given.
    base: String,
    hub_ports: Vec<u16>,
    hubs: Vec<Option<process::Proc>>,
    _haproxy: process::Proc,
    stats: String,
    sim_base: String,
    db: Db,
    http: reqwest::Client,
    admin_token: String,
}

async fn start_balanced(database: &str) -> Balanced {
    let lb_port = process::free_port();
    let stats_port = process::free_port();
    let base = format!("http://127.0.0.1:{lb_port}");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim_base = format!("http://{}", listener.local_addr().unwrap());
    let sim = sop_console::sim::Sim::new(sop_console::sim::SimConfig {
        webhook: format!("{base}/zalo/webhook"),
        app_id: APP_ID.into(),
        app_secret: APP_SECRET.into(),
        oa_secret_key: OA_SECRET.into(),
        redirect_uri: Some(format!("{base}/zalo/oauth/callback")),
        retry_scale: 0.002,
        parallel_deliveries: 32,
        ..Default::default()
    })
    .unwrap();
    sop_console::sim::spawn(sim, listener).unwrap();

    // Three data dirs on one database, started at the same moment (they migrate it once).
    let dirs: Vec<PathBuf> = (0..HUBS).map(|_| temp_dir("lb-hub")).collect();
    for dir in &dirs {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("database-url"), database).unwrap();
    }
    let hub_ports: Vec<u16> = (0..HUBS).map(|_| process::free_port()).collect();
    let hubs: Vec<Option<process::Proc>> = std::thread::scope(|s| {
        let starts: Vec<_> = dirs
            .iter()
            .zip(&hub_ports)
            .map(|(dir, port)| {
                let mut cmd = process::hub_command(dir, *port, Some(&sim_base));
                cmd.env(
                    "SOP_ZALO_REDIRECT_URI",
                    format!("{base}/zalo/oauth/callback"),
                );
                s.spawn(move || process::launch(cmd))
            })
            .collect();
        starts
            .into_iter()
            .map(|h| Some(h.join().unwrap()))
            .collect()
    });
    let admin_token = process::admin_token(&dirs[0]);

    let haproxy = start_haproxy(lb_port, stats_port, &hub_ports);
    let stats = format!("http://127.0.0.1:{stats_port}/stats;csv");
    let b = Balanced {
        base,
        hub_ports,
        hubs,
        _haproxy: haproxy,
        stats,
        sim_base,
        db: Db::connect(database).await.unwrap(),
        http: reqwest::Client::new(),
        admin_token,
    };
    eventually("HAProxy to see every hub up", || async {
        let up = b.servers().await.iter().filter(|s| s.up).count();
        (up == HUBS).then_some(())
    })
    .await;
    b
}

/// HAProxy on `assets/haproxy.cfg`, its bind address and servers replaced, plus a stats page.
fn start_haproxy(port: u16, stats_port: u16, hubs: &[u16]) -> process::Proc {
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/haproxy.cfg"))
            .unwrap();
    // Its log (one line per request) goes to the file next to the config, for a failing test.
    let mut cfg = "global\n    log stderr format raw local0 info\n\n".to_string();
    for line in shipped.lines() {
        if line.trim_start().starts_with("server ") {
            continue;
        }
        cfg.push_str(&line.replace("bind :8700", &format!("bind 127.0.0.1:{port}")));
        cfg.push('\n');
        if line.trim_start().starts_with("mode http") {
            cfg.push_str("    log global\n    option httplog\n");
        }
        if line.trim_start().starts_with("http-check expect") {
            for (i, hub) in hubs.iter().enumerate() {
                cfg.push_str(&format!(
                    "    server hub{} 127.0.0.1:{hub} check inter 2s fall 2 rise 2\n",
                    i + 1
                ));
            }
        }
    }
    assert_eq!(cfg.matches("server hub").count(), hubs.len(), "{cfg}");
    cfg.push_str(&format!(
        "\nlisten stats\n    bind 127.0.0.1:{stats_port}\n    stats enable\n    stats uri /stats\n"
    ));
    let file = temp_dir("haproxy").with_extension("cfg");
    std::fs::write(&file, cfg).unwrap();
    let log = std::fs::File::create(file.with_extension("log")).unwrap();
    let child = std::process::Command::new("haproxy")
        .args(["-db", "-f"])
        .arg(&file)
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start HAProxy ({e}); these tests need it: apt-get install -y haproxy")
        });
    process::Proc(child)
}

/// One of the balancer's servers as its stats page tells.
struct Server {
    up: bool,
    /// Requests and connections it was given so far.
    sessions: u64,
}

impl Balanced {
    async fn servers(&self) -> Vec<Server> {
        let Ok(r) = self.http.get(&self.stats).send().await else {
            return Vec::new();
        };
        let csv = r.text().await.unwrap_or_default();
        // pxname,svname,qcur,qmax,scur,smax,slim,stot,…,status (18th)
        csv.lines()
            .map(|l| l.split(',').collect::<Vec<_>>())
            .filter(|f| f.len() > 17 && f[0] == "hubs" && f[1].starts_with("hub"))
            .map(|f| Server {
                up: f[17] == "UP",
                sessions: f[7].parse().unwrap_or(0),
            })
            .collect()
    }

    /// POSTs through the balancer.
    async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.post_at(&self.base, path, token, body).await
    }

    /// POSTs to `base` (the balancer or one hub).
    async fn post_at(
        &self,
        base: &str,
        path: &str,
        token: &str,
        body: Value,
    ) -> (StatusCode, Value) {
        let r = self
            .http
            .post(format!("{base}{path}"))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn sim_post(&self, path: &str, body: Value) -> Value {
        sim_post(&self.http, &self.sim_base, path, body).await
    }

    async fn sim_get(&self, path: &str) -> Value {
        sim_get(&self.http, &self.sim_base, path).await
    }

    /// An agent made through the balancer; its id and token.
    async fn agent(&self, username: &str) -> (String, String) {
        let (status, body) = self
            .post(
                "/api/v1/accounts",
                &self.admin_token,
                json!({"email": format!("{username}@sop.vn"), "username": username,
                       "name": username, "role": "agent"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        (
            body["account"]["id"].as_str().unwrap().into(),
            body["token"].as_str().unwrap().into(),
        )
    }

    /// An OA with `customers` at the simulator, connected through the balancer (the consent's
    /// start and its callback may reach different hubs); the page's id.
    async fn page(&self, oa_id: &str, customers: &[String]) -> String {
        let customers: Vec<Value> = customers
            .iter()
            .map(|id| json!({"user_id": id, "name": format!("Khách {id}"), "last_interaction": 0}))
            .collect();
        self.sim_post(
            "/oas",
            json!({"oa_id": oa_id, "name": format!("Trang {oa_id}"), "admins": ["zalo-admin-1"],
                   "customers": customers}),
        )
        .await;
        let (status, body) = consent(
            &self.http,
            &self.base,
            &self.admin_token,
            &self.sim_base,
            oa_id,
            "zalo-admin-1",
            "allow",
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (id,): (String,) = match &self.db {
            Db::Postgres(d) => sqlx::query_as("SELECT id FROM connections WHERE oa_id = $1")
                .bind(oa_id)
                .fetch_one(&d.pool)
                .await
                .unwrap(),
            Db::Sqlite(_) => unreachable!("several hubs run on PostgreSQL"),
        };
        id
    }

    async fn rule(&self, name: &str, page: &str, members: &[&str], method: &str) {
        let (status, body) = self
            .post(
                "/api/v1/rules",
                &self.admin_token,
                json!({"name": name, "sources": [page], "members": members, "method": method,
                       "old_conversations": "none"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    /// Customers write to the OA through the simulator, `parallel` at a time; the Zalo message
    /// ids, in the order given.
    async fn customers_say(&self, oa_id: &str, messages: &[(String, String)]) -> Vec<String> {
        use futures_util::StreamExt;
        futures_util::stream::iter(messages.iter().cloned())
            .map(|(user, text)| {
                let (http, sim_base) = (self.http.clone(), self.sim_base.clone());
                let path = format!("/oas/{oa_id}/customers/{user}/messages");
                async move {
                    let r = sim_post(
                        &http,
                        &sim_base,
                        &path,
                        json!({"kind": "text", "text": text}),
                    )
                    .await;
                    r["msg_id"].as_str().unwrap().to_string()
                }
            })
            .buffered(32)
            .collect()
            .await
    }

    async fn count(&self, sql: &str) -> i64 {
        count(&self.db, sql).await
    }

    /// The last event in the log.
    async fn head(&self) -> u64 {
        self.count("SELECT COALESCE(MAX(seq), 0) FROM events").await as u64
    }

    fn ws_url(&self, base: &str, since: Option<u64>) -> String {
        let base = base.replacen("http://", "ws://", 1);
        match since {
            Some(s) => format!("{base}/api/v1/stream?since={s}"),
            None => format!("{base}/api/v1/stream"),
        }
    }

    fn hub_base(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.hub_ports[i])
    }
}

/// What a console following the stream saw: the head it started from, every event's number in
/// arrival order, how often it had to reconnect.
#[derive(Default)]
struct Seen {
    connected: bool,
    start: u64,
    seqs: Vec<u64>,
    reconnects: usize,
}

impl Seen {
    fn last(&self) -> u64 {
        self.seqs.last().copied().unwrap_or(self.start)
    }
}

/// A console as the real one behaves: connects to `first`, and after a disconnect reconnects to
/// `again` with `since` = the last event it got, until it manages to.
fn follow_stream(first: String, again: String, token: String) -> Arc<Mutex<Seen>> {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let record = seen.clone();
    tokio::spawn(async move {
        let mut sock = ws::connect(&first, &token).await;
        let Some(Frame::Hello { head, .. }) = ws::next(&mut sock, Duration::from_secs(10)).await
        else {
            panic!("expected hello")
        };
        {
            let mut seen = record.lock().unwrap();
            seen.start = head;
            seen.connected = true;
        }
        loop {
            while let Some(frame) = ws::next(&mut sock, Duration::from_secs(120)).await {
                match frame {
                    Frame::Event { event } => record.lock().unwrap().seqs.push(event.seq),
                    Frame::Resync { .. } => panic!("resync: the log should keep all of this"),
                    Frame::Hello { .. } | Frame::Live { .. } => {}
                }
            }
            // Disconnected: resume where it stopped, through `again`.
            let since = record.lock().unwrap().last();
            let url = format!("{again}?since={since}");
            sock = loop {
                match ws::try_connect(&url, &token).await {
                    Ok(sock) => break sock,
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            };
            record.lock().unwrap().reconnects += 1;
        }
    });
    seen
}

/// Waits until the console has everything up to the log's head, then checks it got each event
/// after its start exactly once, in order (an admin may receive every event).
async fn assert_no_gap_no_repeat(b: &Balanced, who: &str, seen: &Mutex<Seen>) {
    let head = b.head().await;
    eventually_explained(&format!("{who} to reach the head"), || async {
        let last = seen.lock().unwrap().last();
        if last >= head {
            Ok(())
        } else {
            Err(format!(": at {last} of {head}"))
        }
    })
    .await;
    let seen = seen.lock().unwrap();
    // Every event after its start, each once, in order, up to the head and past it if more came.
    let expected: Vec<u64> = (seen.start + 1..=seen.last().max(head)).collect();
    assert!(
        seen.seqs == expected,
        "{who}: {} events from {}, expected {} ({}..); first difference at {:?}",
        seen.seqs.len(),
        seen.start,
        expected.len(),
        seen.start + 1,
        seen.seqs.iter().zip(&expected).position(|(a, b)| a != b)
    );
}

fn numbered(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i:05}")).collect()
}

/// Claims raced through the balancer, round robin fed through it, and the stream across hubs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_hubs_behind_haproxy_agree_on_claims_turns_and_the_stream() {
    const ROUNDS: usize = 20;
    const CLAIMS: usize = 100;
    const ARRIVALS: usize = 3000;
    let b = start_balanced(&pg::database().await).await;

    let mut agents = Vec::new();
    for i in 0..CLAIMS {
        agents.push(b.agent(&format!("nv{i:03}")).await);
    }
    let names: Vec<String> = (0..CLAIMS).map(|i| format!("nv{i:03}")).collect();
    let names: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    let claim_page = b.page("claim-oa", &numbered("c", ROUNDS)).await;
    b.rule("Tự nhận", &claim_page, &names, "self_claim").await;

    // A console on hub A (the first) sees what is done through hub C (the third).
    let on_a = follow_stream(
        b.ws_url(&b.hub_base(0), None),
        b.ws_url(&b.base, None),
        b.admin_token.clone(),
    );

    // 100 agents claim the same waiting conversation through the balancer, 20 times.
    let before: Vec<u64> = b.servers().await.iter().map(|s| s.sessions).collect();
    let mut last_claimed = String::new();
    for (round, customer) in numbered("c", ROUNDS).into_iter().enumerate() {
        b.customers_say("claim-oa", &[(customer.clone(), "Alo".into())])
            .await;
        let sql = format!(
            "SELECT COUNT(*) FROM conversations WHERE customer_id = '{customer}' AND state = 'unclaimed'"
        );
        eventually("the conversation to wait for a claim", || async {
            (b.count(&sql).await == 1).then_some(())
        })
        .await;
        let conversation: String = match &b.db {
            Db::Postgres(d) => {
                sqlx::query_scalar("SELECT id FROM conversations WHERE customer_id = $1")
                    .bind(&customer)
                    .fetch_one(&d.pool)
                    .await
                    .unwrap()
            }
            Db::Sqlite(_) => unreachable!(),
        };
        let claims: Vec<_> = agents
            .iter()
            .map(|(id, token)| {
                let (http, id, token) = (b.http.clone(), id.clone(), token.clone());
                let url = format!("{}/api/v1/conversations/{conversation}/claim", b.base);
                tokio::spawn(async move {
                    let r = http.post(url).bearer_auth(token).send().await.unwrap();
                    let status = r.status();
                    (id, status, r.json::<Value>().await.unwrap_or(Value::Null))
                })
            })
            .collect();
        last_claimed = conversation.clone();
        let (mut winners, mut losers) = (Vec::new(), Vec::new());
        for claim in claims {
            let (id, status, body) = claim.await.unwrap();
            match status {
                StatusCode::OK => winners.push(id),
                StatusCode::CONFLICT => losers.push(body),
                other => panic!("round {round}: {other} {body}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        assert_eq!(losers.len(), CLAIMS - 1, "round {round}");
        for l in &losers {
            assert_eq!(l["error"]["code"], "already_claimed", "{l}");
            assert_eq!(l["error"]["winner"]["id"], json!(winners[0]), "{l}");
        }
    }
    let after: Vec<u64> = b.servers().await.iter().map(|s| s.sessions).collect();
    let spread: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    assert!(
        spread.iter().all(|n| *n >= (ROUNDS * CLAIMS / 10) as u64),
        "the balancer spread the claims over every hub: {spread:?}"
    );

    // A change made through hub C reaches the console on hub A.
    let head = b.head().await;
    let (status, body) = b
        .post_at(
            &b.hub_base(2),
            &format!("/api/v1/conversations/{last_claimed}/release"),
            &b.admin_token,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    eventually("the console on hub A to get hub C's change", || async {
        (on_a.lock().unwrap().last() > head).then_some(())
    })
    .await;

    // 3,000 customers arrive through all three hubs with a 3-member round-robin rule. Meanwhile
    // a console on hub A loses its network, stays away for 1,000 events and more, and resumes on
    // hub B with `since`.
    let rr_page = b.page("rr-oa", &numbered("r", ARRIVALS)).await;
    b.rule("Lần lượt", &rr_page, &names[..3], "round_robin")
        .await;
    let to_a = Proxy::start(format!("127.0.0.1:{}", b.hub_ports[0]).parse().unwrap()).await;
    let to_b = Proxy::start(format!("127.0.0.1:{}", b.hub_ports[1]).parse().unwrap()).await;
    to_b.set_down(true);
    let resumer = follow_stream(
        b.ws_url(&format!("http://{}", to_a.addr), None),
        b.ws_url(&format!("http://{}", to_b.addr), None),
        b.admin_token.clone(),
    );
    let messages: Vec<(String, String)> = numbered("r", ARRIVALS)
        .into_iter()
        .map(|u| (u, "Cho mình hỏi giá".to_string()))
        .collect();
    let (first, rest) = messages.split_at(ARRIVALS / 3);
    b.customers_say("rr-oa", first).await;
    eventually("the resumer to follow", || async {
        (resumer.lock().unwrap().seqs.len() >= 100).then_some(())
    })
    .await;
    to_a.set_down(true);
    b.customers_say("rr-oa", rest).await;
    let sql = format!(
        "SELECT COUNT(*) FROM conversations WHERE connection_id = '{rr_page}' AND assignee IS NOT NULL"
    );
    eventually_explained("3,000 conversations assigned", || async {
        let n = b.count(&sql).await;
        if n == ARRIVALS as i64 {
            Ok(())
        } else {
            Err(format!(": {n}"))
        }
    })
    .await;
    let away = b.head().await - resumer.lock().unwrap().last();
    assert!(away >= 1000, "away for {away} events only");
    to_b.set_down(false);
    let per_member: Vec<i64> = match &b.db {
        Db::Postgres(d) => sqlx::query_scalar(
            "SELECT COUNT(*) FROM conversations WHERE connection_id = $1 GROUP BY assignee",
        )
        .bind(&rr_page)
        .fetch_all(&d.pool)
        .await
        .unwrap(),
        Db::Sqlite(_) => unreachable!(),
    };
    assert_eq!(per_member.len(), 3, "{per_member:?}");
    let (min, max) = (
        per_member.iter().min().unwrap(),
        per_member.iter().max().unwrap(),
    );
    assert!(max - min <= 1, "round robin across hubs: {per_member:?}");

    assert_no_gap_no_repeat(&b, "the console that resumed on hub B", &resumer).await;
    let reconnects = resumer.lock().unwrap().reconnects;
    assert_eq!(reconnects, 1, "the resumer moved to hub B");
    assert_no_gap_no_repeat(&b, "the console on hub A", &on_a).await;
    drop(b.hubs);
}

/// 50 replies accepted by the three hubs while the page's token has expired: one refresh between
/// them (Zalo burns a refresh token on first use), each reply sent once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_replies_on_an_expired_token_through_three_hubs_refresh_once() {
    const REPLIES: usize = 50;
    let b = start_balanced(&pg::database().await).await;
    let (_, agent_token) = b.agent("huongnt").await;
    let customers = numbered("u", REPLIES);
    let page = b.page("reply-oa", &customers).await;
    b.rule("Một người", &page, &["huongnt"], "round_robin")
        .await;
    let messages: Vec<(String, String)> = customers
        .iter()
        .map(|u| (u.clone(), "Alo".to_string()))
        .collect();
    b.customers_say("reply-oa", &messages).await;
    let sql = "SELECT COUNT(*) FROM conversations WHERE assignee IS NOT NULL";
    eventually("50 conversations assigned", || async {
        (b.count(sql).await == REPLIES as i64).then_some(())
    })
    .await;
    let conversations: Vec<String> = match &b.db {
        Db::Postgres(d) => sqlx::query_scalar("SELECT id FROM conversations")
            .fetch_all(&d.pool)
            .await
            .unwrap(),
        Db::Sqlite(_) => unreachable!(),
    };

    let refreshes = || async { b.sim_get("/stats").await["refreshes"].as_u64().unwrap() };
    let before = refreshes().await;
    b.sim_post("/oas/reply-oa/expire-tokens", json!({})).await;
    let servers_before: Vec<u64> = b.servers().await.iter().map(|s| s.sessions).collect();
    let replies: Vec<_> = conversations
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let (http, token) = (b.http.clone(), agent_token.clone());
            let url = format!("{}/api/v1/conversations/{id}/reply", b.base);
            tokio::spawn(async move {
                http.post(url)
                    .bearer_auth(token)
                    .json(&json!({"client_key": format!("k{i}"), "text": format!("Dạ, em chào anh/chị {i}")}))
                    .send()
                    .await
                    .unwrap()
                    .status()
            })
        })
        .collect();
    for reply in replies {
        assert_eq!(reply.await.unwrap(), StatusCode::ACCEPTED);
    }
    let servers_after: Vec<u64> = b.servers().await.iter().map(|s| s.sessions).collect();
    assert!(
        servers_after
            .iter()
            .zip(&servers_before)
            .all(|(a, b)| a > b),
        "every hub took some of the replies: {servers_before:?} → {servers_after:?}"
    );
    let sent = || async { b.sim_get("/sent").await.as_array().unwrap().len() };
    eventually("50 sent", || async {
        (sent().await >= REPLIES).then_some(())
    })
    .await;
    let outstanding = "SELECT COUNT(*) FROM reply_jobs";
    eventually("every job finished", || async {
        (b.count(outstanding).await == 0).then_some(())
    })
    .await;
    assert_eq!(
        refreshes().await - before,
        1,
        "exactly one refresh across the hubs"
    );
    assert_eq!(sent().await, REPLIES, "each reply sent exactly once");
}

/// One hub killed (kill -9) while 10,000 signed webhooks arrive through the balancer: every
/// message is stored exactly once (the simulator retries what was not answered, HAProxy sends
/// it to a living hub), and the console that was on the dead hub resumes through the balancer
/// without a gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hub_killed_during_ten_thousand_webhooks_loses_and_repeats_nothing() {
    const CUSTOMERS: usize = 1000;
    const PER_CUSTOMER: usize = 10;
    let b = start_balanced(&pg::database().await).await;
    let customers = numbered("k", CUSTOMERS);
    b.page("kill-oa", &customers).await;
    // A console on each hub, each resuming through the balancer when its hub goes.
    let consoles: Vec<_> = (0..HUBS)
        .map(|i| {
            follow_stream(
                b.ws_url(&b.hub_base(i), None),
                b.ws_url(&b.base, None),
                b.admin_token.clone(),
            )
        })
        .collect();
    eventually("the consoles to connect", || async {
        consoles
            .iter()
            .all(|c| c.lock().unwrap().connected)
            .then_some(())
    })
    .await;

    let messages: Vec<(String, String)> = (0..PER_CUSTOMER)
        .flat_map(|round| {
            customers
                .iter()
                .map(move |u| (u.clone(), format!("Tin {round} của {u}")))
        })
        .collect();
    let stored = "SELECT COUNT(*) FROM messages WHERE direction = 'inbound'";
    let kill_a_hub = async {
        eventually("a third of the webhooks stored", || async {
            (b.count(stored).await >= (CUSTOMERS * PER_CUSTOMER / 3) as i64).then_some(())
        })
        .await;
        let pid = b.hubs[1].as_ref().unwrap().id();
        // SAFETY: kill has no memory preconditions. SIGKILL: no shutdown, mid-batch.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    };
    let (sent_ids, ()) = tokio::join!(b.customers_say("kill-oa", &messages), kill_a_hub);
    assert_eq!(sent_ids.len(), CUSTOMERS * PER_CUSTOMER);

    eventually_explained("every webhook stored", || async {
        let n = b.count(stored).await;
        if n == sent_ids.len() as i64 {
            Ok(())
        } else {
            Err(format!(": {n}"))
        }
    })
    .await;
    let stored_ids: Vec<String> = match &b.db {
        Db::Postgres(d) => sqlx::query_scalar(
            "SELECT zalo_msg_id FROM messages WHERE direction = 'inbound' ORDER BY zalo_msg_id",
        )
        .fetch_all(&d.pool)
        .await
        .unwrap(),
        Db::Sqlite(_) => unreachable!(),
    };
    let mut expected = sent_ids.clone();
    expected.sort();
    assert!(
        stored_ids == expected,
        "each message the customers sent, once"
    );
    assert_eq!(
        b.count("SELECT COUNT(*) FROM webhooks").await,
        sent_ids.len() as i64
    );
    assert_eq!(b.count("SELECT COUNT(*) FROM dead_webhooks").await, 0);
    let stats = b.sim_get("/stats").await;
    assert!(
        stats["webhook_attempts_failed"].as_u64().unwrap() > 0,
        "the kill caught webhooks in flight, which Zalo retried: {stats}"
    );

    for (i, console) in consoles.iter().enumerate() {
        assert_no_gap_no_repeat(&b, &format!("the console on hub {i}"), console).await;
    }
    let moved = consoles[1].lock().unwrap().reconnects;
    assert_eq!(
        moved, 1,
        "the dead hub's console resumed through the balancer"
    );
}

/// PostgreSQL restarted while webhooks and API writes arrive: the hubs answer 503 meanwhile (and
/// say so on /healthz), then recover by themselves; every acknowledged write and every webhook is
/// there afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgresql_restarted_under_load_answers_503_then_recovers() {
    const MESSAGES: usize = 3000;
    let cluster = Arc::new(pg::Cluster::start());
    let b = start_balanced(&cluster.database().await).await;
    let customers = numbered("p", 300);
    b.page("restart-oa", &customers).await;
    let messages: Vec<(String, String)> = (0..MESSAGES)
        .map(|i| (customers[i % customers.len()].clone(), format!("Tin {i}")))
        .collect();

    // Accounts created through the balancer all along: which were acknowledged, what came back.
    let writing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let writes = {
        let (http, base, token, writing) = (
            b.http.clone(),
            b.base.clone(),
            b.admin_token.clone(),
            writing.clone(),
        );
        tokio::spawn(async move {
            let (mut acknowledged, mut statuses) = (Vec::new(), Vec::new());
            let mut i = 0;
            while writing.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                let name = format!("w{i:05}");
                let r = http
                    .post(format!("{base}/api/v1/accounts"))
                    .bearer_auth(&token)
                    .json(&json!({"email": format!("{name}@sop.vn"), "username": name,
                                  "name": name, "role": "agent"}))
                    .send()
                    .await
                    .unwrap();
                if r.status() == StatusCode::CREATED {
                    acknowledged.push(name);
                }
                statuses.push(r.status());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (acknowledged, statuses)
        })
    };

    let stored = "SELECT COUNT(*) FROM messages WHERE direction = 'inbound'";
    let restart = async {
        eventually("some webhooks stored", || async {
            (b.count(stored).await >= 500).then_some(())
        })
        .await;
        let back = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let restarted = {
            let (cluster, back) = (cluster.clone(), back.clone());
            tokio::task::spawn_blocking(move || {
                cluster.restart(Duration::from_secs(8));
                back.store(true, std::sync::atomic::Ordering::Relaxed);
            })
        };
        // While it is down, each hub says so (each asked on its own: a probe may take seconds).
        let probes: Vec<_> = (0..HUBS)
            .map(|i| {
                let (http, url, back) = (
                    b.http.clone(),
                    format!("{}/healthz", b.hub_base(i)),
                    back.clone(),
                );
                tokio::spawn(async move {
                    while !back.load(std::sync::atomic::Ordering::Relaxed) {
                        let r = http.get(&url).send().await;
                        if matches!(r, Ok(r) if r.status() == StatusCode::SERVICE_UNAVAILABLE) {
                            return true;
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    false
                })
            })
            .collect();
        let mut unhealthy = Vec::new();
        for probe in probes {
            unhealthy.push(probe.await.unwrap());
        }
        restarted.await.unwrap();
        unhealthy
    };
    let (sent_ids, unhealthy) = tokio::join!(b.customers_say("restart-oa", &messages), restart);
    assert_eq!(
        unhealthy,
        vec![true; HUBS],
        "every hub's /healthz said 503 while PostgreSQL was down"
    );

    eventually("every hub healthy again behind the balancer", || async {
        let up = b.servers().await.iter().filter(|s| s.up).count();
        (up == HUBS).then_some(())
    })
    .await;
    eventually_explained("every webhook stored", || async {
        let n = b.count(stored).await;
        if n == MESSAGES as i64 {
            Ok(())
        } else {
            Err(format!(": {n}"))
        }
    })
    .await;
    writing.store(false, std::sync::atomic::Ordering::Relaxed);
    let (acknowledged, statuses) = writes.await.unwrap();
    assert!(
        statuses.contains(&StatusCode::SERVICE_UNAVAILABLE),
        "writes were refused while PostgreSQL was down"
    );
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::CREATED || *s == StatusCode::SERVICE_UNAVAILABLE),
        "only 201 or 503: {:?}",
        statuses
            .iter()
            .filter(|s| **s != StatusCode::CREATED)
            .collect::<Vec<_>>()
    );
    assert_eq!(
        statuses.last(),
        Some(&StatusCode::CREATED),
        "writes work again"
    );
    let stored_accounts: Vec<String> = match &b.db {
        Db::Postgres(d) => {
            sqlx::query_scalar("SELECT username FROM accounts WHERE username LIKE 'w%'")
                .fetch_all(&d.pool)
                .await
                .unwrap()
        }
        Db::Sqlite(_) => unreachable!(),
    };
    for name in &acknowledged {
        assert!(stored_accounts.contains(name), "acknowledged {name} lost");
    }
    let stored_ids: std::collections::BTreeSet<String> = match &b.db {
        Db::Postgres(d) => {
            sqlx::query_scalar("SELECT zalo_msg_id FROM messages WHERE direction = 'inbound'")
                .fetch_all(&d.pool)
                .await
                .unwrap()
                .into_iter()
                .collect()
        }
        Db::Sqlite(_) => unreachable!(),
    };
    assert_eq!(
        stored_ids,
        sent_ids.into_iter().collect(),
        "each webhook once"
    );
}
