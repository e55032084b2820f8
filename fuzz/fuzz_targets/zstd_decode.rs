#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sync_protocol::checks::codec::zstd_decode(data));
