#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sync_protocol::checks::content::content_merge(data));
