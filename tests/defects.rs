//! Regression tests for the round-1 defects (issue 8), at the HTTP/stream level so they guard the
//! hub's persistence rewrite: each one failed against the round-1 hub.

mod common;
use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
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
