//! See `wxunion::fuzzing::graphql_request`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = wxunion::fuzzing::graphql_request(data);
});
