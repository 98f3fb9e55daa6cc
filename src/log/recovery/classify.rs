//! The pure decision at the heart of recovery: are the bytes after the last complete batch of the
//! active segment a torn (unsynced) tail that may be cut, or data that had been made durable and
//! is now damaged? No I/O; fuzzed (`fuzz/fuzz_targets/classify_tail.rs`). FORMAT.md § Recovery
//! rules, rule 4.

// Positions are u64 on disk and usize in memory; nothing here narrows one into the other with `as`.
#![deny(clippy::cast_possible_truncation)]

use crate::format;

/// What the tail of the active segment is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TailVerdict {
    /// A valid frame after the bad bytes carries a `durable_offset` above the offset expected at
    /// the cut: records there had been fsynced (and maybe acknowledged). Never cut silently.
    Durable {
        /// Position (in the file) of the first frame that proves it.
        proof_at: u64,
        /// Its `durable_offset`.
        durable_offset: u64,
    },
    /// Nothing proves the bytes were durable: a torn or unsynced tail, to be cut at its start.
    Torn {
        /// Complete, valid frames inside it (never acknowledged as durable: an unfinished batch,
        /// or frames after a torn one).
        dropped_records: u64,
        /// Zero bytes at its very end (preallocated space), reported apart.
        zero_tail_bytes: u64,
        /// The other bytes cut.
        truncated_bytes: u64,
    },
}

/// Classifies `tail`, the bytes from `tail_start` (the end of the last complete batch, where
/// offset `expected_next` would start) to the end of the file.
pub fn classify_tail(tail: &[u8], tail_start: u64, expected_next: u64) -> TailVerdict {
    let zeros = tail.iter().rev().take_while(|&&b| b == 0).count();
    let (mut dropped, mut at) = (0u64, 0usize);
    while let Some((p, f)) = format::find_valid_frame(tail, at) {
        if f.durable_offset > expected_next {
            return TailVerdict::Durable { proof_at: tail_start + p as u64, durable_offset: f.durable_offset };
        }
        dropped += 1;
        at = p + f.len;
    }
    TailVerdict::Torn {
        dropped_records: dropped,
        zero_tail_bytes: zeros as u64,
        truncated_bytes: (tail.len() - zeros) as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{FrameFields, encode_frame, headers_block_len};

    fn frame(offset: u64, durable_offset: u64) -> Vec<u8> {
        let mut out = Vec::new();
        let f = FrameFields {
            offset,
            durable_offset,
            timestamp: 1,
            key: None,
            headers: &[],
            payload: b"payload",
            batch_continues: false,
        };
        encode_frame(&mut out, &f, headers_block_len(&[]).unwrap_or(0));
        out
    }

    #[test]
    fn garbage_and_zeros_are_a_torn_tail_with_the_zeros_counted_apart() {
        let mut tail = b"torn frame bytes".to_vec();
        tail.extend_from_slice(&[0; 100]);
        assert_eq!(
            classify_tail(&tail, 1000, 7),
            TailVerdict::Torn { dropped_records: 0, zero_tail_bytes: 100, truncated_bytes: 16 }
        );
        assert_eq!(
            classify_tail(&[], 1000, 7),
            TailVerdict::Torn { dropped_records: 0, zero_tail_bytes: 0, truncated_bytes: 0 }
        );
    }

    #[test]
    fn valid_frames_after_a_torn_one_are_dropped_unless_one_proves_durability() {
        let mut tail = b"xx".to_vec();
        tail.extend(frame(8, 7));
        let len = tail.len() as u64;
        assert_eq!(
            classify_tail(&tail, 0, 7),
            TailVerdict::Torn { dropped_records: 1, zero_tail_bytes: 0, truncated_bytes: len }
        );
        tail.extend(frame(9, 9));
        assert_eq!(classify_tail(&tail, 500, 7), TailVerdict::Durable { proof_at: 500 + len, durable_offset: 9 });
    }
}
