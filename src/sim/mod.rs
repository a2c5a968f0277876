//! `sop zalo-sim`: a faithful local Zalo (reference §7). It serves Zalo's own paths with Zalo's
//! quirks — OAuth v4 consent and token endpoints, the OA Open API, signed webhooks with retries —
//! plus a control API under `/sim/` (docs/simulator.md) for tests and demos.

mod control;
mod oauth;
mod openapi;
mod webhooks;

use crate::model::{now_ms, Ms};
use anyhow::{Context, Result};
use axum::Router;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub webhook: String,
    pub app_id: String,
    pub app_secret: String,
    pub oa_secret_key: String,
    /// Skip the consent page: approve for the first OA as its first admin.
    pub auto_approve: bool,
    /// The registered "Official Account Callback Url"; any redirect_uri is accepted when unset.
    pub redirect_uri: Option<String>,
    /// Where OAs and customers are saved between runs.
    pub state_file: Option<PathBuf>,
    /// Multiplies Zalo's webhook retry delays (30 s, 5 min, …); tests compress the clock.
    pub retry_scale: f64,
    /// Access-token lifetime in seconds (Zalo: 90000).
    pub token_ttl_secs: i64,
    /// Webhooks delivered at once. 1 (the default) delivers in order, one after the other; more
    /// is how a busy OA's traffic reaches several hubs (order between them is then not kept).
    pub parallel_deliveries: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            webhook: String::new(),
            app_id: "sim-app".into(),
            app_secret: "sim-app-secret".into(),
            oa_secret_key: "sim-oa-secret".into(),
            auto_approve: false,
            redirect_uri: None,
            state_file: None,
            retry_scale: 1.0,
            token_ttl_secs: 90_000,
            parallel_deliveries: 1,
        }
    }
}

/// One message in an OA ↔ customer thread. `src`: 1 from the customer, 0 from the OA.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ThreadMessage {
    pub msg_id: String,
    pub src: u8,
    #[serde(rename = "type")]
    pub kind: String,
    pub text: String,
    #[serde(default)]
    pub url: String,
    pub time: Ms,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Customer {
    pub user_id: String,
    pub name: String,
    #[serde(default)]
    pub avatar: String,
    #[serde(default = "yes")]
    pub follows: bool,
    /// Last interaction (message, follow): drives the 7-day window.
    #[serde(default)]
    pub last_interaction: Ms,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Oa {
    pub oa_id: String,
    pub name: String,
    #[serde(default)]
    pub avatar: String,
    #[serde(default)]
    pub category: String,
    /// Zalo user ids allowed to grant the app access to this OA.
    pub admins: Vec<String>,
    #[serde(default)]
    pub customers: BTreeMap<String, Customer>,
    /// Messages per customer, oldest first.
    #[serde(default)]
    pub threads: BTreeMap<String, Vec<ThreadMessage>>,
    /// The OA's tags ("Nhãn" in OA Manager), each with the followers it is on.
    #[serde(default)]
    pub tags: BTreeMap<String, BTreeSet<String>>,
}

/// A message the OA sent to a customer (what tests read back).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sent {
    pub oa_id: String,
    pub user_id: String,
    pub msg_id: String,
    pub kind: String,
    pub text: String,
    pub attachment_id: Option<String>,
    pub quote_message_id: Option<String>,
    pub sent_time: Ms,
    /// True when staff typed it in Zalo's OA Manager rather than through the API.
    pub from_oa_manager: bool,
}

#[derive(Debug, Clone)]
struct AuthCode {
    oa_id: String,
    challenge: Option<String>,
    expires_at: Ms,
}

#[derive(Debug, Clone)]
struct AccessToken {
    oa_id: String,
    expires_at: Ms,
}

/// Faults of the API side (webhook faults live in the outbox's `WebhookCtl`).
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// The next N OA API calls answer `-32` (rate limit).
    pub rate_limit_next: u32,
    /// Only calls to this path count for `rate_limit_next` (a test aiming at one call while the
    /// hub makes others in the background); any call when empty.
    pub rate_limit_path: String,
    /// After each OA send, deliver `user_received_message` then `user_seen_message`.
    pub auto_receipts: bool,
    /// The next N accepted sends reach the customer (and are echoed) but are answered 200 with
    /// an HTML page instead of Zalo's envelope, as a proxy in between might: the sender cannot
    /// tell whether they went.
    pub garble_next_send: u32,
    /// OA API calls to this path wait until it is cleared (a test ordering the hub's background
    /// calls against what it does meanwhile); none when empty.
    pub hold_path: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Stats {
    pub code_exchanges: u64,
    pub refreshes: u64,
    pub api_calls: u64,
}

#[derive(Default)]
struct SimState {
    oas: BTreeMap<String, Oa>,
    codes: HashMap<String, AuthCode>,
    access: HashMap<String, AccessToken>,
    refresh: HashMap<String, String>,
    revoked: HashSet<String>,
    uploads: HashMap<String, (String, usize)>,
    sent: Vec<Sent>,
    faults: Faults,
    stats: Stats,
}

pub struct Sim {
    cfg: SimConfig,
    base: Mutex<String>,
    state: Mutex<SimState>,
    webhooks: webhooks::Outbox,
}

pub(crate) fn random_id(bytes: usize) -> String {
    hex::encode((0..bytes).map(|_| rand::random::<u8>()).collect::<Vec<_>>())
}

/// Zalo-style numeric ids (up to 19 digits).
pub(crate) fn numeric_id() -> String {
    format!(
        "{}",
        1_000_000_000_000_000_000u64 + rand::random::<u64>() % 8_000_000_000_000_000_000
    )
}

impl Sim {
    pub fn new(cfg: SimConfig) -> Result<Arc<Sim>> {
        let mut state = SimState::default();
        if let Some(path) = &cfg.state_file {
            if path.exists() {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                state.oas = serde_json::from_str(&text)
                    .with_context(|| format!("invalid simulator state {}", path.display()))?;
            }
        }
        let webhooks = webhooks::Outbox::start(cfg.clone());
        Ok(Arc::new(Sim {
            cfg,
            base: Mutex::new(String::new()),
            state: Mutex::new(state),
            webhooks,
        }))
    }

    fn save(&self) {
        if let Some(path) = &self.cfg.state_file {
            let text = serde_json::to_string_pretty(&self.state.lock().oas).unwrap_or_default();
            if let Err(e) = std::fs::write(path, text) {
                tracing::warn!("cannot save simulator state to {}: {e}", path.display());
            }
        }
    }

    pub fn stats(&self) -> Stats {
        self.state.lock().stats.clone()
    }

    pub fn sent(&self) -> Vec<Sent> {
        self.state.lock().sent.clone()
    }

    /// Creates or replaces an OA (control API and demo seeding).
    pub fn customer_ids(&self, oa_id: &str) -> Vec<String> {
        self.state
            .lock()
            .oas
            .get(oa_id)
            .map(|o| o.customers.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The simulator's own base URL (from its webhook-independent listen address).
    pub fn base_url(&self) -> String {
        self.base.lock().clone()
    }

    pub fn set_auto_receipts(&self, on: bool) {
        self.state.lock().faults.auto_receipts = on;
    }

    pub fn put_oa(&self, oa: Oa) -> Oa {
        self.state.lock().oas.insert(oa.oa_id.clone(), oa.clone());
        self.save();
        oa
    }
}

pub fn router(sim: Arc<Sim>) -> Router {
    Router::new()
        .merge(oauth::routes())
        .merge(openapi::routes())
        .nest("/sim", control::routes())
        .with_state(sim)
}

/// Serves the simulator on a bound listener until the future `stop` resolves.
pub async fn serve(
    sim: Arc<Sim>,
    listener: tokio::net::TcpListener,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    axum::serve(listener, router(sim))
        .with_graceful_shutdown(stop)
        .await?;
    Ok(())
}

/// Starts the simulator in the background on a bound listener; returns its address.
pub fn spawn(sim: Arc<Sim>, listener: tokio::net::TcpListener) -> Result<SocketAddr> {
    let addr = listener.local_addr()?;
    *sim.base.lock() = format!("http://{addr}");
    tokio::spawn(async move {
        if let Err(e) = serve(sim, listener, std::future::pending()).await {
            tracing::error!("simulator stopped: {e}");
        }
    });
    Ok(addr)
}
