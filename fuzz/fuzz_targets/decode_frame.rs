//! Arbitrary bytes through the frame decoder: Ok or Err, never a panic; what decodes re-encodes
//! to exactly the same bytes.
#![no_main]

use evlog::format::{FLAG_BATCH_CONTINUES, FrameFields, HeadersIter, decode_frame, encode_frame, headers_block_len};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(f) = decode_frame(data, None) else { return };
    let headers: Vec<(&str, &[u8])> = HeadersIter::new(&data[f.headers.clone()])
        .map(|h| h.expect("a decoded frame has valid headers"))
        .map(|(n, v)| (std::str::from_utf8(n).expect("UTF-8 names"), v))
        .collect();
    let fields = FrameFields {
        offset: f.offset,
        durable_offset: f.durable_offset,
        timestamp: f.timestamp,
        key: f.key.clone().map(|k| &data[k]),
        headers: &headers,
        payload: &data[f.payload.clone()],
        batch_continues: f.flags & FLAG_BATCH_CONTINUES != 0,
    };
    let mut out = Vec::new();
    let hl = headers_block_len(&headers).expect("decoded headers are within limits");
    encode_frame(&mut out, &fields, hl);
    assert_eq!(out, &data[..f.len], "re-encoding gives the same bytes");
    assert_eq!(decode_frame(&out, Some(f.offset)).as_ref(), Ok(&f));
});
