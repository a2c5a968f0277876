//! Labels ("Nhãn") through the API against the simulator, on the engine `SOP_TEST_ENGINE` picks:
//! every change reaches Zalo's tag API (retried when Zalo asks to wait, taken back when Zalo
//! refuses it), and tags set in Zalo's OA Manager come back live.

use crate::common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sop_console::wire::{EventBody, Frame};
use std::time::Duration;

const OA: &str = "oa-labels";

/// The conversation's customer's labels as the hub has them.
async fn labels_of(s: &Stack, conv: &str) -> Value {
    let (status, c) =
        s.t.get(&format!("/api/v1/conversations/{conv}"), &s.t.admin_token)
            .await;
    assert_eq!(status, StatusCode::OK, "{c}");
    c["customer"]["labels"].clone()
}

/// The OA's tags at Zalo (the simulator): name → followers.
async fn zalo_tags(s: &Stack) -> Value {
    s.sim_get(&format!("/oas/{OA}/tags")).await
}

async fn calls(s: &Stack, call: &str, outcome: &str) -> u64 {
    let metrics = s.t.metrics().await;
    let series =
        format!("sop_zalo_api_call_seconds_count{{call=\"{call}\",outcome=\"{outcome}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series.as_str()))
        .map_or(0, |n| n.trim().parse().unwrap())
}

/// Waits until no label change is left to send to Zalo.
async fn settled(s: &Stack) {
    let db = s.t.hub.db().clone();
    eventually("every tag job sent", || async {
        (count(&db, "SELECT COUNT(*) FROM tag_jobs").await == 0).then_some(())
    })
    .await;
}

/// The customer `user` writes; their conversation once the hub has read their profile.
async fn conversation_of(s: &Stack, user: &str, text: &str) -> String {
    s.customer_says(OA, user, text).await;
    eventually("the conversation with the customer's profile", || async {
        let (_, page) =
            s.t.get("/api/v1/conversations?view=all", &s.t.admin_token)
                .await;
        page["items"].as_array()?.iter().find_map(|c| {
            (c["customer"]["user_id"] == user && c["customer"]["fetched_at"].as_i64()? > 0)
                .then(|| c["id"].as_str().unwrap().to_string())
        })
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_reach_zalo_are_retried_taken_back_when_refused_and_come_back_from_oa_manager() {
    let s = start_stack().await;
    s.sim_oa(
        OA,
        "Shop Hoa",
        &[
            ("an", "Trần Văn An", 0),
            ("binh", "Lê Bình", 0),
            ("chi", "Chi", 0),
        ],
    )
    .await;
    assert_eq!(
        s.connect(OA, "zalo-admin-1", "allow").await.0,
        StatusCode::OK
    );
    let page = eventually("the page connected", || async {
        let (_, pages) = s.t.get("/api/v1/connections", &s.t.admin_token).await;
        pages.as_array()?.first()?["id"]
            .as_str()
            .map(str::to_string)
    })
    .await;
    let an = conversation_of(&s, "an", "Chào shop").await;
    let admin = s.t.admin_token.clone();

    // Attached in the console: on the customer at once, at Zalo once the tag sender ran.
    let attach = |conv: &str, name: &str| {
        let (path, name) = (
            format!("/api/v1/conversations/{conv}/labels"),
            name.to_string(),
        );
        let t = &s.t;
        let admin = admin.clone();
        async move { t.post(&path, &admin, json!({ "name": name })).await }
    };
    let (status, c) = attach(&an, " VIP ").await;
    assert_eq!(status, StatusCode::OK, "{c}");
    assert_eq!(c["customer"]["labels"], json!(["VIP"]));
    settled(&s).await;
    assert_eq!(zalo_tags(&s).await, json!({"VIP": ["an"]}));
    let (_, choices) =
        s.t.get(&format!("/api/v1/conversations/{an}/labels"), &admin)
            .await;
    assert_eq!(choices, json!({"attached": ["VIP"], "page": ["VIP"]}));
    // Attaching again changes nothing and calls Zalo no more.
    let before = calls(&s, "/v2.0/oa/tag/tagfollower", "ok").await;
    assert_eq!(attach(&an, "VIP").await.0, StatusCode::OK);
    settled(&s).await;
    assert_eq!(calls(&s, "/v2.0/oa/tag/tagfollower", "ok").await, before);

    // Zalo asks to wait once (-32): sent again once, and both sides agree afterwards.
    let aimed = json!({"rate_limit_next": 1, "rate_limit_path": "/v2.0/oa/tag/tagfollower"});
    s.sim_post("/faults", aimed).await;
    let (status, _) = attach(&an, "Khách sỉ").await;
    assert_eq!(status, StatusCode::OK);
    settled(&s).await;
    assert_eq!(calls(&s, "/v2.0/oa/tag/tagfollower", "error").await, 1);
    assert_eq!(
        calls(&s, "/v2.0/oa/tag/tagfollower", "ok").await,
        before + 1
    );
    assert_eq!(
        zalo_tags(&s).await,
        json!({"Khách sỉ": ["an"], "VIP": ["an"]})
    );
    assert_eq!(labels_of(&s, &an).await, json!(["Khách sỉ", "VIP"]));

    // Detached: off the customer at Zalo, the page keeps the label.
    let status =
        s.t.delete(&format!("/api/v1/conversations/{an}/labels/VIP"), &admin)
            .await;
    assert_eq!(status, StatusCode::OK);
    settled(&s).await;
    assert_eq!(zalo_tags(&s).await, json!({"Khách sỉ": ["an"], "VIP": []}));
    assert_eq!(labels_of(&s, &an).await, json!(["Khách sỉ"]));

    // Zalo refuses to tag someone who does not follow the page (-213): taken back here too.
    let binh = conversation_of(&s, "binh", "Cho hỏi giá").await;
    s.sim_post(&format!("/oas/{OA}/customers/binh/unfollow"), json!({}))
        .await;
    let (_, c) = attach(&binh, "VIP").await;
    assert_eq!(c["customer"]["labels"], json!(["VIP"]));
    settled(&s).await;
    assert_eq!(labels_of(&s, &binh).await, json!([]), "taken back");
    assert_eq!(zalo_tags(&s).await["VIP"], json!([]));

    // Tagged in OA Manager: shown live to whoever watches the conversation.
    let mut ws = ws::connect(&s.t.ws_url(None), &admin).await;
    s.sim_post(
        &format!("/oas/{OA}/customers/an/tags"),
        json!({"name": "Đã mua"}),
    )
    .await;
    let live = loop {
        let frame = ws::next(&mut ws, Duration::from_secs(10)).await;
        let Some(frame) = frame else {
            panic!("no conversation event for the OA Manager tag");
        };
        let Frame::Event { event } = frame else {
            continue;
        };
        if let EventBody::Conversation { conversation } = event.body {
            if conversation.id == an && conversation.customer.labels.contains(&"Đã mua".into()) {
                break conversation;
            }
        }
    };
    assert_eq!(live.customer.labels, ["Khách sỉ", "Đã mua"]);
    assert_eq!(labels_of(&s, &an).await, json!(["Khách sỉ", "Đã mua"]));
    // A customer tagged in OA Manager before writing: the tags come with their profile.
    s.sim_post(
        &format!("/oas/{OA}/customers/chi/tags"),
        json!({"name": "VIP"}),
    )
    .await;
    let chi = conversation_of(&s, "chi", "Shop ơi").await;
    eventually("chi's tags from user/detail", || async {
        (labels_of(&s, &chi).await == json!(["VIP"])).then_some(())
    })
    .await;

    // Bad input and who may do what.
    assert_eq!(attach(&an, "  ").await.0, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        attach(&an, "a\u{1b}[2Jb").await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        attach(&an, &"x".repeat(51)).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let (_, agent) = s.t.account("HuongNT256", "agent").await;
    let (status, _) =
        s.t.post(
            &format!("/api/v1/conversations/{an}/labels"),
            &agent,
            json!({"name": "x"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "an agent who may not see it");
    let (status, _) =
        s.t.get(&format!("/api/v1/conversations/{an}/labels"), &agent)
            .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let remove = format!("/api/v1/connections/{page}/labels/Kh%C3%A1ch%20s%E1%BB%89");
    assert_eq!(s.t.delete(&remove, &agent).await, StatusCode::FORBIDDEN);

    // An admin removes a label from the page: off everyone, here and at Zalo.
    assert_eq!(s.t.delete(&remove, &admin).await, StatusCode::NO_CONTENT);
    assert_eq!(labels_of(&s, &an).await, json!(["Đã mua"]));
    settled(&s).await;
    assert!(zalo_tags(&s).await.get("Khách sỉ").is_none());
    let (_, choices) =
        s.t.get(&format!("/api/v1/conversations/{an}/labels"), &admin)
            .await;
    assert_eq!(choices["page"], json!(["VIP", "Đã mua"]));
    s.t.stop().await;
}
