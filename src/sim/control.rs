//! The control API under `/sim/` (docs/simulator.md): set up OAs and customers, make customers
//! act, read what the OA sent, emit receipts, inject faults.

use super::*;
use crate::model::MessageKind;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use serde_json::{json, Value};

pub fn routes() -> Router<Arc<Sim>> {
    Router::new()
        .route("/oas", get(list_oas).post(create_oa))
        .route("/oas/{oa}/customers", post(add_customer))
        .route(
            "/oas/{oa}/customers/{user}/messages",
            post(customer_message),
        )
        .route("/oas/{oa}/customers/{user}/follow", post(follow))
        .route("/oas/{oa}/customers/{user}/unfollow", post(unfollow))
        .route("/oas/{oa}/customers/{user}/submit-info", post(submit_info))
        .route("/oas/{oa}/customers/{user}/tags", post(tag_in_oa_manager))
        .route("/oas/{oa}/tags", get(oa_tags))
        .route("/oas/{oa}/customers/{user}/history", post(history))
        .route("/oas/{oa}/customers/{user}/staff-reply", post(staff_reply))
        .route("/oas/{oa}/expire-tokens", post(expire_tokens))
        .route("/oas/{oa}/revoke", post(revoke))
        .route("/oas/{oa}/tokens", post(mint_token))
        .route("/sent", get(sent))
        .route("/receipts", post(receipt))
        .route("/faults", get(get_faults).post(set_faults))
        .route("/events", post(raw_event))
        .route("/stats", get(stats))
}

fn not_found(what: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"error": format!("{what} not found")})),
    )
        .into_response()
}

#[derive(Deserialize)]
struct NewOa {
    #[serde(default)]
    oa_id: Option<String>,
    name: String,
    #[serde(default)]
    category: String,
    admins: Vec<String>,
    #[serde(default)]
    customers: Vec<NewCustomer>,
}

#[derive(Deserialize)]
struct NewCustomer {
    #[serde(default)]
    user_id: Option<String>,
    name: String,
    #[serde(default = "yes")]
    follows: bool,
    /// Last interaction, default now.
    #[serde(default)]
    last_interaction: Option<Ms>,
}

fn customer(c: NewCustomer) -> Customer {
    Customer {
        user_id: c.user_id.unwrap_or_else(numeric_id),
        avatar: String::new(),
        name: c.name,
        follows: c.follows,
        last_interaction: c.last_interaction.unwrap_or_else(now_ms),
    }
}

async fn create_oa(State(sim): State<Arc<Sim>>, Json(n): Json<NewOa>) -> Response {
    let oa = Oa {
        oa_id: n.oa_id.unwrap_or_else(numeric_id),
        name: n.name,
        avatar: String::new(),
        category: n.category,
        admins: n.admins,
        customers: n
            .customers
            .into_iter()
            .map(customer)
            .map(|c| (c.user_id.clone(), c))
            .collect(),
        threads: BTreeMap::new(),
        tags: BTreeMap::new(),
    };
    (StatusCode::CREATED, Json(sim.put_oa(oa))).into_response()
}

async fn list_oas(State(sim): State<Arc<Sim>>) -> Json<Vec<Oa>> {
    Json(sim.state.lock().oas.values().cloned().collect())
}

async fn add_customer(
    State(sim): State<Arc<Sim>>,
    Path(oa): Path<String>,
    Json(n): Json<NewCustomer>,
) -> Response {
    let c = customer(n);
    {
        let mut st = sim.state.lock();
        let Some(oa) = st.oas.get_mut(&oa) else {
            return not_found("OA");
        };
        oa.customers.insert(c.user_id.clone(), c.clone());
    }
    sim.save();
    (StatusCode::CREATED, Json(c)).into_response()
}

/// A customer message of any kind: `{"kind": "text"|"image"|"gif"|"sticker"|"file"|"audio"|"video"|
/// "link"|"location"|"business_card", "text"?, "url"?, "name"?, "size"?, "latitude"?, "longitude"?}`.
#[derive(Deserialize)]
struct CustomerMessage {
    #[serde(default = "text_kind")]
    kind: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    url: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    latitude: Option<String>,
    #[serde(default)]
    longitude: Option<String>,
    #[serde(default)]
    quote_msg_id: Option<String>,
}

fn text_kind() -> String {
    "text".into()
}

async fn customer_message(
    State(sim): State<Arc<Sim>>,
    Path((oa_id, user)): Path<(String, String)>,
    Json(m): Json<CustomerMessage>,
) -> Response {
    let msg_id = random_id(10);
    let t = now_ms();
    {
        let mut st = sim.state.lock();
        let Some(oa) = st.oas.get_mut(&oa_id) else {
            return not_found("OA");
        };
        let Some(c) = oa.customers.get_mut(&user) else {
            return not_found("customer");
        };
        c.last_interaction = t;
        oa.threads
            .entry(user.clone())
            .or_default()
            .push(ThreadMessage {
                msg_id: msg_id.clone(),
                src: 1,
                kind: m.kind.clone(),
                text: m.text.clone(),
                url: m.url.clone(),
                time: t,
            });
    }
    let mut message = json!({"msg_id": msg_id, "text": m.text});
    if let Some(q) = &m.quote_msg_id {
        message["quote_msg_id"] = json!(q);
    }
    let payload = match MessageKind::from_zalo(&m.kind) {
        MessageKind::Text => None,
        MessageKind::Location => Some(
            json!({"coordinates": {"latitude": m.latitude.unwrap_or_default(), "longitude": m.longitude.unwrap_or_default()}}),
        ),
        MessageKind::File => Some(
            json!({"url": m.url, "name": m.name, "size": m.size.unwrap_or(0).to_string(), "type": m.name.rsplit('.').next().unwrap_or("")}),
        ),
        MessageKind::BusinessCard => Some(
            json!({"thumbnail": m.url, "description": json!({"phone": "0900000000", "qrCodeUrl": m.url}).to_string()}),
        ),
        _ => Some(json!({"url": m.url, "thumbnail": m.url})),
    };
    if let Some(p) = payload {
        message["attachments"] = json!([{"type": m.kind, "payload": p}]);
    }
    sim.emit(json!({"event_name": format!("user_send_{}", m.kind), "sender": {"id": user}, "recipient": {"id": oa_id},
                    "user_id_by_app": user, "message": message}));
    (
        StatusCode::CREATED,
        Json(json!({"msg_id": msg_id, "timestamp": t})),
    )
        .into_response()
}

async fn set_follow(sim: &Sim, oa_id: &str, user: &str, follows: bool) -> Response {
    {
        let mut st = sim.state.lock();
        let Some(oa) = st.oas.get_mut(oa_id) else {
            return not_found("OA");
        };
        let c = oa
            .customers
            .entry(user.to_string())
            .or_insert_with(|| Customer {
                user_id: user.to_string(),
                name: format!("Khách {user}"),
                avatar: String::new(),
                follows,
                last_interaction: now_ms(),
            });
        c.follows = follows;
        c.last_interaction = now_ms();
    }
    sim.save();
    sim.emit(json!({"event_name": if follows { "follow" } else { "unfollow" }, "oa_id": oa_id, "follower": {"id": user},
                    "user_id_by_app": user, "source": "oa_profile"}));
    StatusCode::NO_CONTENT.into_response()
}

async fn follow(State(sim): State<Arc<Sim>>, Path((oa, user)): Path<(String, String)>) -> Response {
    set_follow(&sim, &oa, &user, true).await
}

async fn unfollow(
    State(sim): State<Arc<Sim>>,
    Path((oa, user)): Path<(String, String)>,
) -> Response {
    set_follow(&sim, &oa, &user, false).await
}

#[derive(Deserialize)]
struct TagName {
    name: String,
}

/// A staff member tags a follower in OA Manager: the tag is on the follower, and Zalo tells the
/// app with `add_user_to_tag`.
async fn tag_in_oa_manager(
    State(sim): State<Arc<Sim>>,
    Path((oa, user)): Path<(String, String)>,
    Json(tag): Json<TagName>,
) -> Response {
    {
        let mut st = sim.state.lock();
        let Some(o) = st.oas.get_mut(&oa) else {
            return not_found("OA");
        };
        o.tags
            .entry(tag.name.clone())
            .or_default()
            .insert(user.clone());
    }
    sim.save();
    sim.emit(
        json!({"event_name": "add_user_to_tag", "oa_id": oa, "user_id_by_app": user,
                    "tag": {"user_ids": [user], "name": tag.name}}),
    );
    StatusCode::NO_CONTENT.into_response()
}

/// The OA's tags with their followers, as the tests read them back.
async fn oa_tags(State(sim): State<Arc<Sim>>, Path(oa): Path<String>) -> Response {
    let st = sim.state.lock();
    match st.oas.get(&oa) {
        Some(o) => Json(json!(o.tags)).into_response(),
        None => not_found("OA"),
    }
}

async fn submit_info(
    State(sim): State<Arc<Sim>>,
    Path((oa, user)): Path<(String, String)>,
    Json(info): Json<Value>,
) -> Response {
    sim.emit(json!({"event_name": "user_submit_info", "sender": {"id": user}, "recipient": {"id": oa}, "info": info}));
    StatusCode::NO_CONTENT.into_response()
}

/// Messages that happened before the hub connected: `{"messages": [{"src": 0|1, "text", "time"?}]}`.
#[derive(Deserialize)]
struct History {
    messages: Vec<HistoryMessage>,
}

#[derive(Deserialize)]
struct HistoryMessage {
    src: u8,
    text: String,
    #[serde(default)]
    time: Option<Ms>,
}

async fn history(
    State(sim): State<Arc<Sim>>,
    Path((oa_id, user)): Path<(String, String)>,
    Json(h): Json<History>,
) -> Response {
    {
        let mut st = sim.state.lock();
        let Some(oa) = st.oas.get_mut(&oa_id) else {
            return not_found("OA");
        };
        if !oa.customers.contains_key(&user) {
            return not_found("customer");
        }
        let thread = oa.threads.entry(user.clone()).or_default();
        for m in h.messages {
            let time = m.time.unwrap_or_else(now_ms);
            thread.push(ThreadMessage {
                msg_id: random_id(10),
                src: m.src,
                kind: "text".into(),
                text: m.text,
                url: String::new(),
                time,
            });
        }
        thread.sort_by_key(|m| m.time);
        let last_from_customer = thread.iter().filter(|m| m.src == 1).map(|m| m.time).max();
        if let (Some(t), Some(c)) = (last_from_customer, oa.customers.get_mut(&user)) {
            c.last_interaction = c.last_interaction.max(t);
        }
    }
    sim.save();
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize)]
struct StaffReply {
    text: String,
}

/// Staff typing in Zalo's own OA Manager: Zalo echoes it as `oa_send_text` with `admin_id`.
async fn staff_reply(
    State(sim): State<Arc<Sim>>,
    Path((oa_id, user)): Path<(String, String)>,
    Json(r): Json<StaffReply>,
) -> Response {
    let msg_id = random_id(10);
    let admin = {
        let mut st = sim.state.lock();
        let Some(oa) = st.oas.get_mut(&oa_id) else {
            return not_found("OA");
        };
        let admin = oa.admins.first().cloned().unwrap_or_default();
        oa.threads
            .entry(user.clone())
            .or_default()
            .push(ThreadMessage {
                msg_id: msg_id.clone(),
                src: 0,
                kind: "text".into(),
                text: r.text.clone(),
                url: String::new(),
                time: now_ms(),
            });
        st.sent.push(Sent {
            oa_id: oa_id.clone(),
            user_id: user.clone(),
            msg_id: msg_id.clone(),
            kind: "text".into(),
            text: r.text.clone(),
            attachment_id: None,
            quote_message_id: None,
            sent_time: now_ms(),
            from_oa_manager: true,
        });
        admin
    };
    sim.emit_oa_send(&oa_id, &user, &msg_id, "text", &r.text, Some(&admin));
    (StatusCode::CREATED, Json(json!({"msg_id": msg_id}))).into_response()
}

async fn expire_tokens(State(sim): State<Arc<Sim>>, Path(oa): Path<String>) -> StatusCode {
    for t in sim
        .state
        .lock()
        .access
        .values_mut()
        .filter(|t| t.oa_id == oa)
    {
        t.expires_at = 0;
    }
    StatusCode::NO_CONTENT
}

/// The OA admin removes the app: tokens die and Zalo sends `permission_revoked`.
async fn revoke(State(sim): State<Arc<Sim>>, Path(oa): Path<String>) -> StatusCode {
    {
        let mut st = sim.state.lock();
        st.revoked.insert(oa.clone());
        st.refresh.retain(|_, o| *o != oa);
    }
    sim.emit(json!({"event_name": "permission_revoked", "oa_id": oa}));
    StatusCode::NO_CONTENT
}

/// An access token for the OA without the OAuth dance (benchmarks calling the OA API directly).
async fn mint_token(State(sim): State<Arc<Sim>>, Path(oa): Path<String>) -> Response {
    let mut st = sim.state.lock();
    if !st.oas.contains_key(&oa) {
        drop(st);
        return not_found("OA");
    }
    let token = random_id(32);
    st.access.insert(
        token.clone(),
        AccessToken {
            oa_id: oa,
            expires_at: now_ms() + sim.cfg.token_ttl_secs * 1000,
        },
    );
    Json(json!({"access_token": token})).into_response()
}

#[derive(Deserialize)]
struct SentQuery {
    oa_id: Option<String>,
    user_id: Option<String>,
}

async fn sent(State(sim): State<Arc<Sim>>, Query(q): Query<SentQuery>) -> Json<Vec<Sent>> {
    Json(
        sim.sent()
            .into_iter()
            .filter(|s| {
                q.oa_id.as_ref().is_none_or(|o| &s.oa_id == o)
                    && q.user_id.as_ref().is_none_or(|u| &s.user_id == u)
            })
            .collect(),
    )
}

#[derive(Deserialize)]
struct Receipt {
    msg_id: String,
    /// "delivered" or "seen"
    kind: String,
}

async fn receipt(State(sim): State<Arc<Sim>>, Json(r): Json<Receipt>) -> Response {
    let Some(s) = sim.sent().into_iter().find(|s| s.msg_id == r.msg_id) else {
        return not_found("sent message");
    };
    let event = match r.kind.as_str() {
        "delivered" => "user_received_message",
        "seen" => "user_seen_message",
        _ => {
            return (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({"error": "kind must be delivered or seen"})),
            )
                .into_response()
        }
    };
    sim.emit_receipt(&s.oa_id, &s.user_id, &s.msg_id, event);
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Serialize, Deserialize, Default)]
struct FaultSettings {
    #[serde(default)]
    rate_limit_next: Option<u32>,
    #[serde(default)]
    rate_limit_path: Option<String>,
    #[serde(default)]
    duplicate_next: Option<u32>,
    #[serde(default)]
    reorder_next: Option<u32>,
    #[serde(default)]
    delay_ms: Option<u64>,
    #[serde(default)]
    webhook_down: Option<bool>,
    #[serde(default)]
    auto_receipts: Option<bool>,
    #[serde(default)]
    garble_next_send: Option<u32>,
    #[serde(default)]
    hold_path: Option<String>,
}

async fn set_faults(State(sim): State<Arc<Sim>>, Json(f): Json<FaultSettings>) -> Json<Value> {
    {
        let mut st = sim.state.lock();
        if let Some(n) = f.rate_limit_next {
            st.faults.rate_limit_next = n;
            st.faults.rate_limit_path = f.rate_limit_path.clone().unwrap_or_default();
        }
        if let Some(a) = f.auto_receipts {
            st.faults.auto_receipts = a;
        }
        if let Some(n) = f.garble_next_send {
            st.faults.garble_next_send = n;
        }
        if let Some(p) = &f.hold_path {
            st.faults.hold_path = p.clone();
        }
        let mut c = sim.webhooks.ctl.lock();
        if let Some(n) = f.duplicate_next {
            c.duplicate_next = n;
        }
        if let Some(n) = f.reorder_next {
            c.reorder_next = n;
        }
        if let Some(d) = f.delay_ms {
            c.delay_ms = d;
        }
        if let Some(d) = f.webhook_down {
            c.down = d;
        }
    }
    faults_json(&sim)
}

fn faults_json(sim: &Sim) -> Json<Value> {
    let st = sim.state.lock();
    let c = sim.webhooks.ctl.lock();
    Json(
        json!({"rate_limit_next": st.faults.rate_limit_next, "rate_limit_path": st.faults.rate_limit_path, "auto_receipts": st.faults.auto_receipts, "garble_next_send": st.faults.garble_next_send, "hold_path": st.faults.hold_path,
                "duplicate_next": c.duplicate_next, "reorder_next": c.reorder_next, "delay_ms": c.delay_ms, "webhook_down": c.down}),
    )
}

async fn get_faults(State(sim): State<Arc<Sim>>) -> Json<Value> {
    faults_json(&sim)
}

/// Any event, signed and delivered as is (unknown kinds, hand-made payloads).
async fn raw_event(State(sim): State<Arc<Sim>>, Json(v): Json<Value>) -> StatusCode {
    sim.emit(v);
    StatusCode::ACCEPTED
}

async fn stats(State(sim): State<Arc<Sim>>) -> Json<Value> {
    let s = sim.stats();
    let c = sim.webhooks.ctl.lock().clone();
    let sent = sim.state.lock().sent.len();
    Json(
        json!({"code_exchanges": s.code_exchanges, "refreshes": s.refreshes, "api_calls": s.api_calls, "sent": sent,
                "webhooks_sent": c.sent, "webhooks_delivered": c.delivered, "webhook_attempts_failed": c.failed_attempts}),
    )
}
