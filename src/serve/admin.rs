//! evlog's own administration requests, for what Kafka has no API for: compacting or
//! compressing a topic now and backing the store up, asked by the `evlog` command of a store
//! another process serves. Framed like a Kafka request (length, API key, version, correlation
//! id) under a key Kafka does not use (`ADMIN_KEY`), answered only over the owner-only Unix
//! socket (a TCP connection that sends one is closed), and not listed in ApiVersions.
//!
//! Request after the length: i16 `ADMIN_KEY`, i16 version 0, i32 correlation id, i8 command
//! (`Command`), then its argument as a Kafka STRING (i16 length, UTF-8): the topic, or the
//! backup's destination directory. Response after the length: i32 correlation id, i16 error
//! (0: done), STRING message (the error's text, empty when done), i32 count, then count pairs
//! of STRING name and i64 value: the report's figures.

use crate::serve::Shared;

/// The API key of evlog's administration requests: far above Kafka's (which stop below 100).
pub const ADMIN_KEY: i16 = 20_000;

/// What an administration request asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i8)]
pub enum Command {
    /// `Store::compact_topic(topic)`.
    Compact = 0,
    /// `Store::compress_topic(topic)`.
    Compress = 1,
    /// `Store::backup(destination)`.
    Backup = 2,
}

impl Command {
    fn from_code(c: i8) -> Option<Command> {
        [Command::Compact, Command::Compress, Command::Backup].into_iter().find(|k| *k as i8 == c)
    }
}

/// A request's fields: correlation id, command, argument; `None` for bytes that are not one.
fn parse(frame: &[u8]) -> Option<(i32, Command, String)> {
    let key = i16::from_be_bytes(frame.get(0..2)?.try_into().ok()?);
    let version = i16::from_be_bytes(frame.get(2..4)?.try_into().ok()?);
    if key != ADMIN_KEY || version != 0 {
        return None;
    }
    let correlation = i32::from_be_bytes(frame.get(4..8)?.try_into().ok()?);
    let command = Command::from_code(i8::from_be_bytes([*frame.get(8)?]))?;
    let len = usize::try_from(i16::from_be_bytes(frame.get(9..11)?.try_into().ok()?)).ok()?;
    let arg = std::str::from_utf8(frame.get(11..11usize.checked_add(len)?)?).ok()?;
    (frame.len() == 11 + len).then(|| (correlation, command, arg.to_string()))
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    // Names and messages are short; a longer one is cut at a character boundary.
    let mut end = s.len().min(i16::MAX as usize);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let cut = s.get(..end).unwrap_or_default();
    out.extend_from_slice(&(cut.len() as i16).to_be_bytes());
    out.extend_from_slice(cut.as_bytes());
}

/// Encodes an administration request (what the `evlog` command sends), framed with its length.
pub fn request(correlation: i32, command: Command, argument: &str) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&ADMIN_KEY.to_be_bytes());
    body.extend_from_slice(&0i16.to_be_bytes());
    body.extend_from_slice(&correlation.to_be_bytes());
    body.push(command as i8 as u8);
    put_string(&mut body, argument);
    let mut framed = (body.len() as i32).to_be_bytes().to_vec();
    framed.extend_from_slice(&body);
    framed
}

/// Decodes a response's body (after its length): its figures, or the error's message.
pub fn response(body: &[u8]) -> Option<Result<Vec<(String, i64)>, String>> {
    let mut at = 4; // the correlation id
    let take = |at: &mut usize, n: usize| -> Option<&[u8]> {
        let s = body.get(*at..at.checked_add(n)?)?;
        *at += n;
        Some(s)
    };
    let string = |at: &mut usize| -> Option<String> {
        let len = usize::try_from(i16::from_be_bytes(take(at, 2)?.try_into().ok()?)).ok()?;
        Some(std::str::from_utf8(take(at, len)?).ok()?.to_string())
    };
    let error = i16::from_be_bytes(take(&mut at, 2)?.try_into().ok()?);
    let message = string(&mut at)?;
    if error != 0 {
        return Some(Err(message));
    }
    let count = usize::try_from(i32::from_be_bytes(take(&mut at, 4)?.try_into().ok()?)).ok()?;
    let mut figures = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let name = string(&mut at)?;
        figures.push((name, i64::from_be_bytes(take(&mut at, 8)?.try_into().ok()?)));
    }
    Some(Ok(figures))
}

/// Runs a request read from the Unix socket; the framed response, or `None` for bytes that are
/// not a request (the connection closes).
pub(super) fn answer(frame: &[u8], s: &Shared) -> Option<Vec<u8>> {
    let (correlation, command, arg) = parse(frame)?;
    let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    let figures = match command {
        Command::Compact => s.store.compact_topic(&arg).map(|r| {
            vec![
                ("segments_rewritten", n(r.segments_rewritten)),
                ("records_before", n(r.records_before)),
                ("records_after", n(r.records_after)),
                ("bytes_before", n(r.bytes_before)),
                ("bytes_after", n(r.bytes_after)),
                ("tombstones_removed", n(r.tombstones_removed)),
                ("keys", n(r.keys)),
                ("compacted_below", n(r.compacted_below)),
            ]
        }),
        Command::Compress => s.store.compress_topic(&arg).map(|r| {
            vec![
                ("segments_compressed", n(r.segments_compressed)),
                ("bytes_before", n(r.bytes_before)),
                ("bytes_after", n(r.bytes_after)),
            ]
        }),
        Command::Backup => s.store.backup(&arg).map(|r| {
            vec![
                ("topics", n(r.topics)),
                ("records", n(r.records)),
                ("bytes_copied", n(r.bytes_copied)),
                ("bytes_linked", n(r.bytes_linked)),
                ("state_keys", n(r.state_keys)),
            ]
        }),
    };
    let mut body = correlation.to_be_bytes().to_vec();
    match figures {
        Ok(figures) => {
            body.extend_from_slice(&0i16.to_be_bytes());
            put_string(&mut body, "");
            body.extend_from_slice(&(figures.len() as i32).to_be_bytes());
            for (name, value) in figures {
                put_string(&mut body, name);
                body.extend_from_slice(&value.to_be_bytes());
            }
        }
        Err(e) => {
            body.extend_from_slice(&1i16.to_be_bytes());
            put_string(&mut body, &e.to_string());
        }
    }
    let mut framed = i32::try_from(body.len()).ok()?.to_be_bytes().to_vec();
    framed.extend_from_slice(&body);
    Some(framed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_parses_back_and_bad_bytes_do_not() {
        let framed = request(7, Command::Backup, "/tmp/bäckup");
        assert_eq!(parse(&framed[4..]), Some((7, Command::Backup, "/tmp/bäckup".to_string())));
        for bad in [&framed[4..10], &framed[4..framed.len() - 1], &[0x4e, 0x20, 0, 0, 0, 0, 0, 0, 9, 0, 0][..]] {
            assert_eq!(parse(bad), None);
        }
        assert_eq!(response(&[0, 0, 0, 7, 0, 1, 0, 3, b'b', b'a', b'd']), Some(Err("bad".into())));
        assert_eq!(response(&[0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 9]), None, "a count without its figures");
    }
}
