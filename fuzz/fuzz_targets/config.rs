//! See `wxunion::fuzzing::config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = wxunion::fuzzing::config(data);
});
