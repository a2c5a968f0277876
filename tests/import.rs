//! A round-1 hub data dir (sled) is refused by `sop serve` with the command that imports it, and
//! `sop admin import --from-sled` brings over every account, page, rule, conversation, message
//! and waiting reply, after which the round-1 tokens keep working.

mod common;
use common::{get_json, process};
use serde_json::{json, Value};
use sop_console::store::{Batch, SledStore, Store};
use std::path::Path;
use std::process::Command;

const ADMIN_TOKEN: &str = "sop_round1admintoken";
const AGENT_TOKEN: &str = "sop_round1agenttoken";

/// Writes records as round 1's hub stored them (keys and JSON).
fn round_one_data_dir(dir: &Path) {
    use sop_console::server::hub::hash_token;
    let store = SledStore::open(dir).unwrap();
    let mut b = Batch::default();
    let mut put = |key: &str, value: Value| b.put(key, serde_json::to_vec(&value).unwrap());
    put(
        "acct/a1",
        json!({"id": "a1", "email": "admin@sop.vn", "username": "CuongLM", "name": "Lê Mạnh Cường", "role": "admin", "availability": "available", "created_at": 1}),
    );
    put(
        "cred/a1",
        json!({"account_id": "a1", "token_hash": hash_token(ADMIN_TOKEN)}),
    );
    put(
        "acct/a2",
        json!({"id": "a2", "email": "huong@sop.vn", "username": "HuongNT256", "name": "Nguyễn Thu Hương", "role": "agent", "availability": "away", "created_at": 2}),
    );
    put(
        "cred/a2",
        json!({"account_id": "a2", "token_hash": hash_token(AGENT_TOKEN)}),
    );
    put(
        "conn/p1",
        json!({"id": "p1", "oa_id": "4321", "name": "Trang Sức Xinh", "avatar": "", "category": "Mua sắm",
        "connector": "a1", "connected_at": 10, "last_connected_at": 10, "chat_mode": "shared", "rule_id": "r1",
        "status": "connected", "status_reason": null,
        "tokens": {"access_token": "at-1", "refresh_token": "rt-1", "access_expires_at": 4102444800000i64},
        "last_event_at": 20, "last_error": null}),
    );
    put(
        "rule/r1",
        json!({"id": "r1", "name": "Chia đều", "sources": ["p1"], "members": ["a2"], "method": "round_robin",
        "old_conversations": "none", "cursor": "a2", "created_at": 11, "updated_at": 11}),
    );
    put(
        "conv/c1",
        json!({"id": "c1", "connection_id": "p1",
        "customer": {"user_id": "u1", "display_name": "Võ Thị Dung", "avatar": "", "fetched_at": 0},
        "assignee": "a2", "state": "assigned", "status": "open", "origin": "live",
        "last_interaction_at": 30, "last_activity_at": 31, "waiting_since": null,
        "unread": {"a2": 1}, "preview": "Dạ em gửi ạ",
        "assignments": [{"at": 30, "to": "a2", "by": null, "reason": "rule"}], "created_at": 30}),
    );
    put(
        "msg/c1/00000000000000000001",
        json!({"id": "m1", "conversation_id": "c1", "direction": "inbound",
        "sender": "u1", "sender_name": "Võ Thị Dung", "kind": "text", "text": "Cho em hỏi giá", "attachments": [],
        "zalo_msg_id": "z-1", "quote_msg_id": null, "client_key": null, "delivery": null,
        "error_code": null, "error_reason": null, "created_at": 30}),
    );
    put(
        "msg/c1/00000000000000000002",
        json!({"id": "m2", "conversation_id": "c1", "direction": "outbound",
        "sender": "a2", "sender_name": "Nguyễn Thu Hương", "kind": "image", "text": "Dạ em gửi ạ",
        "attachments": [{"kind": "image", "url": "", "name": "gia.png", "size": 4}],
        "zalo_msg_id": null, "quote_msg_id": null, "client_key": "k1", "delivery": "pending",
        "error_code": null, "error_reason": null, "created_at": 31}),
    );
    // A reply still waiting for Zalo, its attachment inline as early round 1 kept it.
    put(
        "job/m2",
        json!({"message_id": "m2", "conversation_id": "c1", "attempts": 2, "next_attempt_at": 40,
        "attachment": {"kind": "image", "name": "gia.png", "content_base64": "iVBORw=="}}),
    );
    put(
        "meta/counters",
        json!({"account": 2, "connection": 1, "rule": 1, "conversation": 1, "message": 2, "seq": 57, "webhook": 9}),
    );
    store.apply(b).unwrap();
    store.flush().unwrap();
}

fn sop(dir: &Path, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(process::SOP);
    process::with_database(&mut cmd, dir);
    cmd.args(args).output().unwrap()
}

#[tokio::test]
async fn a_round_one_data_dir_is_refused_then_imported_whole() {
    let dir = common::temp_dir("import");
    round_one_data_dir(&dir);
    let d = dir.to_str().unwrap();

    let refused = sop(&dir, &["serve", "--listen", "127.0.0.1:0", "--data-dir", d]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains(&format!("sop admin import --from-sled {d}")),
        "{err}"
    );

    let imported = sop(
        &dir,
        &["admin", "--data-dir", d, "import", "--from-sled", d],
    );
    let out = String::from_utf8_lossy(&imported.stdout);
    assert!(
        imported.status.success(),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );
    assert!(
        out.contains("2 accounts, 1 pages, 1 rules, 1 conversations, 2 messages, 1 replies"),
        "{out}"
    );
    let again = sop(
        &dir,
        &["admin", "--data-dir", d, "import", "--from-sled", d],
    );
    assert!(!again.status.success(), "imported once");

    let port = process::free_port();
    let mut hub = process::hub(&dir, port, None);
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let accounts: Value = get_json(&http, format!("{url}/api/v1/accounts"), ADMIN_TOKEN).await;
    let names: Vec<&str> = accounts
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["CuongLM", "HuongNT256"]);
    let me: Value = get_json(&http, format!("{url}/api/v1/me"), AGENT_TOKEN).await;
    assert_eq!(me["availability"], "away");
    let page: Value = get_json(&http, format!("{url}/api/v1/connections/p1"), ADMIN_TOKEN).await;
    assert_eq!(page["name"], "Trang Sức Xinh");
    assert_eq!(page["rule_id"], "r1");
    let rule: Value = get_json(&http, format!("{url}/api/v1/rules/r1"), ADMIN_TOKEN).await;
    assert_eq!(rule["members"], json!(["a2"]));
    let mine: Value = get_json(
        &http,
        format!("{url}/api/v1/conversations?view=mine"),
        AGENT_TOKEN,
    )
    .await;
    assert_eq!(mine["items"][0]["id"], "c1");
    assert_eq!(mine["items"][0]["unread"]["a2"], 1);
    assert_eq!(mine["items"][0]["customer"]["display_name"], "Võ Thị Dung");
    let thread: Value = get_json(
        &http,
        format!("{url}/api/v1/conversations/c1/messages"),
        AGENT_TOKEN,
    )
    .await;
    let texts: Vec<&str> = thread["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["Cho em hỏi giá", "Dạ em gửi ạ"]);
    // The waiting reply's attachment is a blob file now.
    let blobs = std::fs::read_dir(dir.join("attachments")).unwrap().count();
    assert_eq!(blobs, 1);
    // New ids continue after round 1's.
    let (status, created) = {
        let r = http
            .post(format!("{url}/api/v1/accounts"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({"email": "an@sop.vn", "username": "An", "name": "An", "role": "agent"}))
            .send()
            .await
            .unwrap();
        (r.status(), r.json::<Value>().await.unwrap())
    };
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["account"]["id"], "a3");
    hub.kill().unwrap();
    hub.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
