//! `sop demo`: the hub, the Zalo simulator and seeded accounts in one process on free loopback
//! ports, simulated customers writing in Vietnamese, and the console opened as the admin.

use crate::config::Config;
use crate::console;
use crate::model::*;
use crate::server::{self, hub::Hub};
use crate::sim::{self, Customer, Oa, Sim, SimConfig, ThreadMessage};
use crate::wire::NewAccount;
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub struct DemoOptions {
    pub data_dir: Option<PathBuf>,
    /// Open the console as this account (default: the admin).
    pub as_user: Option<String>,
    /// Run without a console: print how to attach and serve until Ctrl-C.
    pub headless: bool,
    /// Open the consent page in a browser instead of approving it automatically.
    pub browser: bool,
    /// Seconds between simulated customer messages.
    pub pace_secs: u64,
    pub lang: String,
}

pub const OA_ID: &str = "1423847451268726170";
pub const OA_NAME: &str = "Công ty Luật TNHH Thành Đồng";
const ADMIN_ZALO_USER: &str = "8309393969855402319";
const AGENTS: [(&str, &str, &str); 3] = [
    ("HuongNT256", "Nguyễn Thu Hương", "huongnt256@sop.vn"),
    ("QueCT3", "Cao Thị Quế", "quect3@sop.vn"),
    ("TriLM22", "Lê Minh Trí", "trilm22@sop.vn"),
];
const CUSTOMERS: [&str; 8] = [
    "Trần Văn An",
    "Phạm Thị Bình",
    "Lê Hoàng Cường",
    "Võ Thị Dung",
    "Đặng Quốc Đạt",
    "Bùi Ngọc Hà",
    "Hồ Thanh Long",
    "Ngô Mỹ Linh",
];
const LINES: [&str; 10] = [
    "Chào shop, cho em hỏi giá dịch vụ tư vấn hợp đồng ạ?",
    "Văn phòng mình làm việc đến mấy giờ vậy ạ?",
    "Em muốn đặt lịch hẹn với luật sư vào thứ Bảy.",
    "Cho mình xin báo giá thành lập công ty nhé.",
    "Hồ sơ của em đã xong chưa ạ?",
    "Mình gửi lại giấy tờ qua đây được không?",
    "Cảm ơn anh chị đã hỗ trợ nhiệt tình!",
    "Phí công chứng hợp đồng mua bán nhà là bao nhiêu?",
    "Em cần tư vấn gấp về tranh chấp đất đai.",
    "Bên mình có hỗ trợ ngoài giờ hành chính không ạ?",
];

pub struct Demo {
    pub hub_url: String,
    pub sim_url: String,
    pub tokens: Vec<(String, String)>,
    pub data_dir: PathBuf,
    pub running: server::Running,
}

fn seed_oa() -> Oa {
    let now = now_ms();
    let mut customers = BTreeMap::new();
    let mut threads = BTreeMap::new();
    for (i, name) in CUSTOMERS.iter().enumerate() {
        let id = format!("84{:017}", 9_120_000_000u64 + i as u64 * 7919);
        // Two old customers with history: one from yesterday, one from ten days ago.
        let last = if i < 2 {
            now - (1 + i as i64 * 9) * DAY_MS
        } else {
            now
        };
        customers.insert(
            id.clone(),
            Customer {
                user_id: id.clone(),
                name: name.to_string(),
                avatar: String::new(),
                follows: true,
                last_interaction: last,
            },
        );
        if i < 2 {
            threads.insert(
                id.clone(),
                vec![
                    ThreadMessage {
                        msg_id: format!("hist{i}a"),
                        src: 1,
                        kind: "text".into(),
                        text: "Chào văn phòng, tôi cần tư vấn.".into(),
                        url: String::new(),
                        time: last - 60_000,
                    },
                    ThreadMessage {
                        msg_id: format!("hist{i}b"),
                        src: 0,
                        kind: "text".into(),
                        text: "Dạ, văn phòng xin nghe ạ.".into(),
                        url: String::new(),
                        time: last,
                    },
                ],
            );
        }
    }
    Oa {
        oa_id: OA_ID.into(),
        name: OA_NAME.into(),
        avatar: String::new(),
        category: "Dịch vụ pháp lý".into(),
        admins: vec![ADMIN_ZALO_USER.into()],
        customers,
        threads,
        tags: Default::default(),
    }
}

/// Starts the hub and the simulator and seeds them; the customers start writing once a page is
/// connected.
pub async fn start(opts: &DemoOptions) -> Result<(Demo, Arc<Sim>, Arc<Hub>)> {
    let data_dir = match &opts.data_dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("sop-demo-{}", std::process::id())),
    };
    let hub_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sim_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hub_url = format!("http://{}", hub_listener.local_addr()?);
    let sim_url = format!("http://{}", sim_listener.local_addr()?);
    let redirect = format!("{hub_url}/zalo/oauth/callback");
    let sim_cfg = SimConfig {
        webhook: format!("{hub_url}/zalo/webhook"),
        app_id: "3608465249409039670".into(),
        app_secret: "demo-app-secret".into(),
        oa_secret_key: "demo-oa-secret-key".into(),
        auto_approve: !opts.browser,
        redirect_uri: Some(redirect.clone()),
        state_file: None,
        retry_scale: 0.01,
        ..Default::default()
    };
    let sim = Sim::new(sim_cfg.clone())?;
    sim.put_oa(seed_oa());
    sim.set_auto_receipts(true);
    sim::spawn(sim.clone(), sim_listener)?;

    let mut config = Config::default();
    config.zalo.app_id = sim_cfg.app_id;
    config.zalo.app_secret = sim_cfg.app_secret;
    config.zalo.oa_secret_key = sim_cfg.oa_secret_key;
    config.zalo.redirect_uri = redirect;
    config.zalo.oauth_base = sim_url.clone();
    config.zalo.api_base = sim_url.clone();
    let hub_dir = data_dir.join("hub");
    // Held for the process's life: a second demo on the same dir is refused.
    std::mem::forget(server::lock_data_dir(&hub_dir)?);
    let db = server::open_database(&config, &hub_dir).await?;
    let hub = Hub::open(db, &hub_dir, config.server.event_retention).await?;

    // Accounts: the admin and the seed's three agents. Agents start "away" (nobody is at their
    // desk yet), so round robin queues new chats for the on-call admin until one toggles `a`.
    let mut tokens = vec![];
    let (admin, admin_token) = ensure_account(
        &hub,
        "CuongLM",
        "Lê Mạnh Cường",
        "cuonglm@sop.vn",
        Role::Admin,
    )
    .await?;
    tokens.push(("CuongLM".to_string(), admin_token));
    seed_quick_replies(&hub, &admin).await?;
    let mut agents = vec![];
    for (u, n, e) in AGENTS {
        let (a, t) = ensure_account(&hub, u, n, e, Role::Agent).await?;
        tokens.push((u.to_string(), t));
        agents.push(a);
    }
    for a in agents {
        hub.set_availability(&a.id, Availability::Away)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let running = server::start(config, hub.clone(), hub_listener).await?;
    tokio::spawn(customers(sim.clone(), hub.clone(), opts.pace_secs.max(1)));
    Ok((
        Demo {
            hub_url,
            sim_url,
            tokens,
            data_dir,
            running,
        },
        sim,
        hub,
    ))
}

/// Creates a demo account, or issues a new token for it when the data dir already has it.
async fn ensure_account(
    hub: &Hub,
    username: &str,
    name: &str,
    email: &str,
    role: Role,
) -> Result<(Account, String)> {
    let existing = hub.read(|st| st.find_account(username).cloned()).await;
    let r = match existing {
        Some(a) => hub.rotate_token(&a.id).await,
        None => {
            hub.create_account(NewAccount {
                email: email.into(),
                username: username.into(),
                name: name.into(),
                role,
            })
            .await
        }
    };
    r.map_err(|e| anyhow::anyhow!("{e}"))
}

/// The shop's shared quick replies ("Tin nhắn mẫu"), once.
async fn seed_quick_replies(hub: &Hub, admin: &Account) -> Result<()> {
    let existing = hub.quick_replies(admin).await;
    if !existing.map_err(|e| anyhow::anyhow!("{e}"))?.is_empty() {
        return Ok(());
    }
    use base64::Engine;
    // The office's map, sent with the address.
    let map = crate::wire::OutboundAttachment {
        kind: crate::wire::OutboundKind::Image,
        name: "ban-do.png".into(),
        content_base64: base64::engine::general_purpose::STANDARD
            .encode(include_bytes!("../assets/demo/ban-do.png")),
    };
    for (shortcut, title, text, attachment) in [
        (
            "chao",
            "Chào khách",
            "Dạ {ten_trang} xin chào {ten_khach}, em là {ten_nhan_vien}. Em có thể giúp gì ạ?",
            None,
        ),
        (
            "gia",
            "Báo giá tư vấn",
            "Dạ phí tư vấn hợp đồng là 500.000đ/giờ ạ. {ten_khach} muốn đặt lịch hẹn không ạ?",
            None,
        ),
        (
            "diachi",
            "Địa chỉ văn phòng",
            "Văn phòng {ten_trang}: 12 Hàng Bài, Hoàn Kiếm, Hà Nội (8:00–17:30, thứ Hai–thứ Bảy).",
            Some(map.clone()),
        ),
    ] {
        let input = crate::wire::QuickReplyInput {
            shortcut: shortcut.into(),
            title: title.into(),
            text: text.into(),
            shared: true,
            attachment: Some(attachment),
        };
        hub.create_quick_reply(admin, input)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    Ok(())
}

/// Simulated customers: once the OA is connected, one writes every few seconds.
async fn customers(sim: Arc<Sim>, hub: Arc<Hub>, pace: u64) {
    let http = reqwest::Client::new();
    let mut n = 0usize;
    loop {
        tokio::time::sleep(Duration::from_secs(pace)).await;
        if hub.read(|st| st.connection_by_oa(OA_ID).is_none()).await {
            continue;
        }
        let ids: Vec<String> = sim.customer_ids(OA_ID);
        if ids.is_empty() {
            continue;
        }
        let user = &ids[(n * 3 + 2) % ids.len()];
        let text = LINES[n % LINES.len()];
        let _ = http
            .post(format!(
                "{}/sim/oas/{OA_ID}/customers/{user}/messages",
                sim.base_url()
            ))
            .json(&serde_json::json!({"kind": "text", "text": text}))
            .send()
            .await;
        n += 1;
    }
}

/// Attaching another console to this demo hub.
pub fn attach_help(d: &Demo) -> String {
    let mut out = format!("sop demo hub: {}   (Zalo simulator: {})\ndata dir: {}\n\nAttach another console to this demo hub:\n", d.hub_url, d.sim_url, d.data_dir.display());
    for (user, token) in &d.tokens {
        out.push_str(&format!(
            "  sop console --server {} --token {token}    # {user}\n",
            d.hub_url
        ));
    }
    out
}

/// Runs the demo: console in the foreground, then keeps serving until Ctrl-C so other consoles
/// can stay attached.
pub async fn run(opts: DemoOptions) -> Result<()> {
    let (demo, _sim, _hub) = start(&opts).await?;
    let help = attach_help(&demo);
    if opts.headless {
        println!("{help}\nPress Ctrl-C to stop.");
        server::wait_for_signal().await;
        demo.running.stop().await;
        return Ok(());
    }
    let who = opts.as_user.clone().unwrap_or_else(|| "CuongLM".into());
    let token = demo
        .tokens
        .iter()
        .find(|(u, _)| u.eq_ignore_ascii_case(&who))
        .map(|(_, t)| t.clone())
        .with_context(|| {
            format!("no demo account {who}; try CuongLM, HuongNT256, QueCT3 or TriLM22")
        })?;
    let console_opts = console::Options {
        server: demo.hub_url.clone(),
        token,
        lang: console::i18n::Lang::parse(&opts.lang),
        keymap: console::keymap::Keymap::default_map(),
        alert: console::Alert {
            bell: true,
            desktop: true,
        },
        notify: Default::default(),
        mouse: false,
        color: std::env::var_os("NO_COLOR").is_none(),
        cache_root: Some(demo.data_dir.join("console")),
    };
    let consent = if opts.browser {
        Consent::Browser
    } else {
        Consent::Auto
    };
    console::run_with_side(
        console_opts,
        &mut DemoSide {
            inner: console::TerminalSide,
            consent,
        },
    )
    .await?;
    println!("{help}\nThe demo hub keeps running for attached consoles. Press Ctrl-C to stop.");
    server::wait_for_signal().await;
    demo.running.stop().await;
    Ok(())
}

enum Consent {
    Auto,
    Browser,
}

/// The demo's admin "opens the consent link" itself: with `--browser` in a real browser,
/// otherwise by following it (the simulator approves automatically).
struct DemoSide {
    inner: console::TerminalSide,
    consent: Consent,
}

impl console::Side for DemoSide {
    fn notify(&mut self, n: &console::msg::Notification, alert: console::Alert) {
        self.inner.notify(n, alert)
    }
    fn copy(&mut self, text: &str) {
        self.inner.copy(text);
        if !text.contains("/v4/oa/permission") {
            return;
        }
        match self.consent {
            Consent::Browser => {
                let _ = std::process::Command::new("xdg-open")
                    .arg(text)
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn();
            }
            Consent::Auto => {
                let url = text.to_string();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(1500)).await;
                    if let Err(e) = reqwest::get(&url).await {
                        tracing::warn!("demo consent failed: {e}");
                    }
                });
            }
        }
    }
    fn edit(&mut self, text: &str) -> Option<String> {
        self.inner.edit(text)
    }
}
