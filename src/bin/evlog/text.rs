//! Text in and out: timestamps, durations, JSON lines.

use serde_json::{Value, json};
use std::time::Duration;

/// Milliseconds since the Unix epoch, or an RFC 3339 date-time
/// (`2026-11-22T07:30:00Z`, `2026-11-22T07:30:00.250+01:00`).
pub fn parse_time(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    let ts: jiff::Timestamp = s
        .parse()
        .map_err(|e| format!("{s:?} is neither milliseconds since the epoch nor an RFC 3339 date-time ({e})"))?;
    Ok(ts.as_millisecond())
}

/// `5s`, `200ms`, `1m`, `2h`, `7d`, `1h30m`, or plain milliseconds. Overflow is an error.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(ms) = s.parse::<u64>() {
        return Ok(Duration::from_millis(ms));
    }
    let bad = |e: jiff::Error| format!("{s:?} is not a duration like 5s, 200ms, 2h or 7d ({e})");
    let span: jiff::Span = s.parse().map_err(bad)?;
    // A day is 24 hours here: retention and lateness are spans of elapsed time.
    let d = span.to_duration(jiff::SpanRelativeTo::days_are_24_hours()).map_err(bad)?;
    Duration::try_from(d).map_err(|_| format!("{s:?} is negative"))
}

/// A duration above zero (a retention age: zero would delete everything sealed).
pub fn parse_age(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        d if d.is_zero() => Err(format!("{s:?} is zero; give a duration above zero")),
        d => Ok(d),
    }
}

/// What an append past a topic's budget does: `error`, `block` or `drop-oldest`.
pub fn parse_when_full(s: &str) -> Result<evlog::log::WhenFull, String> {
    evlog::log::WhenFull::from_name(s).ok_or_else(|| format!("{s:?} is not one of error, block, drop-oldest"))
}

/// How sealed segments are stored: `none` or `lz4`.
pub fn parse_compression(s: &str) -> Result<evlog::store::Compression, String> {
    match evlog::store::Compression::from_name(s) {
        Some(c) => Ok(c),
        None if s == "zstd" => Err("zstd is not built into evlog (it needs a C library); use lz4 or none".into()),
        None => Err(format!("{s:?} is not one of none, lz4")),
    }
}

/// `10MiB`, `1GiB`, `512KiB`, `4096` (bytes), `10MB` (10⁷ bytes), `1.5GiB`. Zero and overflow
/// are errors.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let unit_bytes: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        other => return Err(format!("{s:?}: unknown unit {other:?} (use B, KiB, MiB, GiB, TiB, KB, MB, GB or TB)")),
    };
    let bytes = match number.parse::<u64>() {
        Ok(n) => n.checked_mul(unit_bytes).ok_or_else(|| format!("{s:?} is too large"))?,
        Err(_) => {
            let x: f64 = number.parse().map_err(|_| format!("{s:?} is not a size like 10MiB or 1GiB"))?;
            let b = x * unit_bytes as f64;
            if !b.is_finite() || b >= u64::MAX as f64 {
                return Err(format!("{s:?} is too large"));
            }
            b as u64
        }
    };
    if bytes == 0 {
        return Err(format!("{s:?} is zero; give a size above zero"));
    }
    Ok(bytes)
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub fn base64(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(B64[((n >> shift) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64 (padding optional, no whitespace), as `base64` writes it.
pub fn unbase64(s: &str) -> Result<Vec<u8>, String> {
    let digits = s.trim_end_matches('=');
    if s.len() - digits.len() > 2 || digits.len() % 4 == 1 {
        return Err(format!("{s:?} is not base64 (length)"));
    }
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in digits.bytes() {
        let v = B64.iter().position(|&b| b == c).ok_or_else(|| format!("{s:?} is not base64 ({:?})", c as char))?;
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

/// A record as a JSON line: the value as a string when it is UTF-8, else `value_base64`;
/// `headers` (when there are any) maps each name to a string, or to `{"base64": ..}`.
pub fn record_json(
    topic: &str,
    offset: u64,
    timestamp: i64,
    key: Option<&[u8]>,
    headers: &[(&str, &[u8])],
    payload: &[u8],
) -> Value {
    let mut v = json!({ "topic": topic, "offset": offset, "timestamp": timestamp });
    if !headers.is_empty() {
        let mut h = serde_json::Map::new();
        for (name, value) in headers {
            let value = match std::str::from_utf8(value) {
                Ok(s) => Value::String(s.to_string()),
                Err(_) => json!({ "base64": base64(value) }),
            };
            h.insert((*name).to_string(), value);
        }
        v["headers"] = Value::Object(h);
    }
    let key = key.map(|k| match std::str::from_utf8(k) {
        Ok(s) => Value::String(s.to_string()),
        Err(_) => Value::String(base64(k)),
    });
    v["key"] = key.unwrap_or(Value::Null);
    match std::str::from_utf8(payload) {
        Ok(s) => v["value"] = Value::String(s.to_string()),
        Err(_) => v["value_base64"] = Value::String(base64(payload)),
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_and_milliseconds_parse_to_the_same_instant() {
        assert_eq!(parse_time("0"), Ok(0));
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_time("2026-11-22T07:30:00.25Z"), Ok(1_795_332_600_250));
        assert_eq!(parse_time("2026-11-22T08:30:00+01:00"), Ok(1_795_332_600_000));
        assert_eq!(parse_time("1969-12-31T23:59:59Z"), Ok(-1000));
        assert!(parse_time("2026-13-01T00:00:00Z").is_err());
        assert!(parse_time("yesterday").is_err());
    }

    #[test]
    fn sizes_take_binary_and_decimal_units_and_refuse_zero_and_nonsense() {
        assert_eq!(parse_size("10MiB"), Ok(10 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert_eq!(parse_size("1.5KiB"), Ok(1536));
        assert!(parse_size("0").is_err() && parse_size("0MiB").is_err());
        assert!(parse_size("-5MiB").is_err() && parse_size("ten").is_err() && parse_size("5 parsecs").is_err());
        assert!(parse_size("99999999999TiB").is_err(), "overflow is an error");
    }

    #[test]
    fn durations_and_base64() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("200ms"), Ok(Duration::from_millis(200)));
        assert_eq!(parse_duration("250"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("5 parsecs").is_err());
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5_400)));
        assert!(parse_duration("99999999999999999999h").is_err(), "overflow is an error, not a wrap");
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(&[0xff, 0x00, 0x10]), "/wAQ");
        for data in [&b""[..], b"f", b"fo", b"foo", b"foob", &[0xff, 0xfe, 0x00, 0x80, 0x7f]] {
            assert_eq!(unbase64(&base64(data)).as_deref(), Ok(data), "{data:?}");
        }
        assert_eq!(unbase64("Zm8").as_deref(), Ok(&b"fo"[..]), "padding is optional");
        assert!(unbase64("Z").is_err() && unbase64("Zm9v!").is_err() && unbase64("Zg===").is_err());
    }
}
