//! Compressed record batches decompressed with a bound: a batch that would decompress past
//! `ServeOptions::batch_bytes_max` is refused (its produce request closes the connection)
//! instead of filling memory. gzip, lz4 and zstd are read through a limited reader; snappy's
//! blocks state their length, checked before a byte is decompressed.

use bytes::{Buf, Bytes};
use kafka_protocol::records::Compression;
use std::io::Read;

/// The header of Kafka's (xerial) snappy framing; without it a batch is one raw snappy block.
const SNAPPY_XERIAL_MAGIC: &[u8; 16] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";

fn too_large(max: usize) -> anyhow::Error {
    anyhow::anyhow!("a compressed batch decompresses past {max} bytes")
}

/// Reads `r` to its end, refusing more than `max` bytes.
fn read_bounded(r: impl Read, max: usize) -> anyhow::Result<Bytes> {
    let mut out = Vec::new();
    r.take(u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1)).read_to_end(&mut out)?;
    if out.len() > max {
        return Err(too_large(max));
    }
    Ok(Bytes::from(out))
}

/// One raw snappy block, its stated length checked first.
fn snappy_block(block: &[u8], max: usize) -> anyhow::Result<Vec<u8>> {
    let len = snap::raw::decompress_len(block)?;
    if len > max {
        return Err(too_large(max));
    }
    Ok(snap::raw::Decoder::new().decompress_vec(block)?)
}

fn snappy(input: &mut Bytes, max: usize) -> anyhow::Result<Bytes> {
    if !input.starts_with(SNAPPY_XERIAL_MAGIC) {
        return Ok(Bytes::from(snappy_block(input, max)?));
    }
    input.advance(SNAPPY_XERIAL_MAGIC.len());
    let mut out = Vec::new();
    while input.has_remaining() {
        let len = usize::try_from(input.try_get_u32()?)?;
        if len > input.remaining() {
            anyhow::bail!("a snappy block runs past its batch");
        }
        let block = input.split_to(len);
        out.extend_from_slice(&snappy_block(&block, max - out.len())?);
    }
    Ok(Bytes::from(out))
}

/// Decompresses one batch's records, at most `max` bytes of them.
pub(super) fn bounded(input: &mut Bytes, compression: Compression, max: usize) -> anyhow::Result<Bytes> {
    let data = input.split_to(input.len());
    match compression {
        Compression::None => Ok(data),
        Compression::Gzip => read_bounded(flate2::read::GzDecoder::new(data.reader()), max),
        Compression::Lz4 => read_bounded(lz4::Decoder::new(data.reader())?, max),
        Compression::Zstd => read_bounded(zstd::stream::read::Decoder::new(data.reader())?, max),
        Compression::Snappy => snappy(&mut data.clone(), max),
    }
}
