//! The Zalo OA protocol, shared by the hub (client side) and the simulator (server side):
//! webhook signatures, PKCE, token responses, error codes, webhook events. See
//! `../shared/zalo-oa-reference.md` for the sources behind each rule.

pub mod client;
pub mod events;

use serde::{Deserialize, Deserializer, Serialize};
use sha2::{Digest, Sha256};

/// `X-ZEvent-Signature` value: `mac=` + hex(sha256(app_id + raw_body + timestamp + oa_secret_key)).
/// Plain SHA-256 over the concatenation, not HMAC (reference §3.2).
pub fn webhook_mac(app_id: &str, raw_body: &[u8], timestamp: &str, oa_secret_key: &str) -> String {
    let mut h = Sha256::new();
    h.update(app_id.as_bytes());
    h.update(raw_body);
    h.update(timestamp.as_bytes());
    h.update(oa_secret_key.as_bytes());
    format!("mac={}", hex::encode(h.finalize()))
}

/// Checks a webhook signature in constant time, with or without the `mac=` prefix.
pub fn verify_webhook(
    header: &str,
    app_id: &str,
    raw_body: &[u8],
    timestamp: &str,
    oa_secret_key: &str,
) -> bool {
    use subtle::ConstantTimeEq;
    let expected = webhook_mac(app_id, raw_body, timestamp, oa_secret_key);
    let expected = expected.trim_start_matches("mac=").as_bytes();
    let given = header.trim();
    let given = given
        .strip_prefix("mac=")
        .unwrap_or(given)
        .to_ascii_lowercase();
    given.len() == expected.len() && bool::from(given.as_bytes().ct_eq(expected))
}

/// `base64url_nopad(sha256(verifier))` — Zalo's PKCE S256 challenge.
pub fn pkce_challenge(verifier: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Accepts `"90000"` and `90000` (Zalo sends a string; strict decoders break on it).
pub fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| serde::de::Error::custom(format!("not an integer: {n}"))),
        serde_json::Value::String(s) => s.trim().parse().map_err(serde::de::Error::custom),
        other => Err(serde::de::Error::custom(format!(
            "expected a number or a numeric string, got {other}"
        ))),
    }
}

/// The token endpoint's answer: top-level fields, `expires_in` usually a string.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub refresh_token: String,
    #[serde(deserialize_with = "string_or_number")]
    pub expires_in: i64,
}

/// A Zalo failure: `error` < 0 with a message (OAuth errors use `error_name`/`error_reason`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Zalo error {code}: {message}")]
pub struct ZaloError {
    pub code: i64,
    pub message: String,
}

/// Codes that mean the access token is not usable (refresh once, then retry). Some clients
/// report 216/401/-401 for the same cause.
pub fn is_auth_error(code: i64) -> bool {
    matches!(code, -216 | -220 | 216 | 401 | -401)
}

/// Codes worth retrying with backoff: rate limit, expired attachment / unknown, network (`-1`).
pub fn is_retryable(code: i64) -> bool {
    matches!(code, -32 | -100 | NETWORK_ERROR)
}

/// Our own code for "no answer from Zalo" (refused connection, 5xx without a body): the request
/// did not take effect, so it may be retried.
pub const NETWORK_ERROR: i64 = -1;

/// Zalo's upload limits (zalo-oa-reference §4.4): jpg/png images 1 MB; GIFs and files 5 MB.
pub const IMAGE_UPLOAD_LIMIT: usize = 1 << 20;
pub const MEDIA_UPLOAD_LIMIT: usize = 5 << 20;

/// Our own code for a send whose outcome is unknown: the request went out, but the answer was lost
/// (timeout, reset) or unreadable (a 2xx without Zalo's envelope). Zalo has no idempotency key, so
/// it must not be resent blindly.
pub const AMBIGUOUS: i64 = -2;

/// A reason an agent can act on, in Vietnamese and English.
pub fn human_reason(code: i64, message: &str) -> String {
    let (vi, en) = match code {
        -213 => ("Khách hàng chưa quan tâm OA", "The customer does not follow the OA"),
        -217 => ("Khách hàng đã chặn tin nhắn từ OA", "The customer blocked messages from the OA"),
        -227 => ("Khách hàng bị khóa hoặc không hoạt động quá 45 ngày", "The customer is banned or inactive for over 45 days"),
        -230 | -232 => (
            "Khách hàng chưa tương tác với OA trong 7 ngày qua — hết thời hạn trả lời",
            "The customer has not interacted with the OA in the past 7 days — the reply window is closed",
        ),
        -244 => ("Khách hàng đã chặn loại tin nhắn này", "The customer restricted this message type"),
        -201 => ("Tham số không hợp lệ", "Zalo refused a parameter"),
        -210 => ("Tệp vượt quá giới hạn dung lượng", "The file exceeds Zalo's size limit"),
        -211 | -218 => ("Hết hạn mức gửi tin", "Out of message quota"),
        -204 | -205 => ("OA không tồn tại hoặc đã bị vô hiệu", "The OA is disabled or does not exist"),
        -216 | -220 => (
            "Trang cần cấp quyền lại — hãy kết nối lại",
            "The page needs re-authorisation — reconnect it",
        ),
        -32 => ("Zalo giới hạn tốc độ gọi API", "Zalo rate limit reached"),
        // OAuth (§2.7): the consent and token endpoints' -14xxx family.
        -14001 => ("Không tìm thấy Official Account", "The Official Account was not found"),
        -14002 => (
            "Mã ứng dụng Zalo không hợp lệ — kiểm tra app_id",
            "Invalid Zalo app id — check [zalo] app_id",
        ),
        -14003 => (
            "Địa chỉ chuyển hướng chưa được đăng ký cho ứng dụng — kiểm tra redirect_uri",
            "The redirect URI is not registered for the app — check [zalo] redirect_uri",
        ),
        -14004 => (
            "Khóa bí mật của ứng dụng không đúng — kiểm tra app_secret",
            "Wrong app secret — check [zalo] app_secret",
        ),
        -14005 => (
            "Mã xác minh PKCE không khớp — hãy kết nối lại từ đầu",
            "The PKCE verifier does not match — start the connection again",
        ),
        -14010 => (
            "Chỉ admin của Trang OA mới kết nối được Trang đó",
            "Only an admin of the OA can connect it",
        ),
        -14014 | -118 => (
            "Quyền truy cập đã hết hạn hoặc bị thu hồi — cần kết nối lại Trang",
            "The grant expired or was revoked — reconnect the page",
        ),
        -14999..=-14000 => (
            "Zalo từ chối cấp quyền — cần kết nối lại Trang",
            "Zalo refused the authorisation — reconnect the page",
        ),
        NETWORK_ERROR => ("Không kết nối được Zalo", "Zalo could not be reached"),
        AMBIGUOUS => (
            "Chưa rõ Zalo đã nhận tin chưa — đang chờ Zalo xác nhận",
            "Zalo may have received it — waiting for Zalo's confirmation",
        ),
        _ => ("Zalo từ chối tin nhắn", "Zalo refused the message"),
    };
    format!("{vi} / {en} (Zalo {code}: {message})")
}

/// Zalo's OA Open API response envelope: `{"error": 0, "message": "Success", "data": ...}`.
#[derive(Debug, Clone, Deserialize)]
pub struct Envelope {
    #[serde(default)]
    pub error: i64,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub data: serde_json::Value,
}

impl Envelope {
    pub fn into_result(self) -> Result<serde_json::Value, ZaloError> {
        if self.error < 0 || self.error == 216 || self.error == 401 {
            Err(ZaloError {
                code: self.error,
                message: self.message,
            })
        } else {
            Ok(self.data)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_oauth_code_has_a_reason_of_its_own() {
        let generic = human_reason(-999, "x");
        let generic = generic.split(" (").next().unwrap();
        for code in [
            -14001, -14002, -14003, -14004, -14005, -14010, -14014, -14020, -118,
        ] {
            let reason = human_reason(code, "x");
            assert!(!reason.starts_with(generic), "{code}: {reason}");
        }
        assert!(human_reason(-14014, "").contains("reconnect the page"));
    }

    #[test]
    fn signature_matches_the_official_algorithm() {
        // sha256("app" + "{}" + "123" + "key"), computed independently with sha256sum.
        let mac = webhook_mac("app", b"{}", "123", "key");
        let expected = format!("mac={}", hex::encode(Sha256::digest(b"app{}123key")));
        assert_eq!(mac, expected);
        assert!(verify_webhook(&mac, "app", b"{}", "123", "key"));
        assert!(verify_webhook(
            mac.trim_start_matches("mac="),
            "app",
            b"{}",
            "123",
            "key"
        ));
        assert!(verify_webhook(
            &mac.to_uppercase().replace("MAC=", "mac="),
            "app",
            b"{}",
            "123",
            "key"
        ));
        assert!(
            !verify_webhook(&mac, "app", b"{ }", "123", "key"),
            "altered body"
        );
        assert!(
            !verify_webhook(&mac, "app", b"{}", "123", "other"),
            "wrong secret"
        );
        assert!(!verify_webhook("", "app", b"{}", "123", "key"));
        assert!(!verify_webhook("mac=abc", "app", b"{}", "123", "key"));
    }

    #[test]
    fn pkce_is_base64url_of_the_raw_digest() {
        // RFC 7636 appendix B.
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn token_response_accepts_string_or_number_expiry() {
        let s: TokenResponse = serde_json::from_str(
            r#"{"access_token":"a","refresh_token":"r","expires_in":"90000"}"#,
        )
        .unwrap();
        let n: TokenResponse =
            serde_json::from_str(r#"{"access_token":"a","refresh_token":"r","expires_in":90000}"#)
                .unwrap();
        assert_eq!(s.expires_in, 90000);
        assert_eq!(n.expires_in, 90000);
        assert!(serde_json::from_str::<TokenResponse>(
            r#"{"error":-14014,"error_name":"Invalid refresh token"}"#
        )
        .is_err());
    }
}
