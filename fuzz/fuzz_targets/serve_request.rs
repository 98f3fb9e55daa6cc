//! Arbitrary bytes as one request to `evlog serve` (a frame's contents, after its length):
//! decoding the header and the body, record batches included, never panics and never hangs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = evlog::serve::request_decodes(bytes::Bytes::copy_from_slice(data));
});
