//! `append`: stdin's lines into a topic, in the store this process opens or through the
//! process that serves it.

use super::*;

pub(super) fn append(
    dir: &Path,
    topic: &str,
    as_json: bool,
    sync: Sync,
    key: Option<String>,
    on_error: OnError,
) -> CmdResult {
    // A store another process serves: through it (its durability applies).
    if let Some(mut remote) = crate::remote::Remote::connect(dir) {
        evlog::store::validate_name(topic).map_err(msg)?;
        return append_lines(
            &mut Sink::Remote(&mut remote, topic),
            as_json,
            Sync::Always,
            key.as_deref(),
            on_error,
            || Ok(()),
        );
    }
    let durability = match sync {
        Sync::Always => Durability::Always,
        Sync::Interval => Durability::Interval(Duration::from_millis(100)),
        Sync::Os => Durability::Os,
    };
    let store = open_store(dir, durability)?;
    let t = store.topic(topic).map_err(msg)?;
    append_lines(&mut Sink::Local(&t), as_json, sync, key.as_deref(), on_error, || t.sync().map_err(msg))
}

/// Appends stdin's lines to `sink`, printing each offset once it is durable (`sync_now` makes
/// the pending ones so under `Interval`).
pub(super) fn append_lines(
    sink: &mut Sink<'_>,
    as_json: bool,
    sync: Sync,
    key: Option<&str>,
    on_error: OnError,
    sync_now: impl Fn() -> Result<(), String>,
) -> CmdResult {
    let mut failed = false;
    let mut pending = Vec::new();
    let flush_pending = |pending: &mut Vec<u64>| -> Result<(), String> {
        if pending.is_empty() {
            return Ok(());
        }
        if matches!(sync, Sync::Interval) {
            sync_now()?;
        }
        let mut o = out();
        for p in pending.drain(..) {
            writeln!(o, "{p}").map_err(stdout_error)?;
        }
        o.flush().map_err(stdout_error)
    };
    // Lines are read as bytes: one line that is not UTF-8 is that line's error, not the end of
    // the whole input.
    for (n, line) in std::io::stdin().lock().split(b'\n').enumerate() {
        let mut line = line.map_err(|e| format!("stdin: {e}"))?;
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        let result = match String::from_utf8(line) {
            Err(e) => Err(format!(
                "not UTF-8 (invalid byte at column {}); plain lines are text: append binary payloads with \
                 --json and \"value_base64\"",
                e.utf8_error().valid_up_to() + 1
            )),
            Ok(line) if as_json => json_record(&line).and_then(|r| sink.append(&r)),
            Ok(line) => sink.append(&plain_record(&line, key)),
        };
        match result {
            Ok(Err((true, e))) => {
                // Every later line would meet the same budget: stop whatever `--on-error` says.
                eprintln!("evlog: line {}: {e}", n + 1);
                failed = true;
                break;
            }
            Ok(Err((false, e))) | Err(e) => {
                eprintln!("evlog: line {}: {e}", n + 1);
                failed = true;
                if matches!(on_error, OnError::Stop) {
                    break;
                }
            }
            Ok(Ok(offset)) => {
                pending.push(offset);
                // Always and Os: durable as promised when append returns. Interval: after a sync.
                if !matches!(sync, Sync::Interval) || pending.len() >= 1000 {
                    flush_pending(&mut pending)?;
                }
            }
        }
    }
    flush_pending(&mut pending)?;
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// What appending one line did: bad input (`Err`), or the append's own result (an offset, or
/// whether the topic was full and what went wrong).
pub(super) type LineResult = Result<Result<u64, (bool, String)>, String>;

/// Where `append` puts each record: the store it opened, or the process that serves it.
pub(super) enum Sink<'a> {
    Local(&'a evlog::Topic),
    Remote(&'a mut crate::remote::Remote, &'a str),
}

impl Sink<'_> {
    pub(super) fn append(&mut self, r: &Outgoing) -> LineResult {
        match self {
            Sink::Local(t) => {
                let mut n = NewRecord::new(&r.value);
                n.timestamp = r.timestamp;
                n.key = r.key.as_deref();
                n.headers = r.headers.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();
                Ok(t.append_record(&n).map_err(|e| (matches!(e, evlog::LogError::TopicFull { .. }), msg(e))))
            }
            Sink::Remote(remote, topic) => remote.append(topic, r),
        }
    }
}

pub(super) fn plain_record(line: &str, key: Option<&str>) -> Outgoing {
    Outgoing {
        timestamp: None,
        key: key.map(|k| k.as_bytes().to_vec()),
        headers: Vec::new(),
        value: line.as_bytes().to_vec(),
    }
}

pub(super) fn json_record(line: &str) -> Result<Outgoing, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let obj = v.as_object().ok_or("expected a JSON object with timestamp, key and value")?;
    let timestamp = match obj.get("timestamp") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(n.as_i64().ok_or("timestamp must be whole milliseconds")?),
        Some(Value::String(s)) => Some(parse_time(s)?),
        Some(_) => return Err("timestamp must be a number (ms) or an RFC 3339 string".into()),
    };
    let key = match obj.get("key") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone().into_bytes()),
        Some(_) => return Err("key must be a string".into()),
    };
    // Binary values come as `value_base64` (what `dump` prints for them).
    let value = match (obj.get("value"), obj.get("value_base64")) {
        (Some(_), Some(_)) => return Err("give \"value\" or \"value_base64\", not both".into()),
        (None, None) => return Err("missing \"value\" (or \"value_base64\")".into()),
        (None, Some(Value::String(b))) => unbase64(b)?,
        (None, Some(_)) => return Err("value_base64 must be a base64 string".into()),
        (Some(Value::String(s)), None) => s.clone().into_bytes(),
        (Some(other), None) => other.to_string().into_bytes(),
    };
    let headers: Vec<(String, Vec<u8>)> = match obj.get("headers") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(h)) => h
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone().into_bytes())),
                Value::Object(b) if b.len() == 1 && b.get("base64").is_some_and(Value::is_string) => {
                    Ok((k.clone(), unbase64(b.get("base64").and_then(Value::as_str).unwrap_or_default())?))
                }
                _ => Err(format!("header {k:?} must be a string or {{\"base64\": ...}}")),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err("headers must be an object of strings".into()),
    };
    Ok(Outgoing { timestamp, key, headers, value })
}
