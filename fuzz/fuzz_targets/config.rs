//! The config file (TOML) an operator writes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let _ = sop_console::config::Config::parse(text);
});
