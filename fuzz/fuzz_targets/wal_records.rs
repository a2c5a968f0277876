//! The webhook log as a crash (or a bad disk) may leave it: whole records are read back exactly,
//! a torn tail is cut, nothing panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sop_console::store::wal::{encode_record, parse_records};

fuzz_target!(|bytes: &[u8]| {
    let (records, end) = parse_records(bytes);
    assert!(end <= bytes.len());
    // Re-encoding what was read gives back exactly the bytes before the torn tail.
    let mut again = Vec::with_capacity(end);
    for (n, body) in &records {
        encode_record(*n, body, &mut again);
    }
    assert_eq!(again, &bytes[..end]);
});
