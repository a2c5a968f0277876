//! Customer text on its way to the terminal: nothing that could drive it may survive.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sop_console::model::text::sanitize_for_terminal;

fuzz_target!(|input: (bool, &str)| {
    let (keep_newlines, text) = input;
    let out = sanitize_for_terminal(text, keep_newlines);
    for c in out.chars() {
        assert!(
            !c.is_control() || (keep_newlines && c == '\n'),
            "control {c:?} left in {out:?}"
        );
        // Unicode's Bidi_Control set, spelled out here rather than taken from the code under test.
        assert!(
            !matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'),
            "bidi control {c:?} left in {out:?}"
        );
    }
});
