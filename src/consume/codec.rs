//! How typed topics turn values into payload bytes and back.
//!
//! A codec is a small trait so that an application can plug in postcard, JSON or its own format;
//! [`Bincode`] (bincode 2.0.1 in serde mode, standard configuration) is the default. The frame
//! around the payload is evlog's own (FORMAT.md); the codec only shapes the payload.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Most memory a [`Bincode`] decode may claim for one value: a corrupt or foreign payload that
/// announces a huge length is refused instead of allocated.
pub const DECODE_BYTES_MAX: usize = 64 << 20;

/// Turns values of `T` into payload bytes and back. Implementations must be deterministic and
/// must never panic on foreign bytes: decoding returns an error message instead.
pub trait Codec<T>: Send + Sync + 'static {
    /// Appends the encoding of `value` to `out`.
    fn encode(&self, value: &T, out: &mut Vec<u8>) -> Result<(), String>;
    /// Decodes one value from all of `bytes`.
    fn decode(&self, bytes: &[u8]) -> Result<T, String>;
}

/// bincode 2.0.1 through serde, standard configuration (little-endian, variable-length
/// integers), with decoding limited to [`DECODE_BYTES_MAX`] and trailing bytes refused.
#[derive(Debug, Clone, Copy, Default)]
pub struct Bincode;

fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<DECODE_BYTES_MAX>()
}

impl<T: Serialize + DeserializeOwned> Codec<T> for Bincode {
    fn encode(&self, value: &T, out: &mut Vec<u8>) -> Result<(), String> {
        bincode::serde::encode_into_std_write(value, out, bincode_config()).map(|_| ()).map_err(|e| e.to_string())
    }

    fn decode(&self, bytes: &[u8]) -> Result<T, String> {
        let (value, used) = bincode::serde::decode_from_slice(bytes, bincode_config()).map_err(|e| e.to_string())?;
        if used != bytes.len() {
            return Err(format!("{} trailing bytes after the value", bytes.len() - used));
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bincode_round_trips_and_refuses_foreign_bytes_without_panicking() {
        let v: (u32, String, Vec<i64>) = (7, "seven".into(), vec![-1, 2]);
        let mut buf = Vec::new();
        Bincode.encode(&v, &mut buf).unwrap();
        let back: (u32, String, Vec<i64>) = Bincode.decode(&buf).unwrap();
        assert_eq!(back, v);
        // A length prefix that claims more than the limit is refused, not allocated.
        let huge = [0xFDu8, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F];
        assert!(<Bincode as Codec<Vec<u8>>>::decode(&Bincode, &huge).is_err());
        // Trailing bytes mean the payload was not written by this type.
        buf.push(0);
        assert!(<Bincode as Codec<(u32, String, Vec<i64>)>>::decode(&Bincode, &buf).is_err());
        assert!(<Bincode as Codec<String>>::decode(&Bincode, &[0xFF, 0xFF]).is_err());
    }
}
