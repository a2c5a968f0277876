//! The real simulator and the real hub over loopback HTTP: the seed scenario end to end,
//! webhook signatures, token refresh under concurrency, revoked grants, history sync.

mod common;
use common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::HashMap;

const OA: &str = "1423847451268726170";
const OA_NAME: &str = "Công ty Luật TNHH Thành Đồng";

async fn conversations(s: &Stack, token: &str, view: &str) -> Vec<Value> {
    let (_, body) =
        s.t.get(
            &format!("/api/v1/conversations?view={view}&limit=500"),
            token,
        )
        .await;
    body["items"].as_array().cloned().unwrap_or_default()
}

async fn messages(s: &Stack, conv: &str) -> Vec<Value> {
    let (_, body) =
        s.t.get(
            &format!("/api/v1/conversations/{conv}/messages"),
            &s.t.admin_token,
        )
        .await;
    body["items"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seed_scenario_end_to_end() {
    let s = start_stack().await;
    let customers: Vec<(String, String)> = (0..7)
        .map(|i| (format!("84900000{i:03}"), format!("Khách {i}")))
        .collect();
    let cust: Vec<(&str, &str, i64)> = customers
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str(), 0))
        .collect();
    s.sim_oa(OA, OA_NAME, &cust).await;

    // The admin's console listens for the connection event.
    let mut sock = ws::connect(&s.t.ws_url(None), &s.t.admin_token).await;
    assert!(matches!(
        ws::next(&mut sock, std::time::Duration::from_secs(5)).await,
        Some(sop_console::wire::Frame::Hello { .. })
    ));

    // Only an admin of the OA may grant; a denial is shown clearly.
    let (status, page) = s.connect(OA, "khach-vang-lai", "allow").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{page}");
    assert!(page.contains("admin của Trang OA"));
    let (status, page) = s.connect(OA, "zalo-admin-1", "deny").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("từ chối"), "{page}");

    let (status, page) = s.connect(OA, "zalo-admin-1", "allow").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("Kết nối OA thành công"));
    let (_, conns) = s.t.get("/api/v1/connections", &s.t.admin_token).await;
    let conn = conns[0].clone();
    assert_eq!(conn["status"], "connected");
    assert_eq!(conn["name"], OA_NAME);
    assert_eq!(conn["oa_id"], OA);
    assert!(conn["token_expires_at"].as_i64().unwrap() > sop_console::model::now_ms());

    // The console is told live, with who started it.
    let event = loop {
        match ws::next(&mut sock, std::time::Duration::from_secs(10)).await {
            Some(sop_console::wire::Frame::Event { event }) => {
                if let sop_console::wire::EventBody::Connection {
                    connection,
                    started_by,
                } = event.body
                {
                    break (connection, started_by);
                }
            }
            Some(_) => {}
            None => panic!("no connection event"),
        }
    };
    assert_eq!(event.0.oa_id, OA);
    assert_eq!(event.1.as_deref(), Some(s.t.admin.id.as_str()));

    // "Chia chat cho nhóm Best Sale": round robin over three agents; 6 new customers → 2 each.
    let mut tokens = HashMap::new();
    for u in ["HuongNT256", "QueCT3", "TriLM22"] {
        let (a, t) = s.t.account(u, "agent").await;
        tokens.insert(a.id.clone(), t);
    }
    let conn_id = conn["id"].as_str().unwrap();
    let (status, rule) = s
        .t
        .post(
            "/api/v1/rules",
            &s.t.admin_token,
            json!({"name": "Chia chat cho nhóm Best Sale", "sources": [conn_id], "members": ["HuongNT256", "QueCT3", "TriLM22"],
                   "method": "round_robin", "old_conversations": "none"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{rule}");
    for (user, _) in &customers[..6] {
        s.customer_says(OA, user, "Chào shop, cho em hỏi giá").await;
    }
    let all = eventually("6 conversations", || async {
        let all = conversations(&s, &s.t.admin_token, "all").await;
        (all.len() == 6 && all.iter().all(|c| c["state"] == "assigned")).then_some(all)
    })
    .await;
    let mut per: HashMap<String, usize> = HashMap::new();
    for c in &all {
        *per.entry(c["assignee"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(per.len(), 3);
    assert!(per.values().all(|&n| n == 2), "{per:?}");
    // Customer profiles arrive from user/detail.
    eventually("profiles", || async {
        let all = conversations(&s, &s.t.admin_token, "all").await;
        all.iter()
            .all(|c| {
                c["customer"]["display_name"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("Khách")
            })
            .then_some(())
    })
    .await;

    // Switched to self-claim with ten members: 10 concurrent claims → exactly one winner.
    let mut members = vec!["HuongNT256".to_string(), "QueCT3".into(), "TriLM22".into()];
    for i in 0..7 {
        let (a, t) = s.t.account(&format!("trucchat{i}"), "agent").await;
        tokens.insert(a.id.clone(), t);
        members.push(a.username);
    }
    let (status, _) = s
        .t
        .call(
            reqwest::Method::PUT,
            &format!("/api/v1/rules/{}", rule["id"].as_str().unwrap()),
            Some(&s.t.admin_token),
            Some(json!({"name": "Chia chat cho nhóm Best Sale", "sources": [conn_id], "members": members, "method": "self_claim", "old_conversations": "none"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (new_user, _) = &customers[6];
    s.customer_says(OA, new_user, "Em cần tư vấn gấp").await;
    let conv = eventually("unclaimed conversation", || async {
        conversations(&s, &s.t.admin_token, "unclaimed")
            .await
            .into_iter()
            .next()
    })
    .await;
    let conv_id = conv["id"].as_str().unwrap().to_string();
    let mut claims = Vec::new();
    for token in tokens.values() {
        let token = token.clone();
        let (http, url) = (
            s.t.http.clone(),
            format!("{}/api/v1/conversations/{conv_id}/claim", s.t.base),
        );
        claims.push(tokio::spawn(async move {
            http.post(url)
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    let mut won = 0;
    for c in claims {
        match c.await.unwrap() {
            StatusCode::OK => won += 1,
            StatusCode::CONFLICT => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(won, 1);
    let (_, conv) =
        s.t.get(
            &format!("/api/v1/conversations/{conv_id}"),
            &s.t.admin_token,
        )
        .await;
    let winner = conv["assignee"].as_str().unwrap().to_string();

    // The winner's reply reaches the customer; delivered and seen come back as states.
    let (status, msg) =
        s.t.post(
            &format!("/api/v1/conversations/{conv_id}/reply"),
            &tokens[&winner],
            json!({"client_key": "r1", "text": "Dạ, em chào anh ạ"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{msg}");
    let sent = eventually("send at the simulator", || async {
        let sent = s.sim_get(&format!("/sent?user_id={new_user}")).await;
        sent.as_array().and_then(|a| a.first().cloned())
    })
    .await;
    assert_eq!(sent["text"], "Dạ, em chào anh ạ");
    let zalo_id = sent["msg_id"].as_str().unwrap().to_string();
    let msg_id = msg["id"].as_str().unwrap().to_string();
    let delivery = |want: &'static str| {
        let (s, conv_id, msg_id) = (&s, conv_id.clone(), msg_id.clone());
        async move {
            eventually(want, || async {
                let ms = messages(s, &conv_id).await;
                let m = ms.iter().find(|m| m["id"] == json!(msg_id))?.clone();
                (m["delivery"] == want).then_some(m)
            })
            .await
        }
    };
    let m = delivery("sent").await;
    assert_eq!(m["zalo_msg_id"], json!(zalo_id));
    s.sim_post("/receipts", json!({"msg_id": zalo_id, "kind": "delivered"}))
        .await;
    delivery("delivered").await;
    s.sim_post("/receipts", json!({"msg_id": zalo_id, "kind": "seen"}))
        .await;
    delivery("seen").await;
    // The echo of our own send did not add a second message.
    let outbound = messages(&s, &conv_id)
        .await
        .iter()
        .filter(|m| m["direction"] == "outbound")
        .count();
    assert_eq!(outbound, 1);

    // A staff reply typed in Zalo's OA Manager shows as an outbound message.
    s.sim_post(
        &format!("/oas/{OA}/customers/{new_user}/staff-reply"),
        json!({"text": "Gửi từ OA Manager"}),
    )
    .await;
    eventually("OA manager reply", || async {
        messages(&s, &conv_id)
            .await
            .iter()
            .any(|m| m["sender"] == "oa_manager" && m["text"] == "Gửi từ OA Manager")
            .then_some(())
    })
    .await;
    s.t.stop().await;
}

#[tokio::test]
async fn webhook_signatures_and_bad_input() {
    let s = start_stack().await;
    s.sim_oa(OA, OA_NAME, &[("u1", "Lan", 0)]).await;
    assert_eq!(
        s.connect(OA, "zalo-admin-1", "allow").await.0,
        StatusCode::OK
    );
    let url = format!("{}/zalo/webhook", s.t.base);
    let now = sop_console::model::now_ms();
    let body = format!(
        r#"{{"app_id":"{APP_ID}","sender":{{"id":"u1"}},"recipient":{{"id":"{OA}"}},"event_name":"user_send_text","message":{{"text":"Xin chào","msg_id":"abc123"}},"timestamp":"{now}"}}"#
    );
    let post = |body: String, sig: Option<String>| {
        let mut r =
            s.t.http
                .post(&url)
                .header("content-type", "application/json")
                .body(body);
        if let Some(sig) = sig {
            r = r.header("X-ZEvent-Signature", sig);
        }
        r.send()
    };
    let good = signed(&body);
    assert_eq!(
        post(body.clone(), Some(good.clone()))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        post(
            body.clone(),
            Some(good.trim_start_matches("mac=").to_string())
        )
        .await
        .unwrap()
        .status(),
        200,
        "without mac= prefix"
    );
    let wrong_secret =
        sop_console::zalo::webhook_mac(APP_ID, body.as_bytes(), &now.to_string(), APP_SECRET);
    assert_eq!(
        post(body.clone(), Some(wrong_secret))
            .await
            .unwrap()
            .status(),
        401,
        "app secret is not the OA secret key"
    );
    assert_eq!(
        post(body.replace("Xin chào", "Xin chao"), Some(good.clone()))
            .await
            .unwrap()
            .status(),
        401,
        "altered body"
    );
    assert_eq!(
        post(body.clone(), None).await.unwrap().status(),
        401,
        "missing header"
    );
    let r = post("{not json".into(), Some(good.clone())).await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "malformed_json"
    );
    assert_eq!(
        post("x".repeat(2 << 20), Some(good))
            .await
            .unwrap()
            .status(),
        413
    );

    // The two accepted deliveries of the same msg_id made one message; an unknown event is kept.
    let unknown = format!(
        r#"{{"app_id":"{APP_ID}","event_name":"shop_has_order","oa_id":"{OA}","order":{{"id":"1"}},"timestamp":"{}"}}"#,
        now + 6
    );
    assert_eq!(
        post(unknown.clone(), Some(signed(&unknown)))
            .await
            .unwrap()
            .status(),
        200
    );
    let conv = eventually("conversation", || async {
        conversations(&s, &s.t.admin_token, "all")
            .await
            .into_iter()
            .next()
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let ms = messages(&s, conv["id"].as_str().unwrap()).await;
    assert_eq!(ms.len(), 1, "{ms:?}");
    let raw = common::count(
        s.t.hub.db(),
        "SELECT COUNT(*) FROM raw_events WHERE body LIKE '%shop_has_order%'",
    )
    .await;
    assert_eq!(raw, 1, "the unknown event is kept raw");

    // The simulator's duplicate deliveries and retries still produce one message each.
    s.sim_post("/faults", json!({"duplicate_next": 5})).await;
    for i in 0..5 {
        s.customer_says(OA, "u1", &format!("tin {i}")).await;
    }
    s.sim_post("/faults", json!({"webhook_down": true})).await;
    s.customer_says(OA, "u1", "sau khi hub sập").await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    s.sim_post("/faults", json!({"webhook_down": false})).await;
    let ms = eventually("retried message", || async {
        let ms = messages(&s, conv["id"].as_str().unwrap()).await;
        ms.iter()
            .any(|m| m["text"] == "sau khi hub sập")
            .then_some(ms)
    })
    .await;
    assert_eq!(ms.len(), 7, "1 + 5 duplicated + 1 retried, each once");
    s.t.stop().await;
}

/// A connected OA whose `n` customers each wrote once, every conversation assigned to one agent
/// by a round-robin rule; the agent's token and the conversations.
async fn conversations_of_one_agent(s: &Stack, n: usize) -> (String, Vec<Value>) {
    let users: Vec<String> = (0..n).map(|i| format!("u{i:02}")).collect();
    let cust: Vec<(&str, &str, i64)> = users.iter().map(|u| (u.as_str(), "Khách", 0)).collect();
    s.sim_oa(OA, OA_NAME, &cust).await;
    let (_, agent_token) = s.page_for_agent(OA, "HuongNT256").await;
    for u in &users {
        s.customer_says(OA, u, "Alo").await;
    }
    let convs = eventually("every conversation assigned", || async {
        let c = conversations(s, &agent_token, "mine").await;
        (c.len() == n).then_some(c)
    })
    .await;
    (agent_token, convs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_sends_with_an_expired_token_refresh_once() {
    let s = start_stack().await;
    let (agent_token, convs) = conversations_of_one_agent(&s, 50).await;
    let conn =
        s.t.hub
            .read(|st| st.connections().next().unwrap().clone())
            .await;
    let before = s.sim_get("/stats").await["refreshes"].as_u64().unwrap();
    s.sim_post(&format!("/oas/{OA}/expire-tokens"), json!({}))
        .await;
    let mut sends = Vec::new();
    for (i, c) in convs.iter().enumerate() {
        let (http, url, token) = (
            s.t.http.clone(),
            format!(
                "{}/api/v1/conversations/{}/reply",
                s.t.base,
                c["id"].as_str().unwrap()
            ),
            agent_token.clone(),
        );
        sends.push(tokio::spawn(async move {
            http.post(url)
                .bearer_auth(token)
                .json(&json!({"client_key": format!("k{i}"), "text": format!("Trả lời {i}")}))
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    for r in sends {
        assert_eq!(r.await.unwrap(), StatusCode::ACCEPTED);
    }
    eventually("50 sent", || async {
        (s.sim_get("/sent").await.as_array().unwrap().len() == 50).then_some(())
    })
    .await;
    let after = s.sim_get("/stats").await["refreshes"].as_u64().unwrap();
    assert_eq!(
        after - before,
        1,
        "exactly one refresh for 50 concurrent sends"
    );
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        s.sim_get("/sent").await.as_array().unwrap().len(),
        50,
        "each reply sent exactly once"
    );
    eventually("all marked sent", || async {
        let jobs = s.t.hub.outbound_jobs().await.unwrap();
        jobs.is_empty().then_some(())
    })
    .await;

    // The grant is revoked: the page needs re-authorisation and queued replies fail with a reason.
    s.sim_post(&format!("/oas/{OA}/revoke"), json!({})).await;
    eventually("needs_reauth", || async {
        let (_, c) =
            s.t.get(
                &format!("/api/v1/connections/{}", conn.id),
                &s.t.admin_token,
            )
            .await;
        (c["status"] == "needs_reauth" && c["status_reason"].as_str().is_some()).then_some(())
    })
    .await;
    let conv_id = convs[0]["id"].as_str().unwrap();
    let (_, m) =
        s.t.post(
            &format!("/api/v1/conversations/{conv_id}/reply"),
            &agent_token,
            json!({"client_key": "after-revoke", "text": "Còn đó không?"}),
        )
        .await;
    let failed = eventually("failed reply", || async {
        messages(&s, conv_id)
            .await
            .into_iter()
            .find(|x| x["id"] == m["id"] && x["delivery"] == "failed")
    })
    .await;
    assert!(
        failed["error_reason"]
            .as_str()
            .unwrap()
            .contains("re-authorisation"),
        "{failed}"
    );
    assert_eq!(
        s.sim_get("/sent").await.as_array().unwrap().len(),
        50,
        "nothing sent on a revoked grant"
    );
    s.t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_sync_pages_and_each_old_conversation_option() {
    let s = start_stack().await;
    // 12 threads (more than one page of 10); "long" has 15 messages (more than one page).
    let mut cust: Vec<(String, i64)> = (0..12)
        .map(|i| (format!("h{i:02}"), if i < 5 { 1 } else { 10 }))
        .collect();
    cust[0].0 = "long".into();
    let spec: Vec<(&str, &str, i64)> = cust
        .iter()
        .map(|(u, d)| (u.as_str(), "Khách cũ", *d))
        .collect();
    s.sim_oa(OA, OA_NAME, &spec).await;
    let now = sop_console::model::now_ms();
    for (u, days) in &cust {
        let n = if u == "long" { 15 } else { 2 };
        let msgs: Vec<Value> = (0..n)
            .map(|i| json!({"src": (i % 2 == 0) as u8, "text": format!("cũ {i}"), "time": now - days * 86_400_000 - (n - i) * 60_000}))
            .collect();
        s.sim_post(
            &format!("/oas/{OA}/customers/{u}/history"),
            json!({"messages": msgs}),
        )
        .await;
    }
    assert_eq!(
        s.connect(OA, "zalo-admin-1", "allow").await.0,
        StatusCode::OK
    );
    let all = eventually("12 history conversations", || async {
        let all = conversations(&s, &s.t.admin_token, "all").await;
        (all.len() == 12 && messages_total(&s, &all).await == 15 + 11 * 2).then_some(all)
    })
    .await;
    assert!(all.iter().all(|c| c["origin"] == "history"
        && c["state"] == "unattended"
        && c["unread"] == json!({})));
    // Each synced customer's profile is read too (whether they follow the page, their tags).
    eventually("the synced customers' profiles", || async {
        let all = conversations(&s, &s.t.admin_token, "all").await;
        all.iter()
            .all(|c| {
                c["customer"]["fetched_at"].as_i64() > Some(0) && c["customer"]["follows"] == true
            })
            .then_some(())
    })
    .await;

    let (_, agent_token) = s.t.account("HuongNT256", "agent").await;
    let conn =
        s.t.hub
            .read(|st| st.connections().next().unwrap().clone())
            .await;
    let rule = |old: &str| json!({"name": "r", "sources": [conn.id], "members": ["HuongNT256"], "method": "round_robin", "old_conversations": old});
    let (_, r) =
        s.t.post("/api/v1/rules", &s.t.admin_token, rule("none"))
            .await;
    assert_eq!(
        conversations(&s, &agent_token, "mine").await.len(),
        0,
        "Không chia"
    );
    let path = format!("/api/v1/rules/{}", r["id"].as_str().unwrap());
    s.t.call(
        reqwest::Method::PUT,
        &path,
        Some(&s.t.admin_token),
        Some(rule("available")),
    )
    .await;
    assert_eq!(
        conversations(&s, &agent_token, "mine").await.len(),
        5,
        "Chia hội thoại khả dụng: interacted within 7 days"
    );
    s.t.call(
        reqwest::Method::PUT,
        &path,
        Some(&s.t.admin_token),
        Some(rule("all")),
    )
    .await;
    assert_eq!(
        conversations(&s, &agent_token, "mine").await.len(),
        12,
        "Chia tất cả hội thoại"
    );
    s.t.stop().await;
}

async fn messages_total(s: &Stack, convs: &[Value]) -> usize {
    let mut n = 0;
    for c in convs {
        n += messages(s, c["id"].as_str().unwrap()).await.len();
    }
    n
}

/// A customer who writes while the page's history is being read: the history sync may store
/// the message before its webhook arrives. It is still a live message: routed by the rule,
/// unread, and stored once (the webhook is then a duplicate). Only what was said before the
/// page connected is history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_sent_while_history_syncs_is_routed_once() {
    let s = start_stack().await;
    s.sim_oa(
        OA,
        OA_NAME,
        &[("old", "Khách cũ", 1), ("new", "Khách mới", 0)],
    )
    .await;
    let before = sop_console::model::now_ms() - 60_000;
    s.sim_post(
        &format!("/oas/{OA}/customers/old/history"),
        json!({"messages": [{"src": 1, "text": "hôm qua", "time": before}]}),
    )
    .await;
    // The sync waits at its first history call; webhooks wait until the sync has read.
    s.sim_post(
        "/faults",
        json!({"hold_path": "/v2.0/oa/listrecentchat", "webhook_down": true}),
    )
    .await;
    let (_, agent_token) = s.page_for_agent(OA, "HuongNT256").await;
    s.customer_says(OA, "new", "Shop ơi").await;
    s.sim_post("/faults", json!({"hold_path": ""})).await;
    let all = eventually("both conversations from the history", || async {
        let all = conversations(&s, &s.t.admin_token, "all").await;
        (all.len() == 2).then_some(all)
    })
    .await;
    s.sim_post("/faults", json!({"webhook_down": false})).await;
    eventually("the webhook, a duplicate", || async {
        let metrics = s.t.metrics().await;
        metrics
            .contains(r#"sop_webhooks_total{result="duplicate"} 1"#)
            .then_some(())
    })
    .await;

    let by_user = |u: &str| {
        all.iter()
            .find(|c| c["customer"]["user_id"] == u)
            .unwrap()
            .clone()
    };
    let old = by_user("old");
    assert_eq!(old["origin"], "history");
    assert_eq!(
        old["assignee"],
        Value::Null,
        "old conversations: Không chia"
    );
    let mine = conversations(&s, &agent_token, "mine").await;
    assert_eq!(mine.len(), 1, "{mine:?}");
    let new = &mine[0];
    assert_eq!(new["id"], by_user("new")["id"]);
    assert_eq!(new["origin"], "live");
    assert_eq!(new["unread"][&new["assignee"].as_str().unwrap()], 1);
    let ms = messages(&s, new["id"].as_str().unwrap()).await;
    assert_eq!(ms.len(), 1, "stored once: {ms:?}");
    eventually(
        "the new customer's profile, read once the webhook came",
        || async {
            let mine = conversations(&s, &agent_token, "mine").await;
            (mine[0]["customer"]["fetched_at"].as_i64() > Some(0)).then_some(())
        },
    )
    .await;
    s.t.stop().await;
}

/// Sends finish together, their outcomes recorded in one transaction: one outcome that can never
/// be recorded must not hold back the others' (they are recorded one by one then).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_outcome_that_cannot_be_recorded_holds_back_no_other() {
    const REPLIES: usize = 20;
    let s = start_stack().await;
    let (agent_token, convs) = conversations_of_one_agent(&s, REPLIES).await;
    faults::poison_sent(s.t.hub.db(), "KHÔNG-GHI-ĐƯỢC").await;
    let replies: Vec<_> = convs
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let text = if i == 7 {
                "KHÔNG-GHI-ĐƯỢC".to_string()
            } else {
                format!("Dạ {i}")
            };
            let (http, token) = (s.t.http.clone(), agent_token.clone());
            let url = format!(
                "{}/api/v1/conversations/{}/reply",
                s.t.base,
                c["id"].as_str().unwrap()
            );
            tokio::spawn(async move {
                http.post(url)
                    .bearer_auth(token)
                    .json(&json!({"client_key": format!("k{i}"), "text": text}))
                    .send()
                    .await
                    .unwrap()
                    .status()
            })
        })
        .collect();
    for r in replies {
        assert_eq!(r.await.unwrap(), StatusCode::ACCEPTED);
    }
    // Every reply reached Zalo once; all outcomes but the poisoned one are recorded (their jobs
    // are gone), the poisoned one's is retried.
    eventually("20 sent", || async {
        (s.sim_get("/sent").await.as_array().unwrap().len() == REPLIES).then_some(())
    })
    .await;
    eventually_explained("19 outcomes recorded", || async {
        let left = count(s.t.hub.db(), "SELECT COUNT(*) FROM reply_jobs").await;
        if left == 1 {
            Ok(())
        } else {
            Err(format!(": {left} jobs left"))
        }
    })
    .await;
    assert_eq!(
        s.sim_get("/sent").await.as_array().unwrap().len(),
        REPLIES,
        "none sent twice"
    );
    s.t.stop().await;
}
