//! Regression tests for the round-1 defects (issue 8), at the HTTP/stream level so they guard the
//! hub's persistence rewrite: each one failed against the round-1 hub.

mod common;
use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sop_console::wire::{EventBody, Frame};
use std::time::Duration;

const OA: &str = "1423847451268726170";

/// Every message of a conversation through the API, paging back with `before`, `limit` a page.
async fn all_messages(t: &TestHub, conv: &str, token: &str, limit: usize) -> Vec<Value> {
    let mut pages: Vec<Vec<Value>> = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let path = match &before {
            Some(b) => format!("/api/v1/conversations/{conv}/messages?limit={limit}&before={b}"),
            None => format!("/api/v1/conversations/{conv}/messages?limit={limit}"),
        };
        let (status, body) = t.get(&path, token).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        pages.push(body["items"].as_array().unwrap().clone());
        match body["next_cursor"].as_str() {
            Some(c) => before = Some(c.to_string()),
            None => break,
        }
    }
    pages.into_iter().rev().flatten().collect()
}

fn times(msgs: &[Value]) -> Vec<i64> {
    msgs.iter()
        .map(|m| m["created_at"].as_i64().unwrap())
        .collect()
}

/// Item 1: Zalo's `conversation` endpoint answers newest first; the thread reads in the
/// customer's time order anyway, across pages, with live messages after the history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synced_history_reads_in_time_order_across_pages() {
    let s = start_stack().await;
    s.sim_oa(OA, "Trang", &[("an", "Trần Văn An", 1)]).await;
    let now = sop_console::model::now_ms();
    let msgs: Vec<Value> = (0..15)
        .map(|i| json!({"src": (i % 2 == 0) as u8, "text": format!("cũ {i}"), "time": now - 3_600_000 + i * 60_000}))
        .collect();
    s.sim_post(
        &format!("/oas/{OA}/customers/an/history"),
        json!({"messages": msgs}),
    )
    .await;
    assert_eq!(
        s.connect(OA, "zalo-admin-1", "allow").await.0,
        StatusCode::OK
    );
    let conv = eventually("the synced thread", || async {
        let (_, body) =
            s.t.get("/api/v1/conversations?view=all", &s.t.admin_token)
                .await;
        let id = body["items"][0]["id"].as_str()?.to_string();
        (all_messages(&s.t, &id, &s.t.admin_token, 500).await.len() == 15).then_some(id)
    })
    .await;
    s.customer_says(OA, "an", "mới nhất").await;
    let read = eventually("the live message", || async {
        let all = all_messages(&s.t, &conv, &s.t.admin_token, 4).await;
        (all.len() == 16).then_some(all)
    })
    .await;
    let texts: Vec<&str> = read.iter().map(|m| m["text"].as_str().unwrap()).collect();
    let expected: Vec<String> = (0..15).map(|i| format!("cũ {i}")).collect();
    assert_eq!(
        &texts[..15],
        expected.iter().map(String::as_str).collect::<Vec<_>>()
    );
    assert_eq!(texts[15], "mới nhất");
    let t = times(&read);
    assert!(t.windows(2).all(|w| w[0] <= w[1]), "time order: {t:?}");
    s.t.stop().await;
}

/// Reads frames until `Live`; returns the events replayed before it.
async fn until_live(sock: &mut ws::Socket) -> Vec<sop_console::wire::Event> {
    let mut events = Vec::new();
    loop {
        match ws::next(sock, Duration::from_secs(10)).await {
            Some(Frame::Event { event }) => events.push(event),
            Some(Frame::Live { .. }) => return events,
            Some(_) => {}
            None => panic!("stream ended before live"),
        }
    }
}

/// Every event that arrives within `wait`.
async fn drain(sock: &mut ws::Socket, wait: Duration) -> Vec<sop_console::wire::Event> {
    let mut events = Vec::new();
    while let Some(f) = ws::next(sock, wait).await {
        if let Frame::Event { event } = f {
            events.push(event)
        }
    }
    events
}

/// Item 3: agents receive only what the REST API would show them: their own account, not
/// colleagues' (emails included), live or replayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_events_reach_only_the_account_itself_and_admins() {
    let t = start_hub().await;
    let (agent, agent_token) = t.account("HuongNT256", "agent").await;
    let head = t.hub.published_seq();
    let mut live = ws::connect(&t.ws_url(Some(head)), &agent_token).await;
    until_live(&mut live).await;
    let mut admin = ws::connect(&t.ws_url(Some(head)), &t.admin_token).await;
    until_live(&mut admin).await;

    let (colleague, colleague_token) = t.account("QueCT3", "agent").await;
    let (s, _) = t
        .call(
            Method::PUT,
            "/api/v1/me/availability",
            Some(&colleague_token),
            Some(json!({"availability": "away"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = t
        .call(
            Method::PUT,
            "/api/v1/me/availability",
            Some(&agent_token),
            Some(json!({"availability": "away"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);

    let accounts_in = |events: &[sop_console::wire::Event]| -> Vec<String> {
        events
            .iter()
            .filter_map(|e| match &e.body {
                EventBody::Account { account } => Some(account.id.clone()),
                _ => None,
            })
            .collect()
    };
    let seen_live = accounts_in(&drain(&mut live, Duration::from_millis(500)).await);
    assert_eq!(seen_live, vec![agent.id.clone()], "live");
    let mut replay = ws::connect(&t.ws_url(Some(head)), &agent_token).await;
    assert_eq!(
        accounts_in(&until_live(&mut replay).await),
        vec![agent.id.clone()],
        "replay"
    );
    let admin_saw = accounts_in(&drain(&mut admin, Duration::from_millis(500)).await);
    assert!(
        admin_saw.contains(&colleague.id) && admin_saw.contains(&agent.id),
        "{admin_saw:?}"
    );
    let (status, _) = t.get("/api/v1/accounts", &agent_token).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "REST agrees: accounts are admin-only"
    );
    t.stop().await;
}

/// Item 2: an agent can hand a conversation over: the hub lists who may take it (the rule's
/// members and admins, with availability), and transfers only to them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_hand_over_to_the_eligible_targets_the_hub_lists() {
    let t = start_hub().await;
    let (huong, huong_token) = t.account("HuongNT256", "agent").await;
    let (que, que_token) = t.account("QueCT3", "agent").await;
    let (_, outsider_token) = t.account("Outsider9", "agent").await;
    let page = t.page(OA).await;
    t.rule(
        "Best Sale",
        &[&page],
        &["HuongNT256", "QueCT3"],
        "self_claim",
    )
    .await;
    t.call(
        Method::PUT,
        "/api/v1/me/availability",
        Some(&que_token),
        Some(json!({"availability": "away"})),
    )
    .await;
    let conv = t.inbound(&page, "an", "z1").await;
    let (s, _) = t
        .post(
            &format!("/api/v1/conversations/{}/claim", conv.id),
            &huong_token,
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);

    let path = format!("/api/v1/conversations/{}/transfer-targets", conv.id);
    let (s, targets) = t.get(&path, &huong_token).await;
    assert_eq!(s, StatusCode::OK, "{targets}");
    let names: Vec<(&str, &str)> = targets
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["username"].as_str().unwrap(),
                a["availability"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        names,
        [("CuongLM", "available"), ("QueCT3", "away")],
        "{targets}"
    );
    assert!(
        targets
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a.get("email").is_none()),
        "no emails to agents"
    );
    // A member who is not the assignee no longer sees the claimed conversation; nor does an
    // outsider: 404 for both (existence is not leaked).
    for token in [&que_token, &outsider_token] {
        let (s, _) = t.get(&path, token).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    }

    let transfer = format!("/api/v1/conversations/{}/transfer", conv.id);
    let (s, body) = t
        .post(&transfer, &huong_token, json!({"to": "Outsider9"}))
        .await;
    assert_eq!(
        s,
        StatusCode::UNPROCESSABLE_ENTITY,
        "ineligible target refused: {body}"
    );
    let (s, body) = t
        .post(&transfer, &huong_token, json!({"to": "QueCT3"}))
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["assignee"], json!(que.id));
    let last = body["assignments"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        (last["reason"].as_str(), last["by"].as_str()),
        (Some("transfer"), Some(huong.id.as_str()))
    );
    let (s, _) = t
        .get(&format!("/api/v1/conversations/{}", conv.id), &huong_token)
        .await;
    assert_eq!(
        s,
        StatusCode::NOT_FOUND,
        "handed over: no longer visible to the giver"
    );
    t.stop().await;
}

/// Connects the simulator's OA `OA` with one customer and returns (conversation id, agent token)
/// for an agent who owns the customer's conversation (round robin, one member).
async fn connected_page_with_agent(s: &Stack) -> (String, String) {
    s.sim_oa(OA, "Trang", &[("an", "Trần Văn An", 0)]).await;
    assert_eq!(
        s.connect(OA, "zalo-admin-1", "allow").await.0,
        StatusCode::OK
    );
    let (_, agent_token) = s.t.account("HuongNT256", "agent").await;
    let conn = s.t.hub.read(|st| st.connections().next().unwrap().clone());
    let (status, body) = s
        .t
        .post("/api/v1/rules", &s.t.admin_token, json!({"name": "r", "sources": [conn.id], "members": ["HuongNT256"], "method": "round_robin", "old_conversations": "none"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    s.customer_says(OA, "an", "Chào shop").await;
    let conv = eventually("the agent's conversation", || async {
        let (_, b) =
            s.t.get("/api/v1/conversations?view=mine", &agent_token)
                .await;
        b["items"][0]["id"].as_str().map(str::to_string)
    })
    .await;
    (conv, agent_token)
}

/// A reply through the API; waits for its final delivery state and returns the message.
async fn reply_and_settle(s: &Stack, conv: &str, token: &str, key: &str, text: &str) -> Value {
    let (status, m) =
        s.t.post(
            &format!("/api/v1/conversations/{conv}/reply"),
            token,
            json!({"client_key": key, "text": text}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{m}");
    eventually("the reply settles", || async {
        let (_, page) =
            s.t.get(&format!("/api/v1/conversations/{conv}/messages"), token)
                .await;
        page["items"]
            .as_array()?
            .iter()
            .find(|x| x["id"] == m["id"] && x["delivery"] != "pending")
            .cloned()
    })
    .await
}

/// Item 4: the reply whose refresh met a revoked grant says the page needs reconnecting, as the
/// replies after it do; the hub learnt of the revocation only through that refresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_grant_fails_replies_with_reconnect_words_from_the_first() {
    let s = start_stack().await;
    let (conv, agent) = connected_page_with_agent(&s).await;
    s.sim_post("/faults", json!({"webhook_down": true})).await; // permission_revoked is not heard
    s.sim_post(&format!("/oas/{OA}/revoke"), json!({})).await;
    let first = reply_and_settle(&s, &conv, &agent, "k1", "Dạ em chào anh").await;
    let second = reply_and_settle(&s, &conv, &agent, "k2", "Anh còn đó không ạ?").await;
    for m in [&first, &second] {
        assert_eq!(m["delivery"], "failed", "{m}");
        let reason = m["error_reason"].as_str().unwrap();
        assert!(
            reason.contains("kết nối lại") && reason.contains("reconnect"),
            "{reason}"
        );
        assert!(!reason.contains("Zalo từ chối tin nhắn"), "{reason}");
    }
    assert_eq!(
        first["error_code"], second["error_code"],
        "one failure, one code"
    );
    s.t.stop().await;
}

/// Item 7: deleting a page takes its reply jobs and indexes with it; the page connected again
/// starts clean (a reused client key makes a new reply, sent once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_page_removes_its_jobs_and_indexes() {
    let s = start_stack().await;
    let (conv, agent) = connected_page_with_agent(&s).await;
    let conn = s.t.hub.read(|st| st.connections().next().unwrap().clone());
    s.sim_post("/faults", json!({"rate_limit_next": 1000}))
        .await;
    let (status, m) =
        s.t.post(
            &format!("/api/v1/conversations/{conv}/reply"),
            &agent,
            json!({"client_key": "k1", "text": "Dạ"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    eventually("a retried job", || async {
        s.t.hub
            .outbound_job(m["id"].as_str().unwrap())
            .unwrap()
            .filter(|j| j.attempts > 0)
    })
    .await;
    let (status, _) =
        s.t.call(
            Method::DELETE,
            &format!("/api/v1/connections/{}", conn.id),
            Some(&s.t.admin_token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(s.t.hub.outbound_jobs().unwrap().is_empty(), "jobs removed");
    for prefix in [
        "job/",
        "mref/",
        "ckey/",
        "mt/",
        "msg/",
        &format!("zmid/{}/", conn.id),
    ] {
        let left =
            s.t.hub
                .store()
                .range(
                    prefix.as_bytes(),
                    &sop_console::store::prefix_end(prefix.as_bytes()),
                    false,
                    10,
                )
                .unwrap();
        assert!(left.is_empty(), "{prefix} left behind: {}", left.len());
    }

    s.sim_post("/faults", json!({"rate_limit_next": 0})).await;
    assert_eq!(
        s.connect(OA, "zalo-admin-1", "allow").await.0,
        StatusCode::OK
    );
    // A new page starts "Chỉ mình tôi": the admin who connected it answers.
    s.customer_says(OA, "an", "Em hỏi lại").await;
    let conv = eventually("the new conversation", || async {
        let (_, b) =
            s.t.get("/api/v1/conversations?view=all", &s.t.admin_token)
                .await;
        b["items"][0]["id"].as_str().map(str::to_string)
    })
    .await;
    let again = reply_and_settle(&s, &conv, &s.t.admin_token, "k1", "Dạ em đây").await;
    assert_ne!(again["id"], m["id"], "a new reply, not the deleted page's");
    assert_eq!(again["delivery"], "sent", "{again}");
    let sent = s.sim_get("/sent").await;
    let texts: Vec<&str> = sent
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["from_oa_manager"] == false)
        .filter_map(|x| x["text"].as_str())
        .collect();
    assert_eq!(texts, ["Dạ em đây"], "{sent}");
    s.t.stop().await;
}
