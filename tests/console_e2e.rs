//! The real console loop, headless (TestBackend), against a real `sop serve` process and the real
//! simulator: a message arrives live, claim, reply, delivered/seen; the hub is killed and
//! restarted while the console is cut off — the console reconnects and the stream's replay brings
//! what it missed; a reply typed while the hub was down is sent exactly once. The test reads the
//! console's screen to know what it shows (no sleeps as synchronisation).

mod common;
use common::*;
use crossterm::event::{Event as TermEvent, KeyCode, KeyEvent, KeyModifiers};
use ratatui::backend::{Backend, TestBackend};
use ratatui::Terminal;
use serde_json::{json, Value};
use sop_console::console::{self, msg::Msg, ui::Theme, Session, Side};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const OA: &str = "4294967296000000001";

/// A TestBackend the test can read while the console draws on it.
#[derive(Clone)]
struct SharedScreen(Arc<Mutex<TestBackend>>);

impl SharedScreen {
    fn text(&self) -> String {
        let b = self.0.lock().unwrap();
        let buf = b.buffer();
        let mut out = String::new();
        for y in 0..buf.area.height {
            for x in 0..buf.area.width {
                out.push_str(buf[(x, y)].symbol());
            }
            out.push('\n');
        }
        out
    }

    /// Waits until the screen shows `what`.
    async fn shows(&self, what: &str) {
        eventually_explained(&format!("{what:?} on the console's screen"), || async {
            if self.text().contains(what) {
                Ok(())
            } else {
                Err(self.text())
            }
        })
        .await
    }
}

impl Backend for SharedScreen {
    type Error = <TestBackend as Backend>::Error;
    fn draw<'a, I>(&mut self, content: I) -> Result<(), Self::Error>
    where
        I: Iterator<Item = (u16, u16, &'a ratatui::buffer::Cell)>,
    {
        self.0.lock().unwrap().draw(content)
    }
    fn hide_cursor(&mut self) -> Result<(), Self::Error> {
        self.0.lock().unwrap().hide_cursor()
    }
    fn show_cursor(&mut self) -> Result<(), Self::Error> {
        self.0.lock().unwrap().show_cursor()
    }
    fn get_cursor_position(&mut self) -> Result<ratatui::layout::Position, Self::Error> {
        self.0.lock().unwrap().get_cursor_position()
    }
    fn set_cursor_position<P: Into<ratatui::layout::Position>>(
        &mut self,
        p: P,
    ) -> Result<(), Self::Error> {
        self.0.lock().unwrap().set_cursor_position(p)
    }
    fn clear(&mut self) -> Result<(), Self::Error> {
        self.0.lock().unwrap().clear()
    }
    fn clear_region(&mut self, t: ratatui::backend::ClearType) -> Result<(), Self::Error> {
        self.0.lock().unwrap().clear_region(t)
    }
    fn size(&self) -> Result<ratatui::layout::Size, Self::Error> {
        self.0.lock().unwrap().size()
    }
    fn window_size(&mut self) -> Result<ratatui::backend::WindowSize, Self::Error> {
        self.0.lock().unwrap().window_size()
    }
    fn flush(&mut self) -> Result<(), Self::Error> {
        self.0.lock().unwrap().flush()
    }
}

struct Recorder;
impl Side for Recorder {
    fn notify(&mut self, _: &console::msg::Notification, _: console::Alert) {}
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

    // The agent's console, headless, through a link the test can cut.
    let proxy = Proxy::start(format!("127.0.0.1:{port}").parse().unwrap()).await;
    let opts = console::Options {
        server: format!("http://{}", proxy.addr),
        token: agent_token.clone(),
        lang: console::i18n::Lang::Vi,
        keymap: console::keymap::Keymap::default_map(),
        alert: console::Alert {
            bell: true,
            desktop: true,
        },
        notify: Default::default(),
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
    let screen = SharedScreen(Arc::new(Mutex::new(TestBackend::new(100, 30))));
    let ui = {
        let screen = screen.clone();
        tokio::spawn(async move {
            let mut terminal = Terminal::new(screen).unwrap();
            console::run_loop(&mut terminal, session, &mut Recorder, theme)
                .await
                .unwrap()
        })
    };

    // A customer writes; the console receives it live, claims and replies.
    sim_post(
        format!("/oas/{OA}/customers/u1/messages"),
        json!({"text": "Xin chào shop"}),
    )
    .await;
    screen.shows("Chưa ai nhận (1)").await;
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
    screen.shows("✓✓ đã xem").await;

    // The console is cut off and the hub dies. A reply typed now waits in the outbox.
    proxy.set_down(true);
    screen.shows("↻").await;
    hub_proc.kill().unwrap();
    hub_proc.wait().unwrap();
    text(&tx, "Gửi lúc mất mạng");
    key(&tx, KeyCode::Enter);
    screen.shows("⇪1").await;

    // Back up on the same port and data dir; while the console is still cut off, the customer
    // writes again and a new customer arrives: only the stream's replay can bring the new one
    // (a reconnect reloads the open thread, never the list).
    let mut hub_proc = process::hub(&dir, port, Some(&sim_base));
    sim_post(
        format!("/oas/{OA}/customers/u1/messages"),
        json!({"text": "Sau khi khởi động lại"}),
    )
    .await;
    sim_post(
        "/oas/".to_string() + OA + "/customers",
        json!({"user_id": "u2", "name": "Anh Minh"}),
    )
    .await;
    sim_post(
        format!("/oas/{OA}/customers/u2/messages"),
        json!({"text": "Khách mới khi mất kết nối"}),
    )
    .await;
    eventually("the hub applied both", || async {
        let counts = get_json(
            &http,
            format!("{hub}/api/v1/conversations/counts"),
            &admin_token,
        )
        .await;
        (counts["unclaimed"] == 1).then_some(())
    })
    .await;
    proxy.set_down(false);
    screen.shows("Anh Minh").await;
    // It came through the stream's replay: the restarted hub never served the console a list.
    let metrics = http
        .get(format!("{hub}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !metrics.contains(r#"route="/api/v1/conversations",method="GET""#),
        "the console reloaded its list instead of replaying:\n{metrics}"
    );
    eventually("offline reply sent", || async {
        (!sent("Gửi lúc mất mạng").await.is_empty()).then_some(())
    })
    .await;
    screen.shows("Sau khi khởi động lại").await;
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
    assert!(app.data.outbox.is_empty(), "outbox drained");
    // The replay brought the new customer's conversation, and the console is at the hub's head.
    assert!(
        app.data
            .conversations
            .values()
            .any(|c| c.customer.user_id == "u2"),
        "the conversation created while cut off arrived through the replay"
    );

    let conv_id = app.inbox.open.clone().expect("a conversation is open");
    let msgs = &app.data.messages[&conv_id];
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
    terminal.draw(|f| app.draw(f, &theme)).unwrap();
    let screen: String = terminal
        .backend()
        .buffer()
        .content()
        .iter()
        .map(|c| c.symbol())
        .collect();
    assert!(screen.contains("✓✓ đã xem"), "{screen}");
    assert!(screen.contains("Sau khi khởi động lại"));
    hub_proc.kill().unwrap();
    hub_proc.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
