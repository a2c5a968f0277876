//! Fault tests: kill -9 during a stream of signed webhooks, duplicate / out-of-order / delayed
//! deliveries, a webhook target that is down, rate limiting and token expiry during a burst of
//! replies, and 200 consoles reconnecting at once after a hub restart.

mod common;
use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};
use sop_console::wire::Frame;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};

const OA: &str = "1423847451268726170";

async fn post(http: &reqwest::Client, url: String, body: Value) {
    let r = http.post(&url).json(&body).send().await.unwrap();
    assert!(r.status().is_success(), "{url}: {}", r.status());
}

async fn sim_stats(http: &reqwest::Client, sim: &str) -> Value {
    http.get(format!("{sim}/sim/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Every message the hub holds, over the API (admin view).
async fn all_messages(http: &reqwest::Client, hub: &str, token: &str) -> Vec<Value> {
    let mut out = vec![];
    let convs: Value = get_json(
        http,
        format!("{hub}/api/v1/conversations?view=all&limit=500"),
        token,
    )
    .await;
    for c in convs["items"].as_array().unwrap() {
        let mut before: Option<String> = None;
        loop {
            let url = match &before {
                Some(b) => format!(
                    "{hub}/api/v1/conversations/{}/messages?limit=500&before={b}",
                    c["id"].as_str().unwrap()
                ),
                None => format!(
                    "{hub}/api/v1/conversations/{}/messages?limit=500",
                    c["id"].as_str().unwrap()
                ),
            };
            let page: Value = get_json(http, url, token).await;
            out.extend(page["items"].as_array().unwrap().iter().cloned());
            match page["next_cursor"].as_str() {
                Some(n) => before = Some(n.to_string()),
                None => break,
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_during_ten_thousand_webhooks_loses_and_duplicates_nothing() {
    const USERS: usize = 100;
    const PER_USER: usize = 100;
    let dir = temp_dir("kill9");
    let port = process::free_port();
    let hub = format!("http://127.0.0.1:{port}");
    let (_sim, sim) = process::sim_for(port).await;
    let http = reqwest::Client::new();
    let customers: Vec<Value> = (0..USERS)
        .map(|i| json!({"user_id": format!("u{i:03}"), "name": format!("Khách {i}")}))
        .collect();
    post(
        &http,
        format!("{sim}/sim/oas"),
        json!({"oa_id": OA, "name": "OA", "admins": ["z1"], "customers": customers}),
    )
    .await;
    let token = process::admin_token(&dir);
    let mut proc = process::hub(&dir, port, Some(&sim));
    assert_eq!(
        consent(&http, &hub, &token, &sim, OA, "z1", "allow")
            .await
            .0,
        200
    );

    // 10,000 customer messages, queued at the simulator, which delivers them as Zalo does.
    let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let producer = {
        let (http, sim, sent) = (http.clone(), sim.clone(), sent.clone());
        tokio::spawn(async move {
            let jobs = futures_util::stream::iter(0..USERS * PER_USER).map(|n| {
                let (http, sim, sent) = (http.clone(), sim.clone(), sent.clone());
                async move {
                    let user = format!("u{:03}", n % USERS);
                    post(
                        &http,
                        format!("{sim}/sim/oas/{OA}/customers/{user}/messages"),
                        json!({"text": format!("tin {n}")}),
                    )
                    .await;
                    sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            });
            jobs.buffer_unordered(16).collect::<Vec<_>>().await;
        })
    };
    // Kill the hub mid-stream, then bring it back on the same port and data dir.
    eventually("3,000 webhooks delivered", || async {
        (sim_stats(&http, &sim).await["webhooks_delivered"]
            .as_u64()
            .unwrap()
            >= 3000)
            .then_some(())
    })
    .await;
    proc.kill().unwrap(); // SIGKILL
    proc.wait().unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut proc = process::hub(&dir, port, Some(&sim));
    producer.await.unwrap();

    for _ in 0..600 {
        let st = sim_stats(&http, &sim).await;
        if st["webhooks_delivered"].as_u64() >= Some((USERS * PER_USER) as u64) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let msgs = eventually("all 10,000 stored", || async {
        let m = all_messages(&http, &hub, &token).await;
        (m.len() >= USERS * PER_USER).then_some(m)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let msgs = if msgs.len() == USERS * PER_USER {
        all_messages(&http, &hub, &token).await
    } else {
        msgs
    };
    let ids: HashSet<&str> = msgs
        .iter()
        .map(|m| m["zalo_msg_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), USERS * PER_USER, "every event stored");
    assert_eq!(msgs.len(), USERS * PER_USER, "and exactly once");
    let st = sim_stats(&http, &sim).await;
    assert!(
        st["webhook_attempts_failed"].as_u64().unwrap() > 0,
        "the kill really interrupted deliveries: {st}"
    );
    proc.kill().unwrap();
    proc.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplicates_reordering_downtime_rate_limits_and_token_expiry_lose_nothing_and_send_once() {
    let s = start_stack().await;
    let users: Vec<String> = (0..20).map(|i| format!("c{i:02}")).collect();
    let spec: Vec<(&str, &str, i64)> = users.iter().map(|u| (u.as_str(), "Khách", 0)).collect();
    s.sim_oa(OA, "OA", &spec).await;
    assert_eq!(s.connect(OA, "zalo-admin-1", "allow").await.0, 200);

    // Customers write while the simulator duplicates and reorders deliveries.
    s.sim_post("/faults", json!({"duplicate_next": 15, "reorder_next": 6}))
        .await;
    for u in &users {
        s.customer_says(OA, u, &format!("Xin chào từ {u}")).await;
    }
    // The target goes down for a while: Zalo's retries bring these in later.
    s.sim_post("/faults", json!({"webhook_down": true})).await;
    for u in &users[..5] {
        s.customer_says(OA, u, &format!("Lúc hub sập {u}")).await;
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    s.sim_post("/faults", json!({"webhook_down": false})).await;
    s.customer_says(OA, &users[19], "tin cuối").await; // releases a held (reordered) delivery
    let inbound = eventually("26 customer messages", || async {
        let m = all_messages(&s.t.http, &s.t.base, &s.t.admin_token).await;
        let inbound: Vec<Value> = m
            .into_iter()
            .filter(|m| m["direction"] == "inbound")
            .collect();
        (inbound.len() >= 26).then_some(inbound)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let again: Vec<Value> = all_messages(&s.t.http, &s.t.base, &s.t.admin_token)
        .await
        .into_iter()
        .filter(|m| m["direction"] == "inbound")
        .collect();
    assert_eq!(
        again.len(),
        26,
        "each customer message once: {}",
        inbound.len()
    );

    // A burst of replies while Zalo rate-limits and the token has expired.
    s.sim_post("/faults", json!({"rate_limit_next": 12})).await;
    s.sim_post(&format!("/oas/{OA}/expire-tokens"), json!({}))
        .await;
    let before = s.sim_get("/stats").await["refreshes"].as_u64().unwrap();
    let convs: Value =
        s.t.get("/api/v1/conversations?view=all&limit=100", &s.t.admin_token)
            .await
            .1;
    let mut replies = vec![];
    for c in convs["items"].as_array().unwrap() {
        // Conversations in parallel; within one, replies in the order they are typed.
        let (http, url, token) = (
            s.t.http.clone(),
            format!(
                "{}/api/v1/conversations/{}/reply",
                s.t.base,
                c["id"].as_str().unwrap()
            ),
            s.t.admin_token.clone(),
        );
        let user = c["customer"]["user_id"].as_str().unwrap().to_string();
        replies.push(tokio::spawn(async move {
            for k in 0..5 {
                let text = format!("Trả lời {user} #{k}");
                let r = http
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({"client_key": text.clone(), "text": text}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 202);
            }
        }));
    }
    for r in replies {
        r.await.unwrap();
    }
    eventually("100 replies at the simulator", || async {
        (s.sim_get("/sent").await.as_array().unwrap().len() >= 100).then_some(())
    })
    .await;
    eventually("no job left", || async {
        s.t.hub
            .outbound_jobs()
            .await
            .unwrap()
            .is_empty()
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = s.sim_get("/sent").await;
    let sent = sent.as_array().unwrap();
    assert_eq!(sent.len(), 100, "nothing sent twice");
    // Per customer, in the order they were typed.
    let mut per_user: HashMap<String, Vec<String>> = HashMap::new();
    for m in sent {
        per_user
            .entry(m["user_id"].as_str().unwrap().to_string())
            .or_default()
            .push(m["text"].as_str().unwrap().to_string());
    }
    for (u, texts) in per_user {
        let expected: Vec<String> = (0..5).map(|k| format!("Trả lời {u} #{k}")).collect();
        assert_eq!(texts, expected, "order within the conversation");
    }
    assert_eq!(
        s.sim_get("/stats").await["refreshes"].as_u64().unwrap() - before,
        1,
        "one refresh"
    );
    let outbound: Vec<Value> = all_messages(&s.t.http, &s.t.base, &s.t.admin_token)
        .await
        .into_iter()
        .filter(|m| m["direction"] == "outbound")
        .collect();
    assert_eq!(outbound.len(), 100, "echoes did not add messages");
    assert!(
        outbound.iter().all(|m| m["delivery"] == "sent"),
        "none failed"
    );

    // Receipts out of order: seen overtakes delivered; the state ends at seen.
    let zid = sent[0]["msg_id"].as_str().unwrap();
    s.sim_post("/faults", json!({"reorder_next": 1})).await;
    s.sim_post("/receipts", json!({"msg_id": zid, "kind": "delivered"}))
        .await;
    s.sim_post("/receipts", json!({"msg_id": zid, "kind": "seen"}))
        .await;
    eventually("seen", || async {
        all_messages(&s.t.http, &s.t.base, &s.t.admin_token)
            .await
            .into_iter()
            .find(|m| m["zalo_msg_id"] == zid && m["delivery"] == "seen")
    })
    .await;
    s.t.stop().await;
}

/// A console's view of the stream: reconnects with `since`, records every sequence number.
async fn follower(
    base: String,
    token: String,
    seqs: Arc<parking_lot::Mutex<Vec<u64>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    let base = base.replacen("http://", "ws://", 1);
    let mut since: Option<u64> = None;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let url = match since {
            Some(s) => format!("{base}/api/v1/stream?since={s}"),
            None => format!("{base}/api/v1/stream"),
        };
        let mut req = url.into_client_request().unwrap();
        req.headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        if let Ok((mut ws, _)) = tokio_tungstenite::connect_async(req).await {
            while let Ok(Some(Ok(msg))) =
                tokio::time::timeout(Duration::from_millis(500), ws.next())
                    .await
                    .map(|m| m.map(|r| r.map_err(|_| ())))
            {
                if let Message::Text(t) = msg {
                    match serde_json::from_str::<Frame>(&t).unwrap() {
                        Frame::Hello { head, .. } if since.is_none() => since = Some(head),
                        Frame::Event { event } => {
                            seqs.lock().push(event.seq);
                            since = Some(event.seq);
                        }
                        Frame::Resync { .. } => panic!("no client should need a resync"),
                        _ => {}
                    }
                }
            }
        }
        // Reconnect with jitter, as the console does.
        tokio::time::sleep(Duration::from_millis(20 + rand::random::<u64>() % 300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_consoles_reconnecting_after_a_restart_miss_nothing() {
    let dir = temp_dir("reconnect200");
    let port = process::free_port();
    let hub = format!("http://127.0.0.1:{port}");
    let (_sim, sim) = process::sim_for(port).await;
    let http = reqwest::Client::new();
    post(&http, format!("{sim}/sim/oas"), json!({"oa_id": OA, "name": "OA", "admins": ["z1"], "customers": [{"user_id": "u1", "name": "A"}, {"user_id": "u2", "name": "B"}]})).await;
    let token = process::admin_token(&dir);
    let mut proc = process::hub(&dir, port, Some(&sim));
    assert_eq!(
        consent(&http, &hub, &token, &sim, OA, "z1", "allow")
            .await
            .0,
        200
    );

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let logs: Vec<Arc<parking_lot::Mutex<Vec<u64>>>> = (0..200).map(|_| Arc::default()).collect();
    let mut tasks: Vec<_> = logs
        .iter()
        .map(|l| {
            tokio::spawn(follower(
                hub.clone(),
                token.clone(),
                l.clone(),
                stop.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;

    let say = |n: usize| {
        let (http, sim) = (http.clone(), sim.clone());
        async move {
            post(
                &http,
                format!("{sim}/sim/oas/{OA}/customers/u{}/messages", 1 + n % 2),
                json!({"text": format!("m{n}")}),
            )
            .await
        }
    };
    for n in 0..20 {
        say(n).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    proc.kill().unwrap();
    proc.wait().unwrap();
    for n in 20..30 {
        say(n).await; // delivered by Zalo's retries once the hub is back
    }
    let mut proc = process::hub(&dir, port, Some(&sim));
    for n in 30..50 {
        say(n).await;
    }
    // Wait for the hub to hold all 50 messages, then for every client to catch up.
    rethrow_panics(&mut tasks);
    eventually("50 messages stored", || async {
        (all_messages(&http, &hub, &token).await.len() == 50).then_some(())
    })
    .await;
    let head = {
        let mut req = format!("ws://127.0.0.1:{port}/api/v1/stream")
            .into_client_request()
            .unwrap();
        req.headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
        match ws.next().await.unwrap().unwrap() {
            Message::Text(t) => match serde_json::from_str::<Frame>(&t).unwrap() {
                Frame::Hello { head, .. } => head,
                f => panic!("{f:?}"),
            },
            m => panic!("{m:?}"),
        }
    };
    // Events may follow `head` (profiles fetched in the background), so "caught up" is `>= head`.
    eventually_explained("every console at or past the head", || {
        rethrow_panics(&mut tasks);
        async {
            let behind: Vec<(usize, Option<u64>)> = logs
                .iter()
                .enumerate()
                .map(|(i, l)| (i, l.lock().last().copied()))
                .filter(|(_, last)| last.is_none_or(|s| s < head))
                .collect();
            if behind.is_empty() {
                return Ok(());
            }
            Err(format!(
                ": {} consoles never reached head {head}; first few (console, last seq): {:?}",
                behind.len(),
                &behind[..behind.len().min(10)]
            ))
        }
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for (i, l) in logs.iter().enumerate() {
        let seqs = l.lock().clone();
        let (first, last) = (seqs[0], *seqs.last().unwrap());
        let expected: Vec<u64> = (first..=last).collect();
        assert_eq!(
            seqs, expected,
            "console {i}: every event once, in order, no gap"
        );
    }
    for t in tasks {
        t.abort();
    }
    proc.kill().unwrap();
    proc.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
