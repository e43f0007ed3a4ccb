#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| printroute_fuzz::proxy_header(data));
