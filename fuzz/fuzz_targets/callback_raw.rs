//! See `wxunion::fuzzing::callback_raw`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = wxunion::fuzzing::callback_raw(data);
});
