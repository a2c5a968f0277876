//! The real console loop, headless (TestBackend), against a real `sop serve` process and the real
//! simulator: a message arrives live, claim, reply, delivered/seen; the hub is killed and
//! restarted — the console reconnects and misses nothing; a reply typed while the hub was down is
//! sent exactly once.

mod common;
use common::*;
use crossterm::event::{Event as TermEvent, KeyCode, KeyEvent, KeyModifiers};
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use serde_json::{json, Value};
use sop_console::console::{self, app::Msg, view::Theme, Session, Side};
use std::time::Duration;

const OA: &str = "4294967296000000001";

struct Recorder;
impl Side for Recorder {
    fn bell(&mut self) {}
    fn copy(&mut self, _: &str) {}
    fn edit(&mut self, _: &str) -> Option<String> {
        None
    }
}

fn key(tx: &tokio::sync::mpsc::UnboundedSender<Msg>, code: KeyCode) {
    tx.send(Msg::Term(TermEvent::Key(KeyEvent::new(
        code,
        KeyModifiers::NONE,
    ))))
    .unwrap();
}
fn text(tx: &tokio::sync::mpsc::UnboundedSender<Msg>, s: &str) {
    for c in s.chars() {
        key(tx, KeyCode::Char(c));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn console_live_claim_reply_restart_and_offline_outbox() {
    let dir = temp_dir("console-e2e");
    let port = process::free_port();
    let hub = format!("http://127.0.0.1:{port}");
    let (_sim, sim_base) = process::sim_for(port).await;
    let http = reqwest::Client::new();
    let sim_post = |path: String, body: Value| {
        let http = http.clone();
        let url = format!("{sim_base}/sim{path}");
        async move {
            assert!(http
                .post(url)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
                .is_success())
        }
    };
    sim_post("/oas".into(), json!({"oa_id": OA, "name": "Shop Hoa Tươi", "admins": ["zalo-admin-1"], "customers": [{"user_id": "u1", "name": "Chị Lan"}]})).await;

    // The hub, its admin, an agent, the page, a self-claim rule.
    let admin_token = process::admin_token(&dir);
    let mut hub_proc = process::hub(&dir, port, Some(&sim_base));
    let agent: Value = http
        .post(format!("{hub}/api/v1/accounts"))
        .bearer_auth(&admin_token)
        .json(&json!({"email": "huong@sop.vn", "username": "HuongNT256", "name": "Hương", "role": "agent"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let agent_token = agent["token"].as_str().unwrap().to_string();
    assert_eq!(
        consent(
            &http,
            &hub,
            &admin_token,
            &sim_base,
            OA,
            "zalo-admin-1",
            "allow"
        )
        .await
        .0,
        200
    );
    let conns: Value = get_json(&http, format!("{hub}/api/v1/connections"), &admin_token).await;
    let r = http
        .post(format!("{hub}/api/v1/rules"))
        .bearer_auth(&admin_token)
        .json(&json!({"name": "Trực chat", "sources": [conns[0]["id"]], "members": ["HuongNT256"], "method": "self_claim", "old_conversations": "none"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    // The agent's console, headless.
    let opts = console::Options {
        server: hub.clone(),
        token: agent_token.clone(),
        lang: console::i18n::Lang::Vi,
        keymap: console::keymap::Keymap::default_map(),
        bell: true,
        mouse: false,
        color: false,
        cache_root: Some(dir.join("console-cache")),
    };
    let session = Session::new(&opts, sop_console::model::now_ms());
    let tx = session.tx.clone();
    let theme = Theme {
        color: false,
        utc_offset_min: 420,
    };
    let ui = tokio::spawn(async move {
        let mut terminal = Terminal::new(TestBackend::new(100, 30)).unwrap();
        console::run_loop(&mut terminal, session, &mut Recorder, theme)
            .await
            .unwrap()
    });

    // A customer writes; the console receives it live, claims and replies.
    sim_post(
        format!("/oas/{OA}/customers/u1/messages"),
        json!({"text": "Xin chào shop"}),
    )
    .await;
    let agent_get = |path: &'static str| {
        let (http, hub, t) = (http.clone(), hub.clone(), agent_token.clone());
        async move {
            http.get(format!("{hub}/api/v1{path}"))
                .bearer_auth(t)
                .send()
                .await
                .ok()?
                .json::<Value>()
                .await
                .ok()
        }
    };
    eventually("unclaimed at the hub", || async {
        agent_get("/conversations?view=unclaimed")
            .await
            .filter(|v| v["items"].as_array().is_some_and(|a| !a.is_empty()))
    })
    .await;
    // Time for the live event to reach the console (it has no outside view of its state).
    tokio::time::sleep(Duration::from_millis(2000)).await;
    key(&tx, KeyCode::Char('g'));
    key(&tx, KeyCode::Char('c'));
    key(&tx, KeyCode::Char('r'));
    text(&tx, "Dạ em chào chị");
    key(&tx, KeyCode::Enter);
    let sent = |t: &'static str| {
        let (http, sim_base) = (http.clone(), sim_base.clone());
        async move {
            let all: Value = http
                .get(format!("{sim_base}/sim/sent"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            all.as_array()
                .unwrap()
                .iter()
                .filter(|m| m["text"] == t)
                .cloned()
                .collect::<Vec<_>>()
        }
    };
    let first = eventually("reply at the simulator", || async {
        sent("Dạ em chào chị").await.into_iter().next()
    })
    .await;
    let zalo_id = first["msg_id"].as_str().unwrap().to_string();
    sim_post(
        "/receipts".into(),
        json!({"msg_id": zalo_id, "kind": "delivered"}),
    )
    .await;
    sim_post(
        "/receipts".into(),
        json!({"msg_id": zalo_id, "kind": "seen"}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The hub dies. A reply typed now waits in the outbox.
    hub_proc.kill().unwrap();
    hub_proc.wait().unwrap();
    text(&tx, "Gửi lúc mất mạng");
    key(&tx, KeyCode::Enter);
    tokio::time::sleep(Duration::from_millis(800)).await;

    // Back up on the same port and data dir; a message arrives before the console reconnects.
    let mut hub_proc = process::hub(&dir, port, Some(&sim_base));
    sim_post(
        format!("/oas/{OA}/customers/u1/messages"),
        json!({"text": "Sau khi khởi động lại"}),
    )
    .await;
    eventually("offline reply sent", || async {
        (!sent("Gửi lúc mất mạng").await.is_empty()).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        sent("Gửi lúc mất mạng").await.len(),
        1,
        "the offline reply is sent exactly once"
    );
    assert_eq!(sent("Dạ em chào chị").await.len(), 1);

    key(&tx, KeyCode::Esc);
    key(&tx, KeyCode::Char('q'));
    let app = tokio::time::timeout(Duration::from_secs(10), ui)
        .await
        .expect("console quits")
        .unwrap();
    assert!(app.outbox.is_empty(), "outbox drained");
    let conv_id = app.open.clone().expect("a conversation is open");
    let msgs = &app.messages[&conv_id];
    let texts: Vec<&str> = msgs.iter().map(|m| m.text.as_str()).collect();
    assert!(
        texts.contains(&"Xin chào shop") && texts.contains(&"Sau khi khởi động lại"),
        "{texts:?}"
    );
    let first_reply = msgs.iter().find(|m| m.text == "Dạ em chào chị").unwrap();
    assert_eq!(
        first_reply.delivery,
        Some(sop_console::model::Delivery::Seen)
    );
    let mut terminal = Terminal::new(TestBackend::new(100, 30)).unwrap();
    terminal
        .draw(|f| console::view::draw(f, &app, &theme))
        .unwrap();
    let screen: String = terminal
        .backend()
        .buffer()
        .content()
        .iter()
        .map(|c| c.symbol())
        .collect();
    assert!(screen.contains("✓✓ seen"), "{screen}");
    assert!(screen.contains("Sau khi khởi động lại"));
    hub_proc.kill().unwrap();
    hub_proc.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
