//! A webhook body as Zalo (or anyone) might POST it: JSON parsing, event parsing, the signature's
//! fields, and verification against a correct and a wrong MAC.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sop_console::zalo::{events, verify_webhook, webhook_mac};

fuzz_target!(|body: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return;
    };
    let _ = events::parse(&value);
    let (app_id, timestamp) = events::signature_fields(&value);
    let mac = webhook_mac(&app_id, body, &timestamp, "oa-secret");
    assert!(verify_webhook(&mac, &app_id, body, &timestamp, "oa-secret"));
    assert!(!verify_webhook(
        &mac,
        &app_id,
        body,
        &timestamp,
        "another-secret"
    ));
    // The body itself as a header value: never verifies, never panics.
    let header = String::from_utf8_lossy(&body[..body.len().min(80)]);
    let _ = verify_webhook(&header, &app_id, body, &timestamp, "oa-secret");
});
