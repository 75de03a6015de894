//! See `wxunion::fuzzing::callback_signed`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = wxunion::fuzzing::callback_signed(data);
});
