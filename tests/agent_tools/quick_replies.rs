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

/// A quick reply with an image: listed with what the file is, its bytes for those who may use
/// it, sent to Zalo as a reply sends any image; kept, replaced or removed by a PUT; checked as
/// a reply's attachment is; gone with its quick reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quick_reply_with_an_image_reaches_zalo() {
    use base64::Engine;
    const OA: &str = "oa-quick";
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let map = include_bytes!("../../assets/demo/ban-do.png");
    let s = start_stack().await;
    s.sim_oa(OA, "Luật Minh Khuê", &[("an", "Trần Văn An", 0)])
        .await;
    assert_eq!(
        s.connect(OA, "zalo-admin-1", "allow").await.0,
        StatusCode::OK
    );
    let (admin, t) = (s.t.admin_token.clone(), &s.t);
    let (_, huong) = t.account("HuongNT256", "agent").await;
    let (_, que) = t.account("QueCT3", "agent").await;

    let (status, q) = t
        .post(
            "/api/v1/quick-replies",
            &admin,
            json!({"shortcut": "diachi", "title": "Địa chỉ", "shared": true,
                   "text": "Văn phòng {ten_trang}: 12 Hàng Bài",
                   "attachment": {"kind": "image", "name": "../ban-do.png", "content_base64": b64(map)}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{q}");
    let expected = json!({"kind": "image", "url": "", "name": "ban-do.png", "size": map.len()});
    assert_eq!(q["attachment"], expected, "no path in the name");
    let id = q["id"].as_str().unwrap().to_string();
    let (_, list) = t.get("/api/v1/quick-replies", &huong).await;
    assert_eq!(list[0]["attachment"], expected);
    let file_path = format!("/api/v1/quick-replies/{id}/attachment");
    let (status, file) = t.get(&file_path, &huong).await;
    assert_eq!(status, StatusCode::OK, "{file}");
    assert_eq!(
        file,
        json!({"kind": "image", "name": "ban-do.png", "content_base64": b64(map)})
    );

    // The console sends the text, then the file as its own reply: Zalo gets an image.
    s.customer_says(OA, "an", "Văn phòng ở đâu ạ?").await;
    let conv = eventually("the conversation", || async {
        let (_, page) = t.get("/api/v1/conversations?view=all", &admin).await;
        page["items"][0]["id"].as_str().map(str::to_string)
    })
    .await;
    let (status, m) = t
        .post(
            &format!("/api/v1/conversations/{conv}/reply"),
            &admin,
            json!({"client_key": "qr-file", "text": "", "attachment": file}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{m}");
    let sent = eventually("the image at Zalo", || async {
        let sent = s.sim_get("/sent").await;
        let first = sent.as_array()?.first()?.clone();
        Some(first)
    })
    .await;
    assert_eq!(sent["kind"], "image", "{sent}");
    assert!(sent["attachment_id"].is_string(), "{sent}");

    // A PUT without `attachment` keeps the file; with `null` removes it.
    let path = format!("/api/v1/quick-replies/{id}");
    let edit =
        json!({"shortcut": "diachi", "title": "Địa chỉ VP", "text": "12 Hàng Bài", "shared": true});
    let (status, kept) = t
        .call(Method::PUT, &path, Some(&admin), Some(edit.clone()))
        .await;
    assert_eq!(status, StatusCode::OK, "{kept}");
    assert_eq!(kept["attachment"], expected);
    assert_eq!(t.get(&file_path, &huong).await.1, file);
    let mut without = edit.clone();
    without["attachment"] = Value::Null;
    let (status, plain) = t
        .call(Method::PUT, &path, Some(&admin), Some(without))
        .await;
    assert_eq!(status, StatusCode::OK, "{plain}");
    assert!(plain["attachment"].is_null(), "{plain}");
    assert_eq!(t.get(&file_path, &huong).await.0, StatusCode::NOT_FOUND);
    let db = t.hub.db().clone();
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM quick_reply_files").await,
        0
    );

    // Checked as a reply's attachment; a file alone needs no text, nothing at all does.
    let big = vec![0u8; (1 << 20) + 1];
    for (attachment, text, words) in [
        (
            json!({"kind": "image", "name": "to.png", "content_base64": b64(&big)}),
            "x",
            "larger than Zalo takes",
        ),
        (
            json!({"kind": "file", "name": "a.pdf", "content_base64": "không phải base64"}),
            "x",
            "base64",
        ),
        (Value::Null, "", "text"),
    ] {
        let (status, body) = t
            .post(
                "/api/v1/quick-replies",
                &huong,
                json!({"shortcut": "f", "title": "f", "text": text, "attachment": attachment}),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(words), "{message}");
    }

    // Huong's own file: hers alone, and gone with the quick reply.
    let (status, own) = t
        .post(
            "/api/v1/quick-replies",
            &huong,
            json!({"shortcut": "hd", "title": "Hợp đồng mẫu", "text": "",
                   "attachment": {"kind": "file", "name": "hop-dong.pdf", "content_base64": b64(b"%PDF-1.4 mau")}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{own}");
    let own_file = format!(
        "/api/v1/quick-replies/{}/attachment",
        own["id"].as_str().unwrap()
    );
    assert_eq!(t.get(&own_file, &huong).await.0, StatusCode::OK);
    assert_eq!(t.get(&own_file, &que).await.0, StatusCode::NOT_FOUND);
    assert_eq!(t.get(&own_file, &admin).await.0, StatusCode::NOT_FOUND);
    let own_path = format!("/api/v1/quick-replies/{}", own["id"].as_str().unwrap());
    assert_eq!(
        t.call(Method::DELETE, &own_path, Some(&huong), None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM quick_reply_files").await,
        0
    );
    s.t.stop().await;
}
