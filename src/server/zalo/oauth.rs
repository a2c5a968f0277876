//! Connecting an OA: `POST /api/v1/connections/zalo/authorize` builds the consent URL (PKCE S256,
//! single-use `state`, 10 minutes); `GET /zalo/oauth/callback` exchanges the code, reads the OA,
//! stores the connection, tells the console live, and starts the history sync.

use super::ZaloHub;
use crate::model::*;
use crate::server::error::ApiError;
use crate::server::extract::Caller;
use crate::server::hub::{OaInfo, PendingConsent};
use crate::server::AppState;
use crate::wire::AuthorizeResponse;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use std::sync::Arc;

const STATE_TTL_MS: Ms = 10 * 60_000;

pub fn zalo_or_503(app: &AppState) -> Result<Arc<ZaloHub>, ApiError> {
    app.zalo.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "zalo_not_configured",
            "this hub has no Zalo app configured ([zalo] app_id, app_secret, oa_secret_key, redirect_uri)",
        )
    })
}

pub async fn authorize(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<Json<AuthorizeResponse>, ApiError> {
    caller.require_admin()?;
    let z = zalo_or_503(&app)?;
    let (challenge, verifier) = oauth2::PkceCodeChallenge::new_random_sha256();
    let state = oauth2::CsrfToken::new_random().secret().clone();
    let expires_at = now_ms() + STATE_TTL_MS;
    z.hub
        .begin_consent(
            &state,
            PendingConsent {
                verifier: verifier.secret().clone(),
                account_id: caller.0.id.clone(),
                expires_at,
            },
        )
        .await?;
    let url = z
        .client
        .authorization_url(&z.config.redirect_uri, challenge.as_str(), &state);
    Ok(Json(AuthorizeResponse {
        authorization_url: url,
        state,
        expires_at,
    }))
}

#[derive(Deserialize)]
pub struct Callback {
    oa_id: Option<String>,
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
    error_code: Option<String>,
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let esc = crate::model::text::html_escape;
    let html = format!(
        "<!doctype html><html lang=\"vi\"><meta charset=\"utf-8\"><title>{t}</title>\
         <body style=\"font-family:sans-serif;max-width:40em;margin:3em auto\"><h1>{t}</h1><p>{b}</p></body></html>",
        t = esc(title),
        b = esc(body)
    );
    (status, Html(html)).into_response()
}

pub async fn callback(State(app): State<AppState>, Query(q): Query<Callback>) -> Response {
    let Ok(z) = zalo_or_503(&app) else {
        return page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Zalo chưa được cấu hình",
            "This hub has no Zalo app configured.",
        );
    };
    // States we issue are short; anything long is not ours (and is not worth a store lookup).
    let pending = match q
        .state
        .as_deref()
        .filter(|s| !s.is_empty() && s.len() <= 128)
    {
        Some(state) => match z.hub.take_consent(state).await {
            Ok(p) => p,
            Err(e) => {
                tracing::error!("cannot read the pending consent: {e}");
                return page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Lỗi máy chủ",
                    "The hub could not read its store; try again.",
                );
            }
        },
        None => None,
    };
    let Some(pending) = pending else {
        return page(
            StatusCode::BAD_REQUEST,
            "Liên kết đã hết hạn",
            "Yêu cầu kết nối không hợp lệ hoặc đã quá 10 phút — chọn \"Thêm kết nối\" lại trong terminal. / \
             This connection request is unknown or older than 10 minutes: start \"Add connection\" again.",
        );
    };
    if q.error.is_some() || q.error_code.is_some() {
        let detail = q
            .error_description
            .or(q.error)
            .or(q.error_code)
            .unwrap_or_default();
        return page(
            StatusCode::BAD_REQUEST,
            "Chưa kết nối được OA",
            &format!("Bạn đã từ chối cấp quyền hoặc Zalo báo lỗi / Consent was denied or Zalo reported an error: {detail}"),
        );
    }
    let (Some(code), Some(oa_id)) = (q.code, q.oa_id) else {
        return page(
            StatusCode::BAD_REQUEST,
            "Thiếu mã xác thực",
            "Zalo's redirect carried no code / oa_id.",
        );
    };
    let tokens = match z.client.exchange_code(&code, &pending.verifier).await {
        Ok(t) => t,
        Err(e) => {
            return page(
                StatusCode::BAD_GATEWAY,
                "Zalo từ chối mã xác thực",
                &format!("Zalo refused the authorization code ({e}). Thử kết nối lại / try again."),
            )
        }
    };
    let profile = match z.client.get_oa(&tokens.access_token).await {
        Ok(p) => p,
        Err(e) => {
            return page(
                StatusCode::BAD_GATEWAY,
                "Không đọc được thông tin OA",
                &format!("getoa failed: {e}"),
            )
        }
    };
    let oa = OaInfo {
        oa_id: if profile.oa_id.is_empty() {
            oa_id
        } else {
            profile.oa_id
        },
        name: crate::model::text::nfc(&profile.name),
        avatar: profile.avatar,
        category: profile.category,
    };
    let pair = TokenPair {
        access_token: tokens.access_token,
        refresh_token: tokens.refresh_token,
        access_expires_at: now_ms() + tokens.expires_in * 1000,
    };
    match z.hub.upsert_connection(oa, &pending.account_id, pair).await {
        Ok((conn, _created)) => {
            let zz = z.clone();
            let conn_id = conn.id.clone();
            tokio::spawn(async move { super::sync::sync_history(zz, conn_id).await });
            page(
                StatusCode::OK,
                "Kết nối OA thành công",
                &format!("Đã kết nối {} — quay lại terminal để chọn quyền chat. / Connected — return to your terminal.", conn.name),
            )
        }
        Err(e) => page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Không lưu được kết nối",
            &e.to_string(),
        ),
    }
}
