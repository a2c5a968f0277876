//! HTTP client for Zalo's OAuth v4 and OA Open API. Knows Zalo only by its two base URLs, so the
//! same code talks to the real Zalo and to `sop zalo-sim`.

use super::{Envelope, TokenResponse, ZaloError, AMBIGUOUS, NETWORK_ERROR};
use crate::config::ZaloConfig;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// Told of every call: which (its path), whether Zalo answered success, and how long it took.
pub type CallObserver = Arc<dyn Fn(&'static str, bool, Duration) + Send + Sync>;

#[derive(Clone)]
pub struct ZaloClient {
    http: reqwest::Client,
    pub oauth_base: String,
    pub api_base: String,
    pub app_id: String,
    app_secret: String,
    observer: Option<CallObserver>,
}

/// What `getoa` tells about an OA.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OaProfile {
    pub oa_id: String,
    pub name: String,
    pub avatar: String,
    pub category: String,
}

/// What `user/detail` tells about a customer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserProfile {
    pub user_id: String,
    pub display_name: String,
    pub avatar: String,
    /// The OA's tags on them (`tags_and_notes_info.tag_names`), when Zalo said.
    pub tag_names: Option<Vec<String>>,
    /// `user_is_follower`, when Zalo said.
    pub follows: Option<bool>,
}

fn network(e: reqwest::Error) -> ZaloError {
    ZaloError {
        code: NETWORK_ERROR,
        message: e.to_string(),
    }
}

/// For a send that went out: a transport failure from here on leaves the outcome unknown (only a
/// request that never reached Zalo — no connection — is safely retried).
fn after_sending(e: ZaloError) -> ZaloError {
    if e.code == NETWORK_ERROR {
        ZaloError {
            code: AMBIGUOUS,
            message: e.message,
        }
    } else {
        e
    }
}

impl ZaloClient {
    pub fn new(cfg: &ZaloConfig) -> ZaloClient {
        ZaloClient {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .pool_max_idle_per_host(32)
                .build()
                .expect("http client"),
            oauth_base: cfg.oauth_base.trim_end_matches('/').to_string(),
            api_base: cfg.api_base.trim_end_matches('/').to_string(),
            app_id: cfg.app_id.clone(),
            app_secret: cfg.app_secret.clone(),
            observer: None,
        }
    }

    /// Reports every call to `observer` (the hub's latency histogram).
    pub fn observed(mut self, observer: CallObserver) -> ZaloClient {
        self.observer = Some(observer);
        self
    }

    async fn timed<T>(
        &self,
        call: &'static str,
        f: impl std::future::Future<Output = Result<T, ZaloError>>,
    ) -> Result<T, ZaloError> {
        let started = std::time::Instant::now();
        let r = f.await;
        if let Some(observe) = &self.observer {
            observe(call, r.is_ok(), started.elapsed());
        }
        r
    }

    /// The consent URL: exactly `app_id`, `redirect_uri`, `code_challenge`, `state` (S256 implied).
    pub fn authorization_url(
        &self,
        redirect_uri: &str,
        code_challenge: &str,
        state: &str,
    ) -> String {
        let mut url = url::Url::parse(&format!("{}/v4/oa/permission", self.oauth_base))
            .expect("oauth_base is a URL");
        url.query_pairs_mut()
            .append_pair("app_id", &self.app_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("code_challenge", code_challenge)
            .append_pair("state", state);
        url.into()
    }

    async fn token_call(&self, form: &[(&str, &str)]) -> Result<TokenResponse, ZaloError> {
        self.timed("/v4/oa/access_token", self.token_call_untimed(form))
            .await
    }

    async fn token_call_untimed(&self, form: &[(&str, &str)]) -> Result<TokenResponse, ZaloError> {
        let resp = self
            .http
            .post(format!("{}/v4/oa/access_token", self.oauth_base))
            .header("secret_key", &self.app_secret)
            .form(form)
            .send()
            .await
            .map_err(network)?;
        let body: Value = resp.json().await.map_err(network)?;
        // Success is both tokens; anything else is a failure, whatever the HTTP status.
        match serde_json::from_value::<TokenResponse>(body.clone()) {
            Ok(t) if !t.access_token.is_empty() && !t.refresh_token.is_empty() => Ok(t),
            _ => Err(ZaloError {
                code: body["error"].as_i64().unwrap_or(-14000),
                message: ["error_name", "error_reason", "error_description", "message"]
                    .iter()
                    .filter_map(|k| body[*k].as_str())
                    .collect::<Vec<_>>()
                    .join(": "),
            }),
        }
    }

    pub async fn exchange_code(
        &self,
        code: &str,
        code_verifier: &str,
    ) -> Result<TokenResponse, ZaloError> {
        self.token_call(&[
            ("code", code),
            ("app_id", &self.app_id),
            ("grant_type", "authorization_code"),
            ("code_verifier", code_verifier),
        ])
        .await
    }

    pub async fn refresh(&self, refresh_token: &str) -> Result<TokenResponse, ZaloError> {
        self.token_call(&[
            ("refresh_token", refresh_token),
            ("app_id", &self.app_id),
            ("grant_type", "refresh_token"),
        ])
        .await
    }

    async fn envelope(resp: reqwest::Response) -> Result<Value, ZaloError> {
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(network)?;
        match serde_json::from_slice::<Envelope>(&bytes) {
            Ok(env) => env.into_result(),
            Err(_) if status.is_server_error() || status.is_success() => Err(ZaloError {
                code: NETWORK_ERROR,
                message: format!("HTTP {status} without a Zalo envelope"),
            }),
            Err(_) => Err(ZaloError {
                code: -(status.as_u16() as i64),
                message: format!("HTTP {status}"),
            }),
        }
    }

    /// GET with Zalo's single `data=<json>` query parameter.
    async fn get(
        &self,
        token: &str,
        path: &'static str,
        data: Option<Value>,
    ) -> Result<Value, ZaloError> {
        let mut req = self
            .http
            .get(format!("{}{path}", self.api_base))
            .header("access_token", token);
        if let Some(d) = data {
            req = req.query(&[("data", d.to_string())]);
        }
        self.timed(path, async {
            Self::envelope(req.send().await.map_err(network)?).await
        })
        .await
    }

    async fn post(&self, token: &str, path: &'static str, body: Value) -> Result<Value, ZaloError> {
        let req = self
            .http
            .post(format!("{}{path}", self.api_base))
            .header("access_token", token)
            .json(&body);
        self.timed(path, async {
            Self::envelope(req.send().await.map_err(network)?).await
        })
        .await
    }

    /// The OA's tag names (`tag/gettagsofoa`).
    pub async fn tags_of_oa(&self, token: &str) -> Result<Vec<String>, ZaloError> {
        let d = self.get(token, "/v2.0/oa/tag/gettagsofoa", None).await?;
        Ok(Self::rows(d)
            .iter()
            .filter_map(|n| n.as_str().map(str::to_string))
            .collect())
    }

    /// Puts the tag on a follower (`tag/tagfollower`; Zalo creates a missing tag) or takes it
    /// off (`tag/rmfollowerfromtag`).
    pub async fn tag_follower(
        &self,
        token: &str,
        user_id: &str,
        tag: &str,
        on: bool,
    ) -> Result<(), ZaloError> {
        let path = if on {
            "/v2.0/oa/tag/tagfollower"
        } else {
            "/v2.0/oa/tag/rmfollowerfromtag"
        };
        let body = json!({"user_id": user_id, "tag_name": tag});
        self.post(token, path, body).await.map(drop)
    }

    /// Deletes the OA's tag (`tag/rmtag`).
    pub async fn remove_tag(&self, token: &str, tag: &str) -> Result<(), ZaloError> {
        let body = json!({"tag_name": tag});
        self.post(token, "/v2.0/oa/tag/rmtag", body).await.map(drop)
    }

    pub async fn get_oa(&self, token: &str) -> Result<OaProfile, ZaloError> {
        let d = self.get(token, "/v2.0/oa/getoa", None).await?;
        Ok(OaProfile {
            oa_id: super::events::id_str(&d["oa_id"]).unwrap_or_default(),
            name: d["name"].as_str().unwrap_or_default().to_string(),
            avatar: d["avatar"].as_str().unwrap_or_default().to_string(),
            category: d["cate_name"].as_str().unwrap_or_default().to_string(),
        })
    }

    pub async fn user_detail(&self, token: &str, user_id: &str) -> Result<UserProfile, ZaloError> {
        let d = self
            .get(
                token,
                "/v3.0/oa/user/detail",
                Some(json!({"user_id": user_id})),
            )
            .await?;
        Ok(UserProfile {
            user_id: user_id.to_string(),
            display_name: d["display_name"].as_str().unwrap_or_default().to_string(),
            avatar: d["avatars"]["240"]
                .as_str()
                .or(d["avatar"].as_str())
                .unwrap_or_default()
                .to_string(),
            follows: d["user_is_follower"].as_bool(),
            tag_names: d["tags_and_notes_info"]["tag_names"]
                .as_array()
                .map(|names| {
                    names
                        .iter()
                        .filter_map(|n| n.as_str().map(str::to_string))
                        .collect()
                }),
        })
    }

    /// Rows of a paged listing: a bare array, or (tolerated) `{"data": [...]}`.
    fn rows(d: Value) -> Vec<Value> {
        match d {
            Value::Array(a) => a,
            Value::Object(mut o) => match o.remove("data") {
                Some(Value::Array(a)) => a,
                _ => vec![],
            },
            _ => vec![],
        }
    }

    pub async fn list_recent_chat(
        &self,
        token: &str,
        offset: u32,
        count: u32,
    ) -> Result<Vec<Value>, ZaloError> {
        let d = self
            .get(
                token,
                "/v2.0/oa/listrecentchat",
                Some(json!({"offset": offset, "count": count})),
            )
            .await?;
        Ok(Self::rows(d))
    }

    pub async fn conversation(
        &self,
        token: &str,
        user_id: &str,
        offset: u32,
        count: u32,
    ) -> Result<Vec<Value>, ZaloError> {
        let d = self
            .get(
                token,
                "/v2.0/oa/conversation",
                Some(json!({"user_id": user_id, "offset": offset, "count": count})),
            )
            .await?;
        Ok(Self::rows(d))
    }

    /// Sends a customer-service message; returns Zalo's `message_id`.
    pub async fn send_cs(
        &self,
        token: &str,
        user_id: &str,
        message: Value,
    ) -> Result<String, ZaloError> {
        self.timed(
            "/v3.0/oa/message/cs",
            self.send_cs_untimed(token, user_id, message),
        )
        .await
    }

    async fn send_cs_untimed(
        &self,
        token: &str,
        user_id: &str,
        message: Value,
    ) -> Result<String, ZaloError> {
        let resp = self
            .http
            .post(format!("{}/v3.0/oa/message/cs", self.api_base))
            .header("access_token", token)
            .json(&json!({"recipient": {"user_id": user_id}, "message": message}))
            .send()
            .await
            .map_err(|e| match e.is_connect() {
                true => network(e),
                false => after_sending(network(e)),
            })?;
        let status = resp.status();
        let d = Self::envelope(resp).await.map_err(|e| {
            // 503 without an envelope: Zalo's front refused it, nothing was sent.
            if status == reqwest::StatusCode::SERVICE_UNAVAILABLE {
                e
            } else {
                after_sending(e)
            }
        })?;
        super::events::id_str(&d["message_id"]).ok_or_else(|| ZaloError {
            code: AMBIGUOUS,
            message: "Zalo answered success without a message_id".into(),
        })
    }

    /// Uploads `image`, `gif` or `file`; returns the `attachment_id` (image, gif) or `token` (file).
    pub async fn upload(
        &self,
        token: &str,
        kind: &str,
        name: &str,
        file: &std::path::Path,
    ) -> Result<String, ZaloError> {
        self.timed(
            "/v2.0/oa/upload",
            self.upload_untimed(token, kind, name, file),
        )
        .await
    }

    async fn upload_untimed(
        &self,
        token: &str,
        kind: &str,
        name: &str,
        file: &std::path::Path,
    ) -> Result<String, ZaloError> {
        // Streamed from the file: a pending attachment is never held whole in memory.
        let unreadable = |e: std::io::Error| ZaloError {
            code: -201,
            message: format!("cannot read the attachment: {e}"),
        };
        let file = tokio::fs::File::open(file).await.map_err(unreadable)?;
        let len = file.metadata().await.map_err(unreadable)?.len();
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file));
        let part =
            reqwest::multipart::Part::stream_with_length(body, len).file_name(name.to_string());
        let resp = self
            .http
            .post(format!("{}/v2.0/oa/upload/{kind}", self.api_base))
            .header("access_token", token)
            .multipart(reqwest::multipart::Form::new().part("file", part))
            .send()
            .await
            .map_err(network)?;
        let d = Self::envelope(resp).await?;
        super::events::id_str(&d["attachment_id"])
            .or_else(|| super::events::id_str(&d["token"]))
            .ok_or_else(|| ZaloError {
                code: NETWORK_ERROR,
                message: "upload succeeded without an id".into(),
            })
    }
}
