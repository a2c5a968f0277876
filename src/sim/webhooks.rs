//! Webhook delivery as Zalo does it: signed POSTs in order, a 2-second answer expected, retries at
//! 30 s, 5 min, 15 min, 30 min and 1 h (scaled for tests) with a `num_retry` header; plus the
//! injected faults: delay, duplicates, target down.

use super::*;
use crate::zalo::webhook_mac;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::sync::mpsc;

const RETRY_SECS: [f64; 5] = [30.0, 300.0, 900.0, 1800.0, 3600.0];

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct WebhookCtl {
    pub delay_ms: u64,
    pub duplicate_next: u32,
    /// The next N webhooks are held back and delivered after the one that follows them.
    pub reorder_next: u32,
    pub down: bool,
    pub sent: u64,
    pub delivered: u64,
    pub failed_attempts: u64,
}

#[derive(Clone)]
struct Job {
    body: String,
    signature: String,
}

pub struct Outbox {
    tx: mpsc::UnboundedSender<Job>,
    pub ctl: Arc<Mutex<WebhookCtl>>,
}

impl Outbox {
    pub fn start(cfg: SimConfig) -> Outbox {
        let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
        let ctl = Arc::new(Mutex::new(WebhookCtl::default()));
        let worker_ctl = ctl.clone();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("http client");
        let in_order = cfg.parallel_deliveries <= 1;
        let lanes = Arc::new(tokio::sync::Semaphore::new(cfg.parallel_deliveries.max(1)));
        tokio::spawn(async move {
            let mut held: Option<Job> = None;
            while let Some(job) = rx.recv().await {
                let (delay, duplicate, reorder) = {
                    let mut c = worker_ctl.lock();
                    let dup = c.duplicate_next > 0;
                    if dup {
                        c.duplicate_next -= 1;
                    }
                    let reorder = held.is_none() && c.reorder_next > 0;
                    if reorder {
                        c.reorder_next -= 1;
                    }
                    (c.delay_ms, dup, reorder)
                };
                if reorder {
                    held = Some(job);
                    continue;
                }
                if delay > 0 {
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                }
                let copies = if duplicate { 2 } else { 1 };
                let batch: Vec<Job> = std::iter::repeat_n(job, copies)
                    .chain(held.take())
                    .collect();
                for job in batch {
                    let (http, cfg, ctl) = (http.clone(), cfg.clone(), worker_ctl.clone());
                    let send = async move {
                        if !deliver(&http, &cfg, &ctl, &job, 0).await {
                            tokio::spawn(async move { retry(http, cfg, ctl, job).await });
                        }
                    };
                    if in_order {
                        send.await;
                    } else {
                        let lane = lanes.clone().acquire_owned().await.expect("never closed");
                        tokio::spawn(async move {
                            send.await;
                            drop(lane);
                        });
                    }
                }
            }
        });
        Outbox { tx, ctl }
    }
}

async fn deliver(
    http: &reqwest::Client,
    cfg: &SimConfig,
    ctl: &Mutex<WebhookCtl>,
    job: &Job,
    attempt: u32,
) -> bool {
    if cfg.webhook.is_empty() {
        return true;
    }
    if ctl.lock().down {
        ctl.lock().failed_attempts += 1;
        return false;
    }
    let mut req = http
        .post(&cfg.webhook)
        .header("content-type", "application/json")
        .header("X-ZEvent-Signature", &job.signature)
        .body(job.body.clone());
    if attempt > 0 {
        req = req.header("num_retry", attempt.to_string());
    }
    let ok = matches!(req.send().await, Ok(r) if r.status() == 200);
    let mut c = ctl.lock();
    if ok {
        c.delivered += 1;
    } else {
        c.failed_attempts += 1;
    }
    ok
}

async fn retry(http: reqwest::Client, cfg: SimConfig, ctl: Arc<Mutex<WebhookCtl>>, job: Job) {
    for (i, secs) in RETRY_SECS.iter().enumerate() {
        tokio::time::sleep(Duration::from_secs_f64(secs * cfg.retry_scale)).await;
        if deliver(&http, &cfg, &ctl, &job, i as u32 + 1).await {
            return;
        }
    }
    tracing::warn!("webhook dropped after {} retries", RETRY_SECS.len());
}

impl Sim {
    /// Signs and queues one webhook. `app_id` and `timestamp` are added when missing.
    pub fn emit(&self, mut event: Value) {
        if event["app_id"].is_null() {
            event["app_id"] = json!(self.cfg.app_id);
        }
        if event["timestamp"].is_null() {
            event["timestamp"] = json!(now_ms().to_string());
        }
        let body = event.to_string();
        let timestamp = crate::zalo::events::id_str(&event["timestamp"]).unwrap_or_default();
        let signature = webhook_mac(
            &self.cfg.app_id,
            body.as_bytes(),
            &timestamp,
            &self.cfg.oa_secret_key,
        );
        self.webhooks.ctl.lock().sent += 1;
        let _ = self.webhooks.tx.send(Job { body, signature });
    }

    pub fn emit_oa_send(
        &self,
        oa_id: &str,
        user_id: &str,
        msg_id: &str,
        kind: &str,
        text: &str,
        admin_id: Option<&str>,
    ) {
        let mut sender = json!({"id": oa_id});
        if let Some(a) = admin_id {
            sender["admin_id"] = json!(a);
        }
        let mut message = json!({"msg_id": msg_id, "text": text});
        if kind != "text" {
            message["attachments"] = json!([{"type": kind, "payload": {"url": format!("https://sim.zalo.local/media/{msg_id}")}}]);
        }
        self.emit(json!({"event_name": format!("oa_send_{kind}"), "sender": sender, "recipient": {"id": user_id},
                         "user_id_by_app": user_id, "message": message}));
    }

    pub fn emit_receipt(&self, oa_id: &str, user_id: &str, msg_id: &str, event_name: &str) {
        let message = if event_name == "user_seen_message" {
            json!({"msg_ids": [msg_id]})
        } else {
            json!({"msg_id": msg_id})
        };
        self.emit(json!({"event_name": event_name, "sender": {"id": oa_id}, "recipient": {"id": user_id}, "message": message}));
    }
}
