//! Recovery's tail classifier on arbitrary bytes: never panics; a torn verdict accounts for every
//! byte of the tail (zeros apart); a durable verdict names a position inside the tail where a
//! valid frame with a higher `durable_offset` really starts.
#![no_main]

use evlog::format::decode_frame;
use evlog::log::{TailVerdict, classify_tail};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u64, u16, &[u8])| {
    let (expected_next, start, tail) = input;
    let tail_start = u64::from(start);
    match classify_tail(tail, tail_start, expected_next) {
        TailVerdict::Torn { zero_tail_bytes, truncated_bytes, dropped_records } => {
            assert_eq!(zero_tail_bytes + truncated_bytes, tail.len() as u64);
            assert!(dropped_records <= tail.len() as u64 / 40 + 1);
        }
        TailVerdict::Durable { proof_at, durable_offset } => {
            assert!(durable_offset > expected_next);
            let at = usize::try_from(proof_at - tail_start).expect("inside the tail");
            let frame = decode_frame(&tail[at..], None).expect("a valid frame starts there");
            assert_eq!(frame.durable_offset, durable_offset);
        }
    }
});
