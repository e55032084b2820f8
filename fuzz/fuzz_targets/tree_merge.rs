#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sync_protocol::checks::merge::tree_merge(data));
