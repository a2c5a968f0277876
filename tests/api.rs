//! The hub's REST API over real HTTP: claim races, the authorization matrix, bad input.

mod common;
use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::HashSet;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundred_concurrent_claims_have_exactly_one_winner_twenty_times() {
    let t = start_hub().await;
    let page = t.page("1423847451268726170").await;
    let mut agents = Vec::new();
    for i in 0..100 {
        agents.push(t.account(&format!("agent{i:03}"), "agent").await);
    }
    let names: Vec<String> = agents.iter().map(|(a, _)| a.username.clone()).collect();
    let names: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    t.rule("Tự nhận", &[&page], &names, "self_claim").await;

    for round in 0..20 {
        let conv = t
            .inbound(&page, &format!("customer{round}"), &format!("msg{round}"))
            .await;
        assert_eq!(conv.state, sop_console::model::ConvState::Unclaimed);
        let mut tasks = Vec::new();
        for (account, token) in agents.clone() {
            let http = t.http.clone();
            let url = format!("{}/api/v1/conversations/{}/claim", t.base, conv.id);
            tasks.push(tokio::spawn(async move {
                let r = http.post(url).bearer_auth(token).send().await.unwrap();
                let status = r.status();
                (account.id, status, r.json::<Value>().await.unwrap())
            }));
        }
        let mut winners = Vec::new();
        let mut losers = Vec::new();
        for task in tasks {
            let (who, status, body) = task.await.unwrap();
            match status {
                StatusCode::OK => winners.push((who, body)),
                StatusCode::CONFLICT => losers.push(body),
                other => panic!("round {round}: unexpected {other} {body}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}");
        assert_eq!(losers.len(), 99, "round {round}");
        let (winner_id, body) = &winners[0];
        assert_eq!(body["assignee"], json!(winner_id));
        for l in &losers {
            assert_eq!(l["error"]["code"], "already_claimed");
            assert_eq!(l["error"]["winner"]["id"], json!(winner_id), "{l}");
        }
        let (_, stored) = t
            .get(
                &format!("/api/v1/conversations/{}", conv.id),
                &t.admin_token,
            )
            .await;
        assert_eq!(stored["assignee"], json!(winner_id));
        let claims = stored["assignments"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["reason"] == "claim")
            .count();
        assert_eq!(claims, 1, "exactly one claim recorded: {stored}");
    }
    t.stop().await;
}

/// Who calls: no token, a bad token, an agent who may not, a member of the rule who is not the
/// assignee, the assignee, an admin.
#[derive(Clone, Copy, Debug)]
enum Who {
    Nobody,
    BadToken,
    Outsider,
    Colleague,
    Member,
    Admin,
}

#[tokio::test]
async fn authorization_matrix() {
    let t = start_hub().await;
    let (member, member_token) = t.account("HuongNT256", "agent").await;
    let (outsider, outsider_token) = t.account("QueCT3", "agent").await;
    let (spare, _) = t.account("TriLM22", "agent").await;
    let (colleague, colleague_token) = t.account("ThuPT", "agent").await;
    let p1 = t.page("oa-1").await;
    let p2 = t.page("oa-2").await;
    let p3 = t.page("oa-3").await;
    let p4 = t.page("oa-4").await;
    let rule = t
        .rule("Best Sale", &[&p1], &["HuongNT256", "ThuPT"], "round_robin")
        .await;
    let conv = t.inbound(&p1, "u1", "m1").await;
    assert_eq!(conv.assignee.as_deref(), Some(member.id.as_str()));
    let _ = colleague;
    let _ = outsider;

    let token = |w: Who| -> Option<String> {
        match w {
            Who::Nobody => None,
            Who::BadToken => Some("sop_not_a_token".into()),
            Who::Outsider => Some(outsider_token.clone()),
            Who::Colleague => Some(colleague_token.clone()),
            Who::Member => Some(member_token.clone()),
            Who::Admin => Some(t.admin_token.clone()),
        }
    };
    let c = &conv.id;
    let mut n = 0;
    // (method, path, body, expected for [outsider, colleague, member, admin]); no/bad token is
    // always 401.
    let cases: Vec<(Method, String, Option<Value>, [u16; 4])> = vec![
        (Method::GET, "/api/v1/me".into(), None, [200, 200, 200, 200]),
        (
            Method::PUT,
            "/api/v1/me/availability".into(),
            Some(json!({"availability": "available"})),
            [200, 200, 200, 200],
        ),
        (
            Method::GET,
            "/api/v1/accounts".into(),
            None,
            [403, 403, 403, 200],
        ),
        (
            Method::POST,
            "/api/v1/accounts".into(),
            Some(
                json!({"email": "new@sop.vn", "username": "newbie", "name": "New", "role": "agent"}),
            ),
            [403, 403, 403, 201],
        ),
        (
            Method::POST,
            format!("/api/v1/accounts/{}/token", spare.id),
            None,
            [403, 403, 403, 200],
        ),
        (
            Method::GET,
            "/api/v1/connections".into(),
            None,
            [200, 200, 200, 200],
        ),
        (
            Method::GET,
            format!("/api/v1/connections/{}", p1.id),
            None,
            [404, 200, 200, 200],
        ),
        (
            Method::PUT,
            format!("/api/v1/connections/{}/chat-mode", p2.id),
            Some(json!({"chat_mode": "shared"})),
            [403, 403, 403, 200],
        ),
        (
            Method::DELETE,
            format!("/api/v1/connections/{}", p3.id),
            None,
            [403, 403, 403, 204],
        ),
        (
            Method::GET,
            "/api/v1/rules".into(),
            None,
            [200, 200, 200, 200],
        ),
        (
            Method::GET,
            format!("/api/v1/rules/{}", rule.id),
            None,
            [404, 200, 200, 200],
        ),
        (
            Method::POST,
            "/api/v1/rules".into(),
            Some(
                json!({"name": "r2", "sources": [p4.id], "members": ["TriLM22"], "method": "self_claim", "old_conversations": "none"}),
            ),
            [403, 403, 403, 201],
        ),
        (
            Method::PUT,
            format!("/api/v1/rules/{}", rule.id),
            Some(
                json!({"name": "Best Sale", "sources": [p1.id], "members": ["HuongNT256", "ThuPT"], "method": "round_robin", "old_conversations": "none"}),
            ),
            [403, 403, 403, 200],
        ),
        (
            Method::GET,
            "/api/v1/conversations?view=mine".into(),
            None,
            [200, 200, 200, 200],
        ),
        (
            Method::GET,
            "/api/v1/conversations?view=unclaimed".into(),
            None,
            [200, 200, 200, 200],
        ),
        (
            Method::GET,
            "/api/v1/conversations?view=all".into(),
            None,
            [403, 403, 403, 200],
        ),
        (
            Method::GET,
            "/api/v1/conversations/counts".into(),
            None,
            [200, 200, 200, 200],
        ),
        (
            Method::GET,
            format!("/api/v1/conversations/{c}"),
            None,
            [404, 404, 200, 200],
        ),
        (
            Method::GET,
            format!("/api/v1/conversations/{c}/messages"),
            None,
            [404, 404, 200, 200],
        ),
        (
            Method::POST,
            format!("/api/v1/conversations/{c}/read"),
            None,
            [404, 404, 200, 200],
        ),
        (
            Method::POST,
            format!("/api/v1/conversations/{c}/claim"),
            None,
            [404, 409, 200, 409],
        ),
        (
            Method::POST,
            format!("/api/v1/conversations/{c}/reply"),
            Some(json!({"client_key": "k", "text": "Dạ"})),
            [404, 404, 202, 202],
        ),
        (
            Method::POST,
            format!("/api/v1/conversations/{c}/transfer"),
            Some(json!({"to": "HuongNT256"})),
            [404, 404, 200, 200],
        ),
        (
            Method::POST,
            format!("/api/v1/conversations/{c}/done"),
            None,
            [404, 404, 200, 200],
        ),
        (
            Method::POST,
            format!("/api/v1/conversations/{c}/release"),
            None,
            [404, 404, 200, 200],
        ),
    ];
    for (method, path, body, expected) in cases {
        for (who, want) in [
            (Who::Nobody, 401),
            (Who::BadToken, 401),
            (Who::Outsider, expected[0]),
            (Who::Colleague, expected[1]),
            (Who::Member, expected[2]),
            (Who::Admin, expected[3]),
        ] {
            let held_by = t
                .get(&format!("/api/v1/conversations/{c}"), &t.admin_token)
                .await
                .1["assignee"]
                .clone();
            // The admin's own reply key must differ from the member's.
            let body = body.clone().map(|mut b| {
                if let Some(k) = b.get_mut("client_key") {
                    *k = json!(format!("{who:?}"));
                }
                b
            });
            let (status, resp) = t
                .call(method.clone(), &path, token(who).as_deref(), body)
                .await;
            assert_eq!(status.as_u16(), want, "{method} {path} as {who:?}: {resp}");
            if status.is_client_error() {
                assert!(
                    resp["error"]["code"].is_string(),
                    "error body for {method} {path}: {resp}"
                );
            }
            // What the conversation actions did, not only that they were allowed.
            if status.is_success() && path.starts_with("/api/v1/conversations/") {
                let caller = match who {
                    Who::Member => json!(member.id),
                    _ => json!(t.admin.id),
                };
                let last = resp["assignments"]
                    .as_array()
                    .and_then(|a| a.last())
                    .cloned()
                    .unwrap_or_default();
                match path.rsplit('/').next().unwrap() {
                    "transfer" => {
                        assert_eq!(resp["assignee"], json!(member.id), "{resp}");
                        assert_eq!(
                            (&last["reason"], &last["by"]),
                            (&json!("transfer"), &caller),
                            "{resp}"
                        );
                    }
                    "release" => {
                        assert_eq!(
                            (&last["reason"], &last["by"]),
                            (&json!("release"), &caller),
                            "{resp}"
                        );
                        assert_ne!(
                            resp["assignee"], held_by,
                            "released to someone else or the queue: {resp}"
                        );
                    }
                    "done" => assert_eq!(resp["status"], "done", "{resp}"),
                    _ => {}
                }
            }
            n += 1;
        }
    }
    assert!(n >= 150);

    // The outsider never sees the conversation in any list.
    for view in ["mine", "unclaimed"] {
        let (_, page) = t
            .get(
                &format!("/api/v1/conversations?view={view}"),
                &outsider_token,
            )
            .await;
        assert_eq!(page["items"].as_array().unwrap().len(), 0, "{view}: {page}");
    }
    let (_, conns) = t.get("/api/v1/connections", &outsider_token).await;
    assert_eq!(conns.as_array().unwrap().len(), 0);
    let (_, rules) = t.get("/api/v1/rules", &outsider_token).await;
    let rule_ids: HashSet<&str> = rules
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert!(!rule_ids.contains(rule.id.as_str()));
    t.stop().await;
}

#[tokio::test]
async fn bad_input_gets_clear_errors_and_stores_nothing() {
    let t = start_hub().await;
    let page = t.page("oa-1").await;
    t.account("HuongNT256", "agent").await;
    let raw = |body: &'static str, ct: &'static str| {
        t.http
            .post(format!("{}/api/v1/rules", t.base))
            .bearer_auth(&t.admin_token)
            .header("content-type", ct)
            .body(body)
    };
    let cases = [
        (raw("{\"name\": ", "application/json"), 400, "malformed_json"),
        (raw("{\"name\": 5, \"sources\": [], \"members\": [], \"method\": \"round_robin\", \"old_conversations\": \"none\"}", "application/json"), 422, "invalid_body"),
        (raw("{\"name\": \"x\", \"sources\": [], \"members\": [], \"method\": \"round_robin\", \"old_conversations\": \"none\", \"extra\": 1}", "application/json"), 422, "invalid_body"),
        (raw("{}", "text/plain"), 415, "unsupported_media_type"),
    ];
    for (req, status, code) in cases {
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), status);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{body}");
        assert!(!body["error"]["message"].as_str().unwrap().is_empty());
    }

    // Oversized body.
    let big = "x".repeat(9 * 1024 * 1024);
    let (status, body) = t
        .post(
            "/api/v1/conversations/c1/reply",
            &t.admin_token,
            json!({"client_key": "k", "text": big}),
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");

    // Unknown ids.
    for path in [
        "/api/v1/conversations/c999",
        "/api/v1/rules/r999",
        "/api/v1/connections/p999",
        "/api/v1/nope",
    ] {
        let (status, body) = t.get(path, &t.admin_token).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(body["error"]["code"], "not_found");
    }
    let (status, _) = t
        .get("/api/v1/conversations?view=sideways", &t.admin_token)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // A rule with an unknown member is refused whole: no rule, the page untouched.
    let (status, body) = t
        .post(
            "/api/v1/rules",
            &t.admin_token,
            json!({"name": "r", "sources": [page.id], "members": ["HuongNT256", "ghost@sop.vn"], "method": "round_robin", "old_conversations": "all"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("ghost@sop.vn"));
    let (_, rules) = t.get("/api/v1/rules", &t.admin_token).await;
    assert_eq!(rules, json!([]));
    let (_, conn) = t
        .get(&format!("/api/v1/connections/{}", page.id), &t.admin_token)
        .await;
    assert_eq!(conn["rule_id"], Value::Null);
    assert_eq!(conn["chat_mode"], "only_me");

    // A duplicate account is a 409 and the first one is unchanged.
    let (status, body) = t
        .post(
            "/api/v1/accounts",
            &t.admin_token,
            json!({"email": "x@sop.vn", "username": "huongnt256", "name": "X", "role": "agent"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (_, accounts) = t.get("/api/v1/accounts", &t.admin_token).await;
    assert_eq!(accounts.as_array().unwrap().len(), 2);

    // A rule conflict names the other rule.
    t.rule("Best Sale", &[&page], &["HuongNT256"], "round_robin")
        .await;
    let (status, body) = t
        .post(
            "/api/v1/rules",
            &t.admin_token,
            json!({"name": "second", "sources": [page.id], "members": ["HuongNT256"], "method": "self_claim", "old_conversations": "none"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"]["code"], "rule_conflict");
    assert_eq!(body["error"]["rule"]["name"], "Best Sale");
    t.stop().await;
}

#[tokio::test]
async fn conversation_views_page_with_cursors_and_metrics_count() {
    let t = start_hub().await;
    let page = t.page("oa-1").await;
    for i in 0..7 {
        t.inbound(&page, &format!("u{i}"), &format!("m{i}")).await;
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/conversations?view=all&limit=3&cursor={c}"),
            None => "/api/v1/conversations?view=all&limit=3".to_string(),
        };
        let (status, body) = t.get(&path, &t.admin_token).await;
        assert_eq!(status, StatusCode::OK);
        for item in body["items"].as_array().unwrap() {
            seen.push(item["id"].as_str().unwrap().to_string());
        }
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 7);
    assert_eq!(
        seen.iter().collect::<HashSet<_>>().len(),
        7,
        "no duplicates across pages"
    );

    let metrics = t.metrics().await;
    assert!(metrics.contains("sop_http_requests_total{class=\"2xx\"}"));
    assert!(
        metrics.contains("sop_routing_decisions_total{outcome=\"assigned\"} 7"),
        "{metrics}"
    );
    let health = t
        .http
        .get(format!("{}/healthz", t.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    t.stop().await;
}

/// The lists are read from the database by the views' indexes: what each account finds in each
/// view, page after page, is what the visibility policy allows, in the view's order, as the
/// cache (the policy's own data) says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_view_lists_what_the_policy_allows_in_order_across_pages() {
    use sop_console::model::{ConvState, ConvStatus, Conversation};
    use sop_console::server::hub::OaInfo;
    let t = start_hub().await;
    let (huong, huong_token) = t.account("HuongNT256", "agent").await;
    let (que, que_token) = t.account("QueCT3", "agent").await;
    let turns = t.page("oa-turns").await;
    let claims = t.page("oa-claims").await;
    // Que's own page, only for her (the default chat mode), with no rule.
    let (own, _) = t
        .hub
        .upsert_connection(
            OaInfo {
                oa_id: "oa-own".into(),
                name: "Que's".into(),
                ..Default::default()
            },
            &que.id,
            sop_console::model::TokenPair::default(),
        )
        .await
        .unwrap();
    t.rule("Lần lượt", &[&turns], &["HuongNT256"], "round_robin")
        .await;
    t.rule(
        "Tự nhận",
        &[&claims],
        &["HuongNT256", "QueCT3"],
        "self_claim",
    )
    .await;
    // Waiting conversations only Que may see.
    let ques = t.page("oa-que-claims").await;
    t.rule("Của Quế", &[&ques], &["QueCT3"], "self_claim").await;
    let mut waiting = Vec::new();
    for i in 0..7 {
        t.inbound(&ques, &format!("q{i}"), &format!("qm{i}")).await;
        t.inbound(&turns, &format!("t{i}"), &format!("tm{i}")).await;
        waiting.push(
            t.inbound(&claims, &format!("c{i}"), &format!("cm{i}"))
                .await,
        );
        t.inbound(&own, &format!("o{i}"), &format!("om{i}")).await;
    }
    for c in waiting.iter().step_by(2) {
        let path = format!("/api/v1/conversations/{}/claim", c.id);
        assert_eq!(t.post(&path, &que_token, json!({})).await.0, StatusCode::OK);
    }
    // Activity in another order than arrival.
    t.inbound(&turns, "t3", "tm3-again").await;
    t.inbound(&claims, "c1", "cm1-again").await;

    let accounts = [
        (t.admin.clone(), t.admin_token.clone()),
        (huong, huong_token),
        (que, que_token),
    ];
    for (who, token) in &accounts {
        for view in ["mine", "unclaimed", "all"] {
            let expected: Vec<String> = t
                .hub
                .read(|st| {
                    let mut rows: Vec<((i64, String), &Conversation)> = st
                        .conversations()
                        .filter(|c| match view {
                            "mine" => c.assignee.as_deref() == Some(who.id.as_str()),
                            "unclaimed" => {
                                c.state == ConvState::Unclaimed
                                    && c.status == ConvStatus::Open
                                    && st.may_see_conversation(who, c)
                            }
                            _ => true,
                        })
                        .map(|c| match view {
                            "unclaimed" => ((c.waiting_at(), c.id.clone()), c),
                            _ => ((-c.last_activity_at, c.id.clone()), c),
                        })
                        .collect();
                    rows.sort_by(|a, b| a.0.cmp(&b.0));
                    rows.into_iter().map(|(_, c)| c.id.clone()).collect()
                })
                .await;
            let mut got = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let mut path = format!("/api/v1/conversations?view={view}&limit=3");
                if let Some(c) = &cursor {
                    path.push_str(&format!("&cursor={c}"));
                }
                let (status, body) = t.get(&path, token).await;
                if view == "all" && !who.is_admin() {
                    assert_eq!(status, StatusCode::FORBIDDEN);
                    break;
                }
                assert_eq!(status, StatusCode::OK, "{body}");
                for item in body["items"].as_array().unwrap() {
                    got.push(item["id"].as_str().unwrap().to_string());
                }
                match body["next_cursor"].as_str() {
                    Some(c) => cursor = Some(c.to_string()),
                    None => break,
                }
            }
            if view == "all" && !who.is_admin() {
                continue;
            }
            assert!(
                !expected.is_empty() || view == "mine",
                "{} {view}",
                who.username
            );
            assert_eq!(got, expected, "{} {view}", who.username);
            let (_, counts) = t.get("/api/v1/conversations/counts", token).await;
            assert_eq!(
                counts[view],
                expected.len(),
                "{} {view} count",
                who.username
            );
        }
    }
    t.stop().await;
}
