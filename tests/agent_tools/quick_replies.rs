//! Quick replies ("Tin nhắn mẫu") through the API, on the engine `SOP_TEST_ENGINE` picks: shared
//! ones written by admins, personal ones by anyone, each pushed live to those who may use it.

use crate::common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sop_console::wire::{EventBody, Frame};
use std::time::Duration;

/// The quick-reply events a stream receives within a short wait: (id, removed).
async fn quick_reply_events(sock: &mut ws::Socket) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    while let Some(frame) = ws::next(sock, Duration::from_millis(500)).await {
        if let Frame::Event { event } = frame {
            match event.body {
                EventBody::QuickReply { quick_reply } => out.push((quick_reply.id, false)),
                EventBody::QuickReplyRemoved { id } => out.push((id, true)),
                _ => {}
            }
        }
    }
    out
}

fn shortcuts(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|q| q["shortcut"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn shared_and_personal_quick_replies_reach_exactly_who_may_use_them() {
    let t = start_hub().await;
    let admin = t.admin_token.clone();
    let (_, huong) = t.account("HuongNT256", "agent").await;
    let (_, que) = t.account("QueCT3", "agent").await;
    let mut huong_stream = ws::connect(&t.ws_url(None), &huong).await;
    let mut que_stream = ws::connect(&t.ws_url(None), &que).await;

    let (status, shared) = t
        .post(
            "/api/v1/quick-replies",
            &admin,
            json!({"shortcut": "/gia", "title": "Báo giá", "shared": true,
                   "text": "Chào {ten_khach}, em là {ten_nhan_vien} của {ten_trang}. Giá dịch vụ là 500.000đ ạ."}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{shared}");
    assert_eq!(
        shared["shortcut"], "gia",
        "the / is not part of the shortcut"
    );
    assert!(shared["owner"].is_null());
    let (status, own) = t
        .post(
            "/api/v1/quick-replies",
            &huong,
            json!({"shortcut": "chao", "title": "Chào khách", "text": "Dạ em chào {ten_khach} ạ"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{own}");

    // Each list: the shared ones and the caller's own.
    assert_eq!(
        shortcuts(&t.get("/api/v1/quick-replies", &huong).await.1),
        ["chao", "gia"]
    );
    assert_eq!(
        shortcuts(&t.get("/api/v1/quick-replies", &que).await.1),
        ["gia"]
    );
    // Live: both were told of the shared one, only Huong of hers.
    let shared_id = shared["id"].as_str().unwrap().to_string();
    let own_id = own["id"].as_str().unwrap().to_string();
    assert_eq!(
        quick_reply_events(&mut huong_stream).await,
        [(shared_id.clone(), false), (own_id.clone(), false)]
    );
    assert_eq!(
        quick_reply_events(&mut que_stream).await,
        [(shared_id.clone(), false)]
    );

    // Agents neither share nor change shared ones; nobody sees or changes another's own.
    let body = json!({"shortcut": "x", "title": "x", "text": "x", "shared": true});
    assert_eq!(
        t.post("/api/v1/quick-replies", &que, body.clone()).await.0,
        StatusCode::FORBIDDEN
    );
    let shared_path = format!("/api/v1/quick-replies/{shared_id}");
    let own_path = format!("/api/v1/quick-replies/{own_id}");
    let (status, _) = t
        .call(Method::PUT, &shared_path, Some(&que), Some(body.clone()))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = t.call(Method::DELETE, &own_path, Some(&que), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Bad input: named.
    for (bad, words) in [
        (
            json!({"shortcut": "a b", "title": "t", "text": "x"}),
            "shortcut",
        ),
        (json!({"shortcut": "ok", "title": "", "text": "x"}), "title"),
        (
            json!({"shortcut": "ok", "title": "t", "text": "Chào {ten}"}),
            "{ten}",
        ),
        (
            json!({"shortcut": "ok", "title": "t", "text": "x".repeat(2001)}),
            "text",
        ),
    ] {
        let (status, body) = t.post("/api/v1/quick-replies", &huong, bad).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(words), "{message}");
    }

    // Huong edits hers, the admin removes the shared one: each told to whom it concerns.
    let edit =
        json!({"shortcut": "chao", "title": "Chào", "text": "Dạ em chào anh/chị {ten_khach}"});
    let (status, edited) = t
        .call(Method::PUT, &own_path, Some(&huong), Some(edit))
        .await;
    assert_eq!(status, StatusCode::OK, "{edited}");
    assert_eq!(edited["text"], "Dạ em chào anh/chị {ten_khach}");
    let (status, _) = t
        .call(Method::DELETE, &shared_path, Some(&admin), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        quick_reply_events(&mut huong_stream).await,
        [(own_id.clone(), false), (shared_id.clone(), true)]
    );
    assert_eq!(
        quick_reply_events(&mut que_stream).await,
        [(shared_id, true)]
    );
    assert_eq!(
        shortcuts(&t.get("/api/v1/quick-replies", &que).await.1),
        Vec::<&str>::new()
    );
    t.stop().await;
}
