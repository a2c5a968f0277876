//! Private notes through the API, on the engine `SOP_TEST_ENGINE` picks: staff-only entries in a
//! thread that never become a reply to Zalo; `@username` mentions a colleague who may see the
//! conversation, who gets it live and in their mentions.

use crate::common::*;
use reqwest::StatusCode;
use serde_json::json;
use sop_console::wire::{EventBody, Frame};
use std::time::Duration;

#[tokio::test]
async fn a_note_mentions_a_colleague_who_gets_it_live_and_in_their_mentions() {
    let t = start_hub().await;
    let (_, huong_token) = t.account("HuongNT256", "agent").await;
    let (que, que_token) = t.account("QueCT3", "agent").await;
    let (_, tri_token) = t.account("TriLM22", "agent").await;
    let page = t.page("oa-notes").await;
    let other = t.page("oa-other").await;
    t.rule("Nhóm", &[&page], &["HuongNT256", "QueCT3"], "self_claim")
        .await;
    t.rule("Khác", &[&other], &["TriLM22"], "self_claim").await;
    let conv = t.inbound(&page, "u1", "m1").await;
    // Waiting to be claimed: both members of the page's rule may see it.
    let (_, before) = t
        .get(&format!("/api/v1/conversations/{}", conv.id), &huong_token)
        .await;

    // Who a note there can mention: everyone else who may see it (Tri may not).
    let path = format!("/api/v1/conversations/{}/colleagues", conv.id);
    let (status, colleagues) = t.get(&path, &huong_token).await;
    assert_eq!(status, StatusCode::OK, "{colleagues}");
    let names: Vec<&str> = colleagues
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["CuongLM", "QueCT3"]);
    assert!(colleagues[0].get("email").is_none(), "no emails");

    let mut que_stream = ws::connect(&t.ws_url(None), &que_token).await;
    let notes = format!("/api/v1/conversations/{}/notes", conv.id);
    let body = json!({"client_key": "n-1", "text": "@QueCT3 khách này hỏi giá sỉ, chị xem giúp"});
    let (status, note) = t.post(&notes, &huong_token, body.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{note}");
    assert_eq!(note["kind"], "note");
    assert!(note["delivery"].is_null(), "a note is never sent: {note}");
    // The same key again: the same note, once.
    let (status, again) = t.post(&notes, &huong_token, body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["id"], note["id"]);

    // Que sees it arrive on her stream.
    let mut got = None;
    while let Some(frame) = ws::next(&mut que_stream, Duration::from_secs(5)).await {
        if let Frame::Event { event } = frame {
            if let EventBody::Message { message } = event.body {
                if message.id == note["id"].as_str().unwrap() {
                    got = Some(message);
                    break;
                }
            }
        }
    }
    let got = got.expect("the mentioned colleague gets the note live");
    assert_eq!(got.kind, sop_console::model::MessageKind::Note);

    // Her mentions list it; nobody else's does.
    let (status, mentions) = t.get("/api/v1/mentions", &que_token).await;
    assert_eq!(status, StatusCode::OK, "{mentions}");
    let items = mentions["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{mentions}");
    assert_eq!(items[0]["message"]["id"], note["id"]);
    assert_eq!(items[0]["conversation"]["id"], conv.id.as_str());
    for token in [&huong_token, &tri_token, &t.admin_token] {
        let (_, m) = t.get("/api/v1/mentions", token).await;
        assert_eq!(m["items"].as_array().unwrap().len(), 0, "{m}");
    }
    assert!(mentions["items"][0]["message"]["text"]
        .as_str()
        .unwrap()
        .contains(&format!("@{}", que.username)));

    // It is in the thread, and nothing went towards Zalo: no reply job, the conversation's
    // activity, preview and reply window as they were.
    let (_, thread) = t
        .get(
            &format!("/api/v1/conversations/{}/messages", conv.id),
            &que_token,
        )
        .await;
    assert!(thread["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["id"] == note["id"] && m["kind"] == "note"));
    assert_eq!(
        count(t.hub.db(), "SELECT COUNT(*) FROM reply_jobs").await,
        0
    );
    let (_, after) = t
        .get(&format!("/api/v1/conversations/{}", conv.id), &huong_token)
        .await;
    for field in ["last_activity_at", "preview", "last_interaction_at"] {
        assert_eq!(after[field], before[field], "{field}");
    }

    // Claimed, it is Huong's alone (and admins'): mentioning someone who cannot see it is
    // refused, naming them; nothing is stored.
    let claim = format!("/api/v1/conversations/{}/claim", conv.id);
    assert_eq!(
        t.post(&claim, &huong_token, json!({})).await.0,
        StatusCode::OK
    );
    let body = json!({"client_key": "n-2", "text": "@QueCT3 @TriLM22 @nobody xem giúp"});
    let (status, refused) = t.post(&notes, &huong_token, body).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("@trilm22") && message.contains("@nobody"),
        "{message}"
    );
    let (_, m) = t.get("/api/v1/mentions", &tri_token).await;
    assert_eq!(m["items"].as_array().unwrap().len(), 0);

    // Someone who may not see the conversation can neither write there nor list who may.
    let body = json!({"client_key": "n-3", "text": "xin chào"});
    assert_eq!(
        t.post(&notes, &tri_token, body).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(t.get(&path, &tri_token).await.0, StatusCode::NOT_FOUND);
    for bad in [
        json!({"client_key": "n-4", "text": "  "}),
        json!({"text": "x"}),
    ] {
        let (status, body) = t.post(&notes, &huong_token, bad).await;
        assert!(status.is_client_error(), "{status} {body}");
    }
    t.stop().await;
}
