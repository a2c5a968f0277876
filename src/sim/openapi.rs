//! The OA Open API: `access_token` header, `data=` JSON query parameters, errors as HTTP 200 with
//! negative codes, rate-limit headers, Zalo's message and upload limits.
// Checks return the finished error response to send back as is.
#![allow(clippy::result_large_err)]

use super::*;
use crate::model::{DAY_MS, MAX_TEXT_CHARS};
use axum::extract::{Multipart, Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use serde_json::{json, Value};

pub fn routes() -> Router<Arc<Sim>> {
    Router::new()
        .route("/v2.0/oa/getoa", get(getoa))
        .route("/v3.0/oa/user/detail", get(user_detail))
        .route("/v3.0/oa/user/getlist", get(user_list))
        .route("/v2.0/oa/listrecentchat", get(list_recent_chat))
        .route("/v2.0/oa/conversation", get(conversation))
        .route("/v3.0/oa/message/cs", post(send_cs))
        .route("/v2.0/oa/tag/gettagsofoa", get(tags_of_oa))
        .route("/v2.0/oa/tag/tagfollower", post(tag_follower))
        .route("/v2.0/oa/tag/rmfollowerfromtag", post(untag_follower))
        .route("/v2.0/oa/tag/rmtag", post(remove_tag))
        // Zalo answers an oversized upload with -210, so the body limit sits above its largest
        // accepted file (5 MB) and the handler decides.
        .route(
            "/v2.0/oa/upload/{kind}",
            post(upload).layer(axum::extract::DefaultBodyLimit::max(16 << 20)),
        )
}

const RATE_LIMIT: u64 = 4000;

fn zalo_error(code: i64, message: &str) -> Response {
    Json(json!({"error": code, "message": message})).into_response()
}

fn ok(data: Value, remain: u64) -> Response {
    let mut r = Json(json!({"error": 0, "message": "Success", "data": data})).into_response();
    let h = r.headers_mut();
    h.insert("X-RateLimit-Limit", RATE_LIMIT.into());
    h.insert("X-RateLimit-Remain", remain.into());
    r
}

/// The caller's OA, from the `access_token` header, after the rate limit; with the remaining
/// quota for the response headers. Rejections are Zalo's own error bodies (HTTP 200).
struct Authorized {
    oa_id: String,
    remain: u64,
}

impl axum::extract::FromRequestParts<Arc<Sim>> for Authorized {
    type Rejection = Response;
    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        sim: &Arc<Sim>,
    ) -> Result<Self, Response> {
        while sim.state.lock().faults.hold_path == parts.uri.path() {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let mut st = sim.state.lock();
        st.stats.api_calls += 1;
        let token = parts
            .headers
            .get("access_token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let oa_id = match st.access.get(token) {
            Some(t) if t.expires_at > now_ms() && !st.revoked.contains(&t.oa_id) => t.oa_id.clone(),
            _ => return Err(zalo_error(-216, "Access token is invalid")),
        };
        let aimed = &st.faults.rate_limit_path;
        if st.faults.rate_limit_next > 0 && (aimed.is_empty() || *aimed == parts.uri.path()) {
            st.faults.rate_limit_next -= 1;
            return Err(zalo_error(-32, "Your OA reached limit call api"));
        }
        let remain = RATE_LIMIT.saturating_sub(st.stats.api_calls % RATE_LIMIT);
        Ok(Authorized { oa_id, remain })
    }
}

#[derive(Deserialize, Default)]
struct DataParam {
    data: Option<String>,
}

fn data_param(q: &DataParam) -> Value {
    q.data
        .as_deref()
        .and_then(|d| serde_json::from_str(d).ok())
        .unwrap_or(Value::Null)
}

fn arg_u64(v: &Value, key: &str, default: u64) -> u64 {
    match &v[key] {
        Value::Number(n) => n.as_u64().unwrap_or(default),
        Value::String(s) => s.parse().unwrap_or(default),
        _ => default,
    }
}

async fn getoa(State(sim): State<Arc<Sim>>, Authorized { oa_id, remain }: Authorized) -> Response {
    let st = sim.state.lock();
    let oa = &st.oas[&oa_id];
    ok(
        json!({"oa_id": oa.oa_id, "name": oa.name, "description": "", "oa_alias": "", "is_verified": true,
               "oa_type": 2, "cate_name": oa.category, "num_follower": oa.customers.values().filter(|c| c.follows).count(),
               "avatar": oa.avatar, "cover": ""}),
        remain,
    )
}

async fn user_detail(
    State(sim): State<Arc<Sim>>,
    Authorized { oa_id, remain }: Authorized,
    Query(q): Query<DataParam>,
) -> Response {
    let d = data_param(&q);
    let user_id = crate::zalo::events::id_str(&d["user_id"]).unwrap_or_default();
    let st = sim.state.lock();
    let Some(c) = st.oas[&oa_id].customers.get(&user_id) else {
        return zalo_error(-201, "user_id is invalid!");
    };
    let date = chrono::DateTime::from_timestamp_millis(c.last_interaction)
        .map(|d| d.format("%d/%m/%Y").to_string())
        .unwrap_or_default();
    let tag_names: Vec<&String> = st.oas[&oa_id]
        .tags
        .iter()
        .filter(|(_, users)| users.contains(&user_id))
        .map(|(name, _)| name)
        .collect();
    ok(
        json!({"user_id": c.user_id, "user_id_by_app": c.user_id, "display_name": c.name, "user_alias": c.name,
               "is_sensitive": false, "user_last_interaction_date": date, "user_is_follower": c.follows,
               "avatar": c.avatar, "avatars": {"120": c.avatar, "240": c.avatar},
               "tags_and_notes_info": {"notes": [], "tag_names": tag_names}, "shared_info": {}}),
        remain,
    )
}

/// `tag/gettagsofoa`: the OA's tag names (§4.7).
async fn tags_of_oa(
    State(sim): State<Arc<Sim>>,
    Authorized { oa_id, remain }: Authorized,
) -> Response {
    let st = sim.state.lock();
    let names: Vec<&String> = st.oas[&oa_id].tags.keys().collect();
    ok(json!(names), remain)
}

/// A tag request's body: `{"user_id", "tag_name"}` (ids as strings or numbers), or `{"tag_name"}`.
fn tag_body(body: &[u8]) -> Result<(Option<String>, String), Response> {
    let v: Value =
        serde_json::from_slice(body).map_err(|_| zalo_error(-201, "body is invalid!"))?;
    let name = v["tag_name"]
        .as_str()
        .unwrap_or_default()
        .trim()
        .to_string();
    if name.is_empty() {
        return Err(zalo_error(-201, "tag_name is invalid!"));
    }
    Ok((crate::zalo::events::id_str(&v["user_id"]), name))
}

/// A follower's tag request: both `user_id` and `tag_name`.
fn follower_tag_body(body: &[u8]) -> Result<(String, String), Response> {
    match tag_body(body)? {
        (Some(user), name) => Ok((user, name)),
        (None, _) => Err(zalo_error(-201, "user_id is invalid!")),
    }
}

/// `tag/tagfollower`: puts the tag on a follower, creating it when missing.
async fn tag_follower(
    State(sim): State<Arc<Sim>>,
    Authorized { oa_id, remain }: Authorized,
    body: axum::body::Bytes,
) -> Response {
    let (user, name) = match follower_tag_body(&body) {
        Ok(found) => found,
        Err(r) => return r,
    };
    {
        let mut st = sim.state.lock();
        let oa = st.oas.get_mut(&oa_id).expect("authorized");
        if !oa.customers.get(&user).is_some_and(|c| c.follows) {
            return zalo_error(-213, "User has not followed OA");
        }
        oa.tags.entry(name).or_default().insert(user);
    }
    sim.save();
    ok(json!({}), remain)
}

/// `tag/rmfollowerfromtag`: takes the tag off a follower (the tag stays).
async fn untag_follower(
    State(sim): State<Arc<Sim>>,
    Authorized { oa_id, remain }: Authorized,
    body: axum::body::Bytes,
) -> Response {
    let (user, name) = match follower_tag_body(&body) {
        Ok(found) => found,
        Err(r) => return r,
    };
    {
        let mut st = sim.state.lock();
        let oa = st.oas.get_mut(&oa_id).expect("authorized");
        match oa.tags.get_mut(&name) {
            Some(users) => users.remove(&user),
            None => return zalo_error(-201, "tag_name is invalid!"),
        };
    }
    sim.save();
    ok(json!({}), remain)
}

/// `tag/rmtag`: deletes the tag from the OA (and so from every follower).
async fn remove_tag(
    State(sim): State<Arc<Sim>>,
    Authorized { oa_id, remain }: Authorized,
    body: axum::body::Bytes,
) -> Response {
    let name = match tag_body(&body) {
        Ok((_, name)) => name,
        Err(r) => return r,
    };
    {
        let mut st = sim.state.lock();
        let oa = st.oas.get_mut(&oa_id).expect("authorized");
        if oa.tags.remove(&name).is_none() {
            return zalo_error(-201, "tag_name is invalid!");
        }
    }
    sim.save();
    ok(json!({}), remain)
}

async fn user_list(
    State(sim): State<Arc<Sim>>,
    Authorized { oa_id, remain }: Authorized,
    Query(q): Query<DataParam>,
) -> Response {
    let d = data_param(&q);
    let (offset, count) = (arg_u64(&d, "offset", 0), arg_u64(&d, "count", 50));
    if count > 50 {
        return zalo_error(-201, "count is invalid!");
    }
    let st = sim.state.lock();
    let followers: Vec<&Customer> = st.oas[&oa_id]
        .customers
        .values()
        .filter(|c| c.follows)
        .collect();
    let users: Vec<Value> = followers
        .iter()
        .skip(offset as usize)
        .take(count as usize)
        .map(|c| json!({"user_id": c.user_id}))
        .collect();
    ok(
        json!({"total": followers.len(), "count": users.len(), "offset": offset, "users": users}),
        remain,
    )
}

fn row(oa: &Oa, c: &Customer, m: &ThreadMessage) -> Value {
    let (from, to) = if m.src == 1 {
        ((&c.user_id, &c.name), (&oa.oa_id, &oa.name))
    } else {
        ((&oa.oa_id, &oa.name), (&c.user_id, &c.name))
    };
    let mut r = json!({"src": m.src, "time": m.time, "type": m.kind, "message": m.text, "message_id": m.msg_id,
                       "from_id": from.0, "from_display_name": from.1, "from_avatar": "",
                       "to_id": to.0, "to_display_name": to.1, "to_avatar": ""});
    if !m.url.is_empty() {
        r["url"] = json!(m.url);
    }
    r
}

fn paging(d: &Value) -> Result<(usize, usize), Response> {
    let (offset, count) = (arg_u64(d, "offset", 0), arg_u64(d, "count", 10));
    if count == 0 || count > 10 {
        return Err(zalo_error(-201, "count is invalid! (max 10)"));
    }
    Ok((offset as usize, count as usize))
}

async fn list_recent_chat(
    State(sim): State<Arc<Sim>>,
    Authorized { oa_id, remain }: Authorized,
    Query(q): Query<DataParam>,
) -> Response {
    let (offset, count) = match paging(&data_param(&q)) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let st = sim.state.lock();
    let oa = &st.oas[&oa_id];
    let mut latest: Vec<(&Customer, &ThreadMessage)> = oa
        .threads
        .iter()
        .filter_map(|(u, msgs)| Some((oa.customers.get(u)?, msgs.last()?)))
        .collect();
    latest.sort_by_key(|(_, m)| std::cmp::Reverse(m.time));
    let rows: Vec<Value> = latest
        .iter()
        .skip(offset)
        .take(count)
        .map(|(c, m)| row(oa, c, m))
        .collect();
    ok(Value::Array(rows), remain)
}

async fn conversation(
    State(sim): State<Arc<Sim>>,
    Authorized { oa_id, remain }: Authorized,
    Query(q): Query<DataParam>,
) -> Response {
    let d = data_param(&q);
    let (offset, count) = match paging(&d) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let user_id = crate::zalo::events::id_str(&d["user_id"]).unwrap_or_default();
    let st = sim.state.lock();
    let oa = &st.oas[&oa_id];
    let Some(c) = oa.customers.get(&user_id) else {
        return zalo_error(-201, "user_id is invalid!");
    };
    let rows: Vec<Value> = oa
        .threads
        .get(&user_id)
        .map(|t| {
            t.iter()
                .rev()
                .skip(offset)
                .take(count)
                .map(|m| row(oa, c, m))
                .collect()
        })
        .unwrap_or_default();
    ok(Value::Array(rows), remain)
}

async fn send_cs(
    State(sim): State<Arc<Sim>>,
    Authorized { oa_id, remain }: Authorized,
    body: axum::body::Bytes,
) -> Response {
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return zalo_error(-201, "body is invalid!");
    };
    let user_id = crate::zalo::events::id_str(&body["recipient"]["user_id"]).unwrap_or_default();
    let message = &body["message"];
    let text = message["text"].as_str().unwrap_or_default().to_string();
    let quote = crate::zalo::events::id_str(&message["quote_message_id"]);
    let now = now_ms();
    let mut st = sim.state.lock();
    let uploads = st.uploads.clone();
    let Some(oa) = st.oas.get_mut(&oa_id) else {
        return zalo_error(-205, "Offical Account is not exist");
    };
    let Some(customer) = oa.customers.get(&user_id).cloned() else {
        return zalo_error(-201, "user_id is invalid!");
    };
    if !customer.follows {
        return zalo_error(-213, "User has not followed OA");
    }
    if now - customer.last_interaction >= 7 * DAY_MS {
        return zalo_error(
            -230,
            "User has not interacted with the OA in the past 7 days",
        );
    }
    if crate::model::text::char_count(&crate::model::text::nfc(&text)) > MAX_TEXT_CHARS {
        return zalo_error(-201, "text is invalid! (max 2000 characters)");
    }
    if let Some(q) = &quote {
        let known = oa
            .threads
            .get(&user_id)
            .is_some_and(|t| t.iter().any(|m| &m.msg_id == q));
        if !known {
            return zalo_error(-201, "quote_message_id is invalid!");
        }
    }
    let attachment = &message["attachment"];
    let (kind, attachment_id) = if attachment.is_null() {
        if text.is_empty() {
            return zalo_error(-201, "message is invalid!");
        }
        ("text".to_string(), None)
    } else if attachment["type"] == "file" {
        let token = attachment["payload"]["token"].as_str().unwrap_or_default();
        if !matches!(uploads.get(token), Some((k, _)) if k == "file") {
            return zalo_error(-201, "token is invalid!");
        }
        ("file".to_string(), Some(token.to_string()))
    } else {
        let el = &attachment["payload"]["elements"][0];
        let media = el["media_type"].as_str().unwrap_or_default().to_string();
        let by_id = el["attachment_id"].as_str();
        let by_url = el["url"].as_str();
        match (by_id, by_url) {
            (Some(id), None) => {
                if !matches!(uploads.get(id), Some((k, _)) if *k == media) {
                    return zalo_error(-100, "attachment_id was expired");
                }
            }
            (None, Some(_)) => {}
            _ => return zalo_error(-201, "exactly one of attachment_id or url is required"),
        }
        if media != "image" && media != "gif" && media != "sticker" {
            return zalo_error(-201, "media_type is invalid!");
        }
        (media, by_id.map(str::to_string))
    };
    let msg_id = random_id(10);
    oa.threads
        .entry(user_id.clone())
        .or_default()
        .push(ThreadMessage {
            msg_id: msg_id.clone(),
            src: 0,
            kind: kind.clone(),
            text: text.clone(),
            url: String::new(),
            time: now,
        });
    let oa_id = oa.oa_id.clone();
    st.sent.push(Sent {
        oa_id: oa_id.clone(),
        user_id: user_id.clone(),
        msg_id: msg_id.clone(),
        kind: kind.clone(),
        text: text.clone(),
        attachment_id,
        quote_message_id: quote,
        sent_time: now,
        from_oa_manager: false,
    });
    let auto_receipts = st.faults.auto_receipts;
    let garble = st.faults.garble_next_send > 0;
    st.faults.garble_next_send = st.faults.garble_next_send.saturating_sub(1);
    drop(st);
    // Zalo echoes every OA send to the webhook, then (when the customer's phone gets it) receipts.
    sim.emit_oa_send(&oa_id, &user_id, &msg_id, &kind, &text, None);
    if auto_receipts {
        sim.emit_receipt(&oa_id, &user_id, &msg_id, "user_received_message");
        sim.emit_receipt(&oa_id, &user_id, &msg_id, "user_seen_message");
    }
    if garble {
        return (
            axum::http::StatusCode::OK,
            [("content-type", "text/html")],
            "<html><body>upstream answered</body></html>",
        )
            .into_response();
    }
    ok(
        json!({"message_id": msg_id, "user_id": user_id, "sent_time": now.to_string()}),
        remain,
    )
}

async fn upload(
    State(sim): State<Arc<Sim>>,
    Authorized { remain, .. }: Authorized,
    Path(kind): Path<String>,
    mut form: Multipart,
) -> Response {
    let mut file: Option<(String, Vec<u8>)> = None;
    while let Ok(Some(field)) = form.next_field().await {
        if field.name() == Some("file") {
            let name = field.file_name().unwrap_or("upload").to_string();
            match field.bytes().await {
                Ok(b) => file = Some((name, b.to_vec())),
                Err(_) => return zalo_error(-210, "Parameter exceeds allowable limit"),
            }
        }
    }
    let Some((name, bytes)) = file else {
        return zalo_error(-201, "file is invalid!");
    };
    let lower = name.to_lowercase();
    let (limit, valid) = match kind.as_str() {
        "image" => (
            crate::zalo::IMAGE_UPLOAD_LIMIT,
            bytes.starts_with(&[0x89, b'P', b'N', b'G']) || bytes.starts_with(&[0xff, 0xd8, 0xff]),
        ),
        "gif" => (crate::zalo::MEDIA_UPLOAD_LIMIT, bytes.starts_with(b"GIF8")),
        "file" => (
            crate::zalo::MEDIA_UPLOAD_LIMIT,
            [".pdf", ".doc", ".docx", ".csv"]
                .iter()
                .any(|e| lower.ends_with(e)),
        ),
        _ => return zalo_error(-201, "upload type is invalid!"),
    };
    if bytes.len() > limit {
        return zalo_error(-210, "Parameter exceeds allowable limit");
    }
    if !valid {
        let msg = match kind.as_str() {
            "image" => "file is invalid. We only support png and jpeg",
            "gif" => "file is invalid. We only support gif",
            _ => "file is invalid. We only support pdf, doc, docx and csv",
        };
        return zalo_error(-201, msg);
    }
    let id = random_id(16);
    sim.state
        .lock()
        .uploads
        .insert(id.clone(), (kind.clone(), bytes.len()));
    let data = if kind == "file" {
        json!({"token": id})
    } else {
        json!({"attachment_id": id})
    };
    ok(data, remain)
}
