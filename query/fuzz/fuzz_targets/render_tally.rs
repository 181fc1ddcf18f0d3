//! The `render_tally` check of `../checks.rs` under cargo-fuzz.
#![no_main]

#[allow(dead_code)]
#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::render_tally(data));
