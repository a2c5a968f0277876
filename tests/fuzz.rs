//! Property-based fuzzing of everything that parses untrusted input: webhook bodies and
//! signatures, stream frames, API bodies, config, the user's keymap, the console's cache, Zalo's
//! API answers (over real HTTP) and history rows, and customer text on its way to the terminal.
//! Seeds come from the reference's example payloads. CI runs the default case count; run longer by
//! hand with e.g. `PROPTEST_CASES=200000 cargo test --release --test fuzz` (see FUZZING.md).

mod common;
use proptest::prelude::*;
use sop_console::model::text::sanitize_for_terminal;
use sop_console::wire::{Frame, NewAccount, ReplyInput, RuleInput};
use sop_console::zalo::{events, verify_webhook, webhook_mac};

/// The reference's example payloads (§3.5), the seed corpus.
const SEEDS: &[&str] = &[
    r#"{"app_id":"360846524940903967","sender":{"id":"246845883529197922"},"recipient":{"id":"388613280878808645"},"user_id_by_app":"552177279717587730","event_name":"user_send_text","message":{"text":"message","msg_id":"96d3cdf3af150460909"},"timestamp":"154390853474"}"#,
    r#"{"app_id":"1","sender":{"id":"u"},"recipient":{"id":"oa"},"user_id_by_app":"x","event_name":"user_send_image","message":{"msg_id":"m","text":"optional caption","attachments":[{"type":"image","payload":{"url":"https://a","thumbnail":"https://b"}}]},"timestamp":"1677721200000"}"#,
    r#"{"app_id":"1","sender":{"id":"u"},"recipient":{"id":"oa"},"event_name":"user_send_location","message":{"msg_id":"m","text":"addr","attachments":[{"type":"location","payload":{"coordinates":{"latitude":"10.7642473","longitude":"106.6564314"}}}]},"timestamp":"1720000000000"}"#,
    r#"{"event_name":"oa_send_file","app_id":"102719276611582260","sender":{"admin_id":"8309393969855402319","id":"1423847451268726170"},"recipient":{"id":"8309393969855402319"},"message":{"attachments":[{"payload":{"size":"24165","name":"a.log","checksum":"2d01","type":"log","url":"https://x"},"type":"file"}],"msg_id":"f3af2263f0673c3f6570"},"timestamp":"1751272409784","user_id_by_app":"7300442764876318465"}"#,
    r#"{"oa_id":"388613280879808645","follower":{"id":"24684588352919792"},"user_id_by_app":"552172779717587730","event_name":"follow","source":"oa_profile","app_id":"36084652489903967","timestamp":"154397978274"}"#,
    r#"{"app_id":"1","sender":{"id":"oa"},"recipient":{"id":"u"},"event_name":"user_seen_message","message":{"msg_ids":["a","b"]},"timestamp":"1"}"#,
    r#"{"sender":{"id":"u"},"recipient":{"id":"oa"},"event_name":"user_submit_info","app_id":"1","timestamp":"1","info":{"name":"A","phone":"84912345678"}}"#,
    r#"{"app_id":"1","oa_id":"2","user_id_by_app":"3","event_name":"add_user_to_tag","tag":{"user_ids":["4"],"name":"example"},"timestamp":"5"}"#,
];

/// A seed with random byte-level damage: flips, insertions, truncation.
fn mutated() -> impl Strategy<Value = Vec<u8>> {
    (
        0..SEEDS.len(),
        prop::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 0..8),
    )
        .prop_map(|(i, edits)| {
            let mut b = SEEDS[i].as_bytes().to_vec();
            for (pos, byte, kind) in edits {
                if b.is_empty() {
                    break;
                }
                let p = pos % b.len();
                match kind {
                    0 => b[p] = byte,
                    1 => b.insert(p, byte),
                    _ => b.truncate(p),
                }
            }
            b
        })
}

proptest! {
    #[test]
    fn webhook_parsing_never_panics_on_damaged_payloads(body in mutated()) {
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) {
            let _ = events::parse(&v);
            let (app, ts) = events::signature_fields(&v);
            let mac = webhook_mac(&app, &body, &ts, "k");
            prop_assert!(verify_webhook(&mac, &app, &body, &ts, "k"));
        }
    }

    #[test]
    fn webhook_parsing_never_panics_on_arbitrary_json(v in arb_json()) {
        let _ = events::parse(&v);
        let _ = events::signature_fields(&v);
    }

    #[test]
    fn signatures_reject_any_change(body in mutated(), flip in any::<usize>(), header in ".{0,80}") {
        let mac = webhook_mac("app", &body, "123", "secret");
        prop_assert!(verify_webhook(&mac, "app", &body, "123", "secret"));
        let mut other = body.clone();
        if !other.is_empty() {
            let p = flip % other.len();
            other[p] ^= 0x01;
            prop_assert!(!verify_webhook(&mac, "app", &other, "123", "secret"));
        }
        // Arbitrary headers never verify and never panic.
        prop_assert!(!verify_webhook(&header, "app", &body, "123", "secret") || header.trim().trim_start_matches("mac=").eq_ignore_ascii_case(mac.trim_start_matches("mac=")));
    }

    #[test]
    fn frames_and_api_bodies_never_panic(s in ".{0,400}", v in arb_json()) {
        let _ = serde_json::from_str::<Frame>(&s);
        let text = v.to_string();
        let _ = serde_json::from_str::<Frame>(&text);
        let _ = serde_json::from_str::<RuleInput>(&text);
        let _ = serde_json::from_str::<ReplyInput>(&text);
        let _ = serde_json::from_str::<NewAccount>(&text);
    }

    #[test]
    fn config_parsing_never_panics(s in "(\\[(server|zalo|console)\\]\n)?([a-z_]{1,16} = (\"[^\"]{0,20}\"|[0-9]{1,6}|true|\\[\\])\n){0,6}", junk in ".{0,60}") {
        let _ = sop_console::config::Config::parse(&s);
        let _ = sop_console::config::Config::parse(&junk);
    }

    #[test]
    fn customer_text_can_never_drive_the_terminal(s in any::<String>(), keep in any::<bool>()) {
        let out = sanitize_for_terminal(&s, keep);
        prop_assert!(!out.chars().any(|c| c.is_control() && !(keep && c == '\n')), "{out:?}");
        prop_assert!(!out.chars().any(sop_console::model::text::is_bidi_control), "bidi control left in {out:?}");
    }
}

proptest! {
    /// A user's `keymap.toml` is their own file, but a typo must give an error, never a panic.
    #[test]
    fn keymap_files_never_panic(
        s in "(\\[keys\\]\n)?([a-z_]{1,16} = \\[(\"[a-z0-9-]{0,12}\"(, )?){0,3}\\]\n){0,5}",
        junk in ".{0,40}",
    ) {
        let _ = sop_console::console::keymap::Keymap::load(Some(&s));
        let _ = sop_console::console::keymap::Keymap::load(Some(&format!("{s}{junk}")));
    }

    /// The console's cache is decoded at start; a damaged one must read as "no cache".
    #[test]
    fn cache_records_never_panic_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = postcard::from_bytes::<sop_console::console::data::Snapshot>(&bytes);
        let _ = serde_json::from_slice::<Vec<sop_console::console::data::OutboxItem>>(&bytes);
    }

    /// Zalo's `conversation` rows (history sync) of any shape become a message or are skipped.
    #[test]
    fn history_rows_never_panic(v in arb_json()) {
        let row = sop_console::server::zalo::sync::history_row("p1", "u1", "Lan", &v, 0);
        if let Some(m) = row {
            prop_assert!(m.zalo_msg_id.is_some());
        }
    }
}

/// Zalo's API answers over real HTTP: whatever status and body the far end sends, every client
/// call returns (never panics), and a send is reported sent only with Zalo's `message_id`.
#[test]
fn zalo_api_answers_of_any_shape_are_handled() {
    use std::sync::{Arc, Mutex};
    let rt = tokio::runtime::Runtime::new().unwrap();
    let answer: Arc<Mutex<(u16, Vec<u8>)>> = Arc::new(Mutex::new((200, vec![])));
    let base = rt.block_on(async {
        let answer = answer.clone();
        let app = axum::Router::new().fallback(move || {
            let (status, body) = answer.lock().unwrap().clone();
            async move { (axum::http::StatusCode::from_u16(status).unwrap(), body) }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}")
    });
    let cfg = sop_console::config::ZaloConfig {
        app_id: "1".into(),
        oauth_base: base.clone(),
        api_base: base,
        ..Default::default()
    };
    let client = sop_console::zalo::client::ZaloClient::new(&cfg);
    let statuses = prop_oneof![
        Just(200u16),
        Just(400),
        Just(401),
        Just(500),
        Just(502),
        Just(503)
    ];
    let bodies = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..200),
        arb_json().prop_map(|v| v.to_string().into_bytes()),
        (arb_json(), any::<i64>()).prop_map(|(d, e)| {
            serde_json::json!({"error": e % 300, "message": "x", "data": d})
                .to_string()
                .into_bytes()
        }),
    ];
    let upload = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(upload.path(), [1, 2, 3]).unwrap();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 128,
        ..ProptestConfig::default()
    });
    runner
        .run(&(statuses, bodies), |(status, body)| {
            *answer.lock().unwrap() = (status, body.clone());
            rt.block_on(async {
                let _ = client.get_oa("t").await;
                let _ = client.user_detail("t", "u").await;
                let _ = client.list_recent_chat("t", 0, 10).await;
                let _ = client.conversation("t", "u", 0, 10).await;
                let _ = client.refresh("r").await;
                let _ = client.upload("t", "image", "a.png", upload.path()).await;
                let sent = client
                    .send_cs("t", "u", serde_json::json!({"text": "x"}))
                    .await;
                if let Ok(id) = sent {
                    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                    assert_eq!(v["error"].as_i64().unwrap_or(0), 0);
                    assert!(!id.is_empty());
                }
            });
            Ok(())
        })
        .unwrap();
}

fn arb_json() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        "[a-z_0-9]{0,12}".prop_map(Value::String),
        prop_oneof![
            Just("user_send_text"),
            Just("oa_send_text"),
            Just("user_seen_message"),
            Just("follow"),
            Just("permission_revoked")
        ]
        .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(4, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("event_name".to_string()),
                    Just("sender".to_string()),
                    Just("recipient".to_string()),
                    Just("message".to_string()),
                    Just("id".to_string()),
                    Just("msg_id".to_string()),
                    Just("msg_ids".to_string()),
                    Just("attachments".to_string()),
                    Just("payload".to_string()),
                    Just("oa_id".to_string()),
                    "[a-z]{1,6}"
                ],
                inner,
                0..6
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Over real HTTP: damaged or random bodies, signed and unsigned, never get a 5xx and never
/// stop the hub.
#[test]
fn webhook_endpoint_survives_hostile_bodies() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s = rt.block_on(common::start_stack());
    let url = format!("{}/zalo/webhook", s.t.base);
    let http = s.t.http.clone();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 128,
        ..ProptestConfig::default()
    });
    runner
        .run(&(mutated(), any::<bool>()), |(body, sign)| {
            let status = rt.block_on(async {
                let mut req = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.clone());
                if sign {
                    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) {
                        let (_, ts) = events::signature_fields(&v);
                        req = req.header(
                            "X-ZEvent-Signature",
                            webhook_mac(common::APP_ID, &body, &ts, common::OA_SECRET),
                        );
                    }
                }
                req.send().await.unwrap().status()
            });
            prop_assert!(status.as_u16() < 500, "{status}");
            Ok(())
        })
        .unwrap();
    let health = rt.block_on(async {
        http.get(format!("{}/healthz", s.t.base))
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(health, 200);
    rt.block_on(s.t.stop());
}
