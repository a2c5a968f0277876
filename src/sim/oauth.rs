//! OAuth v4 for OAs: the consent page (`/v4/oa/permission`) and the token endpoint
//! (`/v4/oa/access_token`) with Zalo's quirks: form body, `secret_key` header, string
//! `expires_in`, single-use codes (10 min), PKCE S256, rotating single-use refresh tokens.

use super::*;
use crate::zalo::pkce_challenge;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Json;
use serde_json::json;

pub fn routes() -> Router<Arc<Sim>> {
    Router::new()
        .route(
            "/v4/oa/permission",
            get(consent_page).post(consent_decision),
        )
        .route("/v4/oa/access_token", post(token))
}

#[derive(Deserialize, Default)]
struct ConsentQuery {
    #[serde(default)]
    app_id: String,
    #[serde(default)]
    redirect_uri: String,
    #[serde(default)]
    code_challenge: Option<String>,
    #[serde(default)]
    state: String,
}

#[derive(Deserialize)]
struct Decision {
    #[serde(default)]
    app_id: String,
    #[serde(default)]
    redirect_uri: String,
    #[serde(default)]
    code_challenge: Option<String>,
    #[serde(default)]
    state: String,
    #[serde(default)]
    oa_id: String,
    #[serde(default)]
    zalo_user: String,
    #[serde(default)]
    decision: String,
}

use crate::model::text::html_escape as escape;

fn error_page(status: StatusCode, code: i64, text: &str) -> Response {
    let body = format!(
        "<!doctype html><html lang=\"vi\"><meta charset=\"utf-8\"><title>Zalo — lỗi {code}</title>\
         <body><h1>Không thể cấp quyền</h1><p id=\"error\" data-code=\"{code}\">{} (error_code={code})</p></body></html>",
        escape(text)
    );
    (status, Html(body)).into_response()
}

/// Checks the app and the registered callback; returns an error page when they are wrong.
fn check_app(sim: &Sim, app_id: &str, redirect_uri: &str) -> Option<Response> {
    if app_id != sim.cfg.app_id {
        return Some(error_page(StatusCode::BAD_REQUEST, -14002, "Invalid appId"));
    }
    let registered_ok = match &sim.cfg.redirect_uri {
        Some(r) => r == redirect_uri,
        None => url::Url::parse(redirect_uri).is_ok(),
    };
    if !registered_ok {
        return Some(error_page(
            StatusCode::BAD_REQUEST,
            -14003,
            "Invalid redirect uri",
        ));
    }
    None
}

/// The permission list, verbatim from the seed's consent screen.
const PERMISSIONS: &[(&str, &[&str])] = &[
    ("Sử dụng ZNS", &["Gửi ZNS", "Truy xuất thông tin ZNS"]),
    (
        "Gửi tin nhắn",
        &[
            "Gửi tin nhắn chủ động và gửi tin nhắn phản hồi",
            "Upload hình ảnh, ảnh gif và file",
            "Lấy thông tin quota tin nhắn chủ động và tin nhắn phản hồi",
        ],
    ),
    (
        "Quản lý thông tin OA",
        &[
            "Lấy thông tin OA",
            "Lấy danh sách người quan tâm",
            "Lấy thông tin người quan tâm",
            "Cập nhật thông tin người quan tâm",
            "Quản lý nhãn",
        ],
    ),
    (
        "Quản lý tin nhắn người quan tâm",
        &[
            "Lấy danh sách các hội thoại của OA",
            "Lấy danh sách hội thoại với người quan tâm cụ thể",
        ],
    ),
    (
        "Nhận sự kiện quản lý tin nhắn",
        &[
            "Sự kiện người dùng đã nhận tin nhắn từ OA",
            "Sự kiện người dùng đã đọc tin nhắn",
            "Sự kiện người dùng gửi tin nhắn đến OA",
            "Sự kiện OA gửi tin nhắn cho người quan tâm",
        ],
    ),
    (
        "Nhận sự kiện quản lý người quan tâm",
        &[
            "Sự kiện người dùng đồng ý chia sẻ thông tin",
            "Sự kiện người dùng quan tâm/ bỏ quan tâm",
        ],
    ),
];

async fn consent_page(State(sim): State<Arc<Sim>>, Query(q): Query<ConsentQuery>) -> Response {
    if let Some(err) = check_app(&sim, &q.app_id, &q.redirect_uri) {
        return err;
    }
    if sim.cfg.auto_approve {
        let first = sim.state.lock().oas.values().next().map(|oa| {
            (
                oa.oa_id.clone(),
                oa.admins.first().cloned().unwrap_or_default(),
            )
        });
        let Some((oa_id, admin)) = first else {
            return error_page(
                StatusCode::BAD_REQUEST,
                -14001,
                "Tài khoản không quản lý Official Account nào",
            );
        };
        return decide(
            &sim,
            Decision {
                app_id: q.app_id,
                redirect_uri: q.redirect_uri,
                code_challenge: q.code_challenge,
                state: q.state,
                oa_id,
                zalo_user: admin,
                decision: "allow".into(),
            },
        );
    }
    let st = sim.state.lock();
    let mut oas = String::new();
    let mut users = Vec::new();
    for oa in st.oas.values() {
        oas.push_str(&format!(
            "<option value=\"{}\">{}</option>",
            escape(&oa.oa_id),
            escape(&oa.name)
        ));
        for a in &oa.admins {
            if !users.contains(a) {
                users.push(a.clone());
            }
        }
    }
    users.push("khach-vang-lai".into());
    let users: String = users
        .iter()
        .map(|u| format!("<option value=\"{0}\">{0}</option>", escape(u)))
        .collect();
    let perms: String = PERMISSIONS
        .iter()
        .map(|(title, items)| {
            let items: String = items.iter().map(|i| format!("<li>{}</li>", escape(i))).collect();
            format!("<li><label><input type=\"checkbox\" checked> Quyền: {}</label><ul>{items}</ul></li>", escape(title))
        })
        .collect();
    let hidden = |name: &str, value: &str| {
        format!(
            "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
            escape(value)
        )
    };
    let body = format!(
        "<!doctype html><html lang=\"vi\"><meta charset=\"utf-8\"><title>Zalo — Cấp quyền</title><body>\
         <h1>{app} yêu cầu được cấp quyền để sử dụng OA</h1>\
         <form method=\"post\" action=\"/v4/oa/permission\">{h1}{h2}{h3}{h4}\
         <p>Tài khoản Zalo: <select name=\"zalo_user\">{users}</select></p>\
         <p>Chọn Official Account để cấp quyền cho ứng dụng: <select name=\"oa_id\">{oas}</select></p>\
         <p>OA đã xác thực và nâng cấp gói sẽ được sử dụng các API sau:</p><ul>{perms}</ul>\
         <p><label><input type=\"checkbox\" checked> Đồng ý cho phép ứng dụng quản lý Official Account</label></p>\
         <button name=\"decision\" value=\"deny\">Từ chối</button> <button name=\"decision\" value=\"allow\">Cho phép</button>\
         </form></body></html>",
        app = escape(&sim.cfg.app_id),
        h1 = hidden("app_id", &q.app_id),
        h2 = hidden("redirect_uri", &q.redirect_uri),
        h3 = hidden("code_challenge", q.code_challenge.as_deref().unwrap_or("")),
        h4 = hidden("state", &q.state),
    );
    Html(body).into_response()
}

async fn consent_decision(State(sim): State<Arc<Sim>>, Form(d): Form<Decision>) -> Response {
    decide(&sim, d)
}

fn decide(sim: &Sim, d: Decision) -> Response {
    if let Some(err) = check_app(sim, &d.app_id, &d.redirect_uri) {
        return err;
    }
    let mut target = match url::Url::parse(&d.redirect_uri) {
        Ok(u) => u,
        Err(_) => return error_page(StatusCode::BAD_REQUEST, -14003, "Invalid redirect uri"),
    };
    if d.decision != "allow" {
        // Denial parameters are not documented (reference §2.3); OAuth's usual ones are used.
        target
            .query_pairs_mut()
            .append_pair("error", "access_denied")
            .append_pair("error_description", "Người dùng từ chối cấp quyền")
            .append_pair("state", &d.state);
        return Redirect::to(target.as_str()).into_response();
    }
    let mut st = sim.state.lock();
    let Some(oa) = st.oas.get(&d.oa_id) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            -14001,
            "Official Account không tồn tại",
        );
    };
    if !oa.admins.contains(&d.zalo_user) {
        return error_page(
            StatusCode::FORBIDDEN,
            -14010,
            "Bạn cần phải là admin của Trang OA mới có quyền kết nối Trang đó",
        );
    }
    let code = random_id(24);
    let challenge = d.code_challenge.filter(|c| !c.is_empty());
    st.codes.insert(
        code.clone(),
        AuthCode {
            oa_id: d.oa_id.clone(),
            challenge: challenge.clone(),
            expires_at: now_ms() + 10 * 60_000,
        },
    );
    st.revoked.remove(&d.oa_id);
    {
        let mut q = target.query_pairs_mut();
        q.append_pair("oa_id", &d.oa_id)
            .append_pair("code", &code)
            .append_pair("state", &d.state);
        if let Some(c) = &challenge {
            q.append_pair("code_challenge", c);
        }
    }
    Redirect::to(target.as_str()).into_response()
}

#[derive(Deserialize)]
struct TokenForm {
    #[serde(default)]
    app_id: String,
    #[serde(default)]
    grant_type: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    code_verifier: String,
    #[serde(default)]
    refresh_token: String,
}

fn oauth_error(code: i64, name: &str, reason: &str) -> Response {
    // HTTP 200 with an -14xxx body (status of OAuth errors is UNVERIFIED; clients read the body).
    Json(json!({"error": code, "error_name": name, "error_reason": reason, "ref_doc": "https://developers.zalo.me/docs/official-account/bat-dau/xac-thuc-va-uy-quyen-cho-ung-dung-new"})).into_response()
}

async fn token(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Form(f): Form<TokenForm>,
) -> Response {
    if headers.get("secret_key").and_then(|v| v.to_str().ok()) != Some(sim.cfg.app_secret.as_str())
    {
        return oauth_error(
            -14004,
            "Invalid secret key",
            "secret_key header is missing or wrong",
        );
    }
    if f.app_id != sim.cfg.app_id {
        return oauth_error(-14002, "Invalid appId", "app_id does not match");
    }
    let mut st = sim.state.lock();
    let oa_id = match f.grant_type.as_str() {
        "authorization_code" => {
            st.stats.code_exchanges += 1;
            let Some(code) = st.codes.remove(&f.code) else {
                return oauth_error(
                    -14014,
                    "Invalid authorization code",
                    "code is unknown or already used",
                );
            };
            if code.expires_at < now_ms() {
                return oauth_error(-14014, "Invalid authorization code", "code has expired");
            }
            if let Some(challenge) = &code.challenge {
                if f.code_verifier.is_empty() || &pkce_challenge(&f.code_verifier) != challenge {
                    return oauth_error(
                        -14005,
                        "Invalid code verifier",
                        "code_verifier does not match code_challenge",
                    );
                }
            }
            code.oa_id
        }
        "refresh_token" => {
            st.stats.refreshes += 1;
            // Single use: the old refresh token dies now, whatever happens next.
            let Some(oa_id) = st.refresh.remove(&f.refresh_token) else {
                return oauth_error(
                    -14014,
                    "Invalid refresh token",
                    "refresh token is unknown, expired or already used",
                );
            };
            if st.revoked.contains(&oa_id) {
                return oauth_error(
                    -14014,
                    "Invalid refresh token",
                    "the OA revoked this app's permission",
                );
            }
            oa_id
        }
        other => {
            return oauth_error(
                -14006,
                "Invalid grant_type",
                &format!("unsupported grant_type {other:?}"),
            )
        }
    };
    let access = random_id(32);
    let refresh = random_id(32);
    st.access.insert(
        access.clone(),
        AccessToken {
            oa_id: oa_id.clone(),
            expires_at: now_ms() + sim.cfg.token_ttl_secs * 1000,
        },
    );
    st.refresh.insert(refresh.clone(), oa_id);
    Json(json!({"access_token": access, "refresh_token": refresh, "expires_in": sim.cfg.token_ttl_secs.to_string()})).into_response()
}
