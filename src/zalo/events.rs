//! Webhook events (reference §3.3–3.5), parsed tolerantly: ids and timestamps may be strings or
//! numbers and are always kept as strings; anything not understood becomes `Other`.

use crate::model::{Attachment, MessageKind, Ms};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub enum WebhookEvent {
    /// `user_send_*`: a customer wrote to the OA.
    UserMessage(ChatMessage),
    /// `oa_send_*`: the OA wrote to a customer (our own sends echoed, or staff in OA Manager).
    OaMessage(ChatMessage),
    Delivered {
        oa_id: String,
        msg_ids: Vec<String>,
    },
    Seen {
        oa_id: String,
        msg_ids: Vec<String>,
    },
    Follow {
        oa_id: String,
        user_id: String,
        follow: bool,
    },
    SubmitInfo {
        oa_id: String,
        user_id: String,
        info: Value,
        at: Ms,
    },
    PermissionRevoked {
        oa_id: String,
        at: Ms,
    },
    /// `add_user_to_tag`: a tag put on followers in OA Manager.
    Tagged {
        oa_id: String,
        user_ids: Vec<String>,
        name: String,
    },
    Other {
        event_name: String,
        oa_id: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChatMessage {
    pub oa_id: String,
    pub user_id: String,
    pub msg_id: String,
    pub kind: MessageKind,
    pub text: String,
    pub attachments: Vec<Attachment>,
    pub quote_msg_id: Option<String>,
    pub at: Ms,
}

/// A JSON string or number as a string (ids exceed 2^53: never go through f64).
pub fn id_str(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Zalo's events nest a few levels (`info.address`, `attachments[].payload`); anything deeper is
/// refused at intake, so every record stored from a webhook reads back (serde_json stops at 128).
pub const MAX_DEPTH: usize = 32;

/// How deeply a JSON value nests (a scalar is 0), without recursion.
pub fn depth(v: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(v, 0usize)];
    while let Some((v, d)) = stack.pop() {
        deepest = deepest.max(d);
        match v {
            Value::Array(a) => stack.extend(a.iter().map(|x| (x, d + 1))),
            Value::Object(o) => stack.extend(o.values().map(|x| (x, d + 1))),
            _ => {}
        }
    }
    deepest
}

/// The fields the signature covers: `app_id` and `timestamp` from the body.
pub fn signature_fields(v: &Value) -> (String, String) {
    (
        id_str(&v["app_id"]).unwrap_or_default(),
        id_str(&v["timestamp"]).unwrap_or_default(),
    )
}

fn attachments(message: &Value) -> Vec<Attachment> {
    let Some(list) = message["attachments"].as_array() else {
        return vec![];
    };
    list.iter()
        .map(|a| {
            let p = &a["payload"];
            let kind = a["type"].as_str().unwrap_or("other").to_string();
            let url = p["url"]
                .as_str()
                .or(p["thumbnail"].as_str())
                .map(str::to_string)
                .unwrap_or_else(|| {
                    match (
                        &p["coordinates"]["latitude"],
                        &p["coordinates"]["longitude"],
                    ) {
                        (lat, lon) if !lat.is_null() => format!(
                            "geo:{},{}",
                            id_str(lat).unwrap_or_default(),
                            id_str(lon).unwrap_or_default()
                        ),
                        _ => String::new(),
                    }
                });
            Attachment {
                kind,
                url,
                name: p["name"].as_str().unwrap_or_default().to_string(),
                size: id_str(&p["size"]).and_then(|s| s.parse().ok()),
            }
        })
        .collect()
}

fn chat_message(v: &Value, suffix: &str, oa_side: &str, user_side: &str) -> Option<ChatMessage> {
    let message = &v["message"];
    let atts = attachments(message);
    let kind = match suffix {
        "text" => MessageKind::Text,
        other => MessageKind::from_zalo(other),
    };
    // Events like oa_send_list/template: fall back to the first attachment's type.
    let kind = match (kind, atts.first()) {
        (MessageKind::Other, Some(a)) => MessageKind::from_zalo(&a.kind),
        (k, _) => k,
    };
    Some(ChatMessage {
        oa_id: id_str(&v[oa_side]["id"])?,
        user_id: id_str(&v[user_side]["id"])?,
        msg_id: id_str(&message["msg_id"])?,
        kind,
        text: message["text"].as_str().unwrap_or_default().to_string(),
        attachments: atts,
        quote_msg_id: id_str(&message["quote_msg_id"]),
        at: timestamp(v),
    })
}

fn timestamp(v: &Value) -> Ms {
    id_str(&v["timestamp"])
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(crate::model::now_ms)
}

fn msg_ids(message: &Value) -> Vec<String> {
    let mut ids: Vec<String> = message["msg_ids"]
        .as_array()
        .map(|a| a.iter().filter_map(id_str).collect())
        .unwrap_or_default();
    if let Some(id) = id_str(&message["msg_id"]) {
        ids.push(id);
    }
    ids
}

pub fn parse(v: &Value) -> WebhookEvent {
    let name = v["event_name"].as_str().unwrap_or_default();
    let flat_oa = id_str(&v["oa_id"]);
    let other = || WebhookEvent::Other {
        event_name: name.to_string(),
        oa_id: flat_oa.clone().or_else(|| id_str(&v["recipient"]["id"])),
    };
    let parsed = if let Some(suffix) = name.strip_prefix("user_send_") {
        chat_message(v, suffix, "recipient", "sender").map(WebhookEvent::UserMessage)
    } else if let Some(suffix) = name.strip_prefix("oa_send_") {
        if suffix.starts_with("group_") || suffix.starts_with("anonymous_") {
            None
        } else {
            chat_message(v, suffix, "sender", "recipient").map(WebhookEvent::OaMessage)
        }
    } else {
        match name {
            // These two start with user_ but go OA → user: sender is the OA.
            "user_received_message" => {
                id_str(&v["sender"]["id"]).map(|oa_id| WebhookEvent::Delivered {
                    oa_id,
                    msg_ids: msg_ids(&v["message"]),
                })
            }
            "user_seen_message" => id_str(&v["sender"]["id"]).map(|oa_id| WebhookEvent::Seen {
                oa_id,
                msg_ids: msg_ids(&v["message"]),
            }),
            "follow" | "unfollow" => match (flat_oa.clone(), id_str(&v["follower"]["id"])) {
                (Some(oa_id), Some(user_id)) => Some(WebhookEvent::Follow {
                    oa_id,
                    user_id,
                    follow: name == "follow",
                }),
                _ => None,
            },
            "user_submit_info" => match (
                id_str(&v["recipient"]["id"]).or(flat_oa.clone()),
                id_str(&v["sender"]["id"]),
            ) {
                (Some(oa_id), Some(user_id)) => Some(WebhookEvent::SubmitInfo {
                    oa_id,
                    user_id,
                    info: v["info"].clone(),
                    at: timestamp(v),
                }),
                _ => None,
            },
            "permission_revoked" => {
                flat_oa
                    .clone()
                    .or_else(|| id_str(&v["sender"]["id"]))
                    .map(|oa_id| WebhookEvent::PermissionRevoked {
                        oa_id,
                        at: timestamp(v),
                    })
            }
            "add_user_to_tag" => {
                let tag = &v["tag"];
                let user_ids: Vec<String> = tag["user_ids"]
                    .as_array()
                    .map(|ids| ids.iter().filter_map(id_str).collect())
                    .unwrap_or_default();
                match (flat_oa.clone(), tag["name"].as_str()) {
                    (Some(oa_id), Some(name)) if !user_ids.is_empty() => {
                        Some(WebhookEvent::Tagged {
                            oa_id,
                            user_ids,
                            name: name.to_string(),
                        })
                    }
                    _ => None,
                }
            }
            _ => None,
        }
    };
    parsed.unwrap_or_else(other)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(s: &str) -> WebhookEvent {
        parse(&serde_json::from_str(s).unwrap())
    }

    #[test]
    fn reference_payloads_parse() {
        let text = p(
            r#"{"app_id":"360846524940903967","sender":{"id":"246845883529197922"},"recipient":{"id":"388613280878808645"},
 "user_id_by_app":"552177279717587730","event_name":"user_send_text",
 "message":{"text":"message","msg_id":"96d3cdf3af150460909"},"timestamp":"154390853474"}"#,
        );
        match text {
            WebhookEvent::UserMessage(m) => {
                assert_eq!(m.oa_id, "388613280878808645");
                assert_eq!(m.user_id, "246845883529197922");
                assert_eq!(m.msg_id, "96d3cdf3af150460909");
                assert_eq!(m.text, "message");
                assert_eq!(m.at, 154390853474);
            }
            other => panic!("{other:?}"),
        }
        let loc = p(
            r#"{"app_id":"1","sender":{"id":"u"},"recipient":{"id":"oa"},"event_name":"user_send_location",
 "message":{"msg_id":"m","text":"12 Lê Lợi","attachments":[{"type":"location","payload":{"coordinates":{"latitude":"10.7642473","longitude":"106.6564314"}}}]},
 "timestamp":"1720000000000"}"#,
        );
        let WebhookEvent::UserMessage(m) = loc else {
            panic!()
        };
        assert_eq!(m.kind, MessageKind::Location);
        assert_eq!(m.attachments[0].url, "geo:10.7642473,106.6564314");
        let file = p(
            r#"{"event_name":"oa_send_file","app_id":"102719276611582260",
 "sender":{"admin_id":"8309393969855402319","id":"1423847451268726170"},"recipient":{"id":"8309393969855402319"},
 "message":{"attachments":[{"payload":{"size":"24165","name":"20250625_084851.log","checksum":"2d018db1ed7ec464a85709c9c580d343","type":"log","url":"https://ot51.dlfl.vn/x"},"type":"file"}],
            "msg_id":"f3af2263f0673c3f6570"},
 "timestamp":"1751272409784","user_id_by_app":"7300442764876318465"}"#,
        );
        let WebhookEvent::OaMessage(m) = file else {
            panic!()
        };
        assert_eq!(m.oa_id, "1423847451268726170");
        assert_eq!(m.kind, MessageKind::File);
        assert_eq!(m.attachments[0].size, Some(24165));
        assert_eq!(m.attachments[0].name, "20250625_084851.log");
        let follow = p(
            r#"{"oa_id":"388613280879808645","follower":{"id":"24684588352919792"},"user_id_by_app":"552172779717587730",
 "event_name":"follow","source":"oa_profile","app_id":"36084652489903967","timestamp":"154397978274"}"#,
        );
        assert_eq!(
            follow,
            WebhookEvent::Follow {
                oa_id: "388613280879808645".into(),
                user_id: "24684588352919792".into(),
                follow: true
            }
        );
    }

    #[test]
    fn receipts_accept_msg_id_or_msg_ids() {
        let seen = parse(
            &json!({"event_name":"user_seen_message","sender":{"id":"oa"},"recipient":{"id":"u"},"message":{"msg_ids":["a","b"]}}),
        );
        assert_eq!(
            seen,
            WebhookEvent::Seen {
                oa_id: "oa".into(),
                msg_ids: vec!["a".into(), "b".into()]
            }
        );
        let got = parse(
            &json!({"event_name":"user_received_message","sender":{"id":"oa"},"message":{"msg_id":"a"}}),
        );
        assert_eq!(
            got,
            WebhookEvent::Delivered {
                oa_id: "oa".into(),
                msg_ids: vec!["a".into()]
            }
        );
    }

    #[test]
    fn add_user_to_tag_as_the_reference_shows_it() {
        let tagged = p(
            r#"{"app_id":"1","oa_id":"388613280878808645","user_id_by_app":"552177279717587730",
 "event_name":"add_user_to_tag","tag":{"user_ids":["246845883529197922",2468458835291979223],"name":"Khách VIP"},
 "timestamp":"1720000000000"}"#,
        );
        assert_eq!(
            tagged,
            WebhookEvent::Tagged {
                oa_id: "388613280878808645".into(),
                user_ids: vec!["246845883529197922".into(), "2468458835291979223".into()],
                name: "Khách VIP".into(),
            }
        );
        // No one, or no name: kept raw.
        for bad in [
            r#"{"event_name":"add_user_to_tag","oa_id":"1","tag":{"user_ids":[],"name":"x"}}"#,
            r#"{"event_name":"add_user_to_tag","oa_id":"1","tag":{"user_ids":["u"]}}"#,
        ] {
            assert!(matches!(p(bad), WebhookEvent::Other { .. }), "{bad}");
        }
    }

    #[test]
    fn big_numeric_ids_keep_every_digit() {
        let raw = r#"{"event_name":"user_send_text","sender":{"id":18446744073709551617},"recipient":{"id":9007199254740993123},"message":{"msg_id":"x","text":"hi"}}"#;
        let v: Value = serde_json::from_str(raw).unwrap();
        let WebhookEvent::UserMessage(m) = parse(&v) else {
            panic!()
        };
        assert_eq!(m.user_id, "18446744073709551617");
        assert_eq!(m.oa_id, "9007199254740993123");
    }

    #[test]
    fn unknown_and_incomplete_events_are_other() {
        assert!(matches!(
            parse(&json!({"event_name":"shop_has_order","oa_id":"1"})),
            WebhookEvent::Other { .. }
        ));
        assert!(matches!(
            parse(&json!({"event_name":"user_send_text"})),
            WebhookEvent::Other { .. }
        ));
        assert!(matches!(parse(&json!([1, 2])), WebhookEvent::Other { .. }));
    }
}
