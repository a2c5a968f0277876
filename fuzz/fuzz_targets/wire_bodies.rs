//! What clients send the hub and the hub sends consoles: stream frames and API bodies.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sop_console::wire::{Frame, NewAccount, ReplyInput, RuleInput};

fuzz_target!(|bytes: &[u8]| {
    let _ = serde_json::from_slice::<Frame>(bytes);
    let _ = serde_json::from_slice::<RuleInput>(bytes);
    let _ = serde_json::from_slice::<ReplyInput>(bytes);
    let _ = serde_json::from_slice::<NewAccount>(bytes);
    // A frame that decodes must encode and decode again to the same frame.
    if let Ok(frame) = serde_json::from_slice::<Frame>(bytes) {
        let again = serde_json::to_string(&frame).expect("frames encode");
        let back: Frame = serde_json::from_str(&again).expect("an encoded frame decodes");
        assert_eq!(serde_json::to_string(&back).unwrap(), again);
    }
});
