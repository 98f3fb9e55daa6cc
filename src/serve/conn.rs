//! One client connection: length-prefixed requests in, responses out, in order.
//!
//! The connection's thread reads and handles requests; a second thread writes the responses in
//! the order of the requests. A produce's reply waits for the fsync that makes its records
//! durable on that second thread (`Reply::Later`), so the next requests a client pipelines are
//! read and written meanwhile and share the fsync: one connection's produce requests do not
//! take one fsync each in turn.

use crate::serve::api::{self, Reply};
use crate::serve::{Connection, Session, Shared};
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};
use std::sync::atomic::Ordering;

/// Serves requests on `stream` until the client closes it, it idles past the limit, a request is
/// malformed or too large, or the server stops.
pub(super) fn serve_connection(mut stream: Box<dyn Connection>, shared: &Shared) {
    stream.set_idle_timeout(shared.opts.idle_timeout);
    // The owner-only Unix socket is its own authentication; TCP authenticates when users are set.
    // Clients are told the address they reached (a server listening on 0.0.0.0 has no one
    // address of its own); over the Unix socket, the TCP listener's.
    let authenticated = !stream.over_network() || shared.opts.scram_users.is_empty();
    let advertised = stream.local_address().unwrap_or(shared.advertised);
    let mut session = Session::new(authenticated, advertised, stream.over_network());
    serve_requests(&mut *stream, shared, &mut session);
    // The server keeps a clone of the socket (to close it at shutdown): dropping this one alone
    // would leave the connection open.
    stream.close(std::net::Shutdown::Both);
}

/// Responses one connection may owe at once: requests read ahead of the responses written
/// (an idempotent Kafka producer keeps at most 5 requests in flight).
const OWED_MAX: usize = 16;

/// A response owed, in its request's turn.
enum Owed {
    /// The framed response.
    Now(Vec<u8>),
    /// A reply still to be made (it waits for durability), then framed.
    Later { correlation_id: i32, header_version: i16, reply: Reply },
}

fn serve_requests(stream: &mut dyn Connection, shared: &Shared, session: &mut Session) {
    let Ok(mut out) = stream.handle() else { return };
    let (owe, owed) = std::sync::mpsc::sync_channel::<Owed>(OWED_MAX);
    std::thread::scope(|scope| {
        let responder = scope.spawn(move || respond(&mut *out, owed));
        loop {
            if shared.stopping.load(Ordering::SeqCst) {
                break;
            }
            let Some(frame) = read_frame(stream, shared.opts.request_bytes_max) else { break };
            let Some(response) = handle(frame, shared, session) else { break };
            // A send fails only once the responder is gone (it never stops early).
            if let Some(o) = response
                && owe.send(o).is_err()
            {
                break;
            }
            // A failed authentication: its answer goes out, then the connection closes.
            if session.closing {
                break;
            }
        }
        drop(owe);
        let _ = responder.join();
    });
}

/// Writes the responses owed, in order, making the late ones first. After a failed write (or a
/// reply that cannot be made) the connection is closed, and the replies still owed are made
/// all the same without being written: a produce's records must be made durable (under
/// `Always` they become readable only then) whether or not its client still listens.
fn respond(out: &mut dyn Connection, owed: std::sync::mpsc::Receiver<Owed>) {
    let mut broken = false;
    for o in owed {
        let bytes = match o {
            Owed::Now(bytes) => Some(bytes),
            Owed::Later { correlation_id, header_version, reply } => {
                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| finish(reply))) {
                    Ok(Ok(None)) => continue,
                    Ok(Ok(Some(body))) => frame_response(correlation_id, header_version, &body),
                    Ok(Err(_)) | Err(_) => None,
                }
            }
        };
        if broken {
            continue;
        }
        if bytes.is_none_or(|b| out.write_all(&b).is_err()) {
            // Ends the reading thread's wait on the socket as well.
            out.close(std::net::Shutdown::Both);
            broken = true;
        }
    }
}

/// Makes a reply: its body, or `None` for no response.
fn finish(reply: Reply) -> Result<Option<BytesMut>, api::Malformed> {
    match reply {
        Reply::None => Ok(None),
        Reply::Body(body) => Ok(Some(body)),
        Reply::Later(make) => finish(make()?),
    }
}

/// Reads one length-prefixed request; `None` at end of stream, on a timeout or error, or for a
/// size outside `1..=max`.
fn read_frame(stream: &mut dyn Connection, max: usize) -> Option<Bytes> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).ok()?;
    let len = usize::try_from(i32::from_be_bytes(len)).ok().filter(|&n| n > 0 && n <= max)?;
    let mut buf = vec![0u8; len];
    stream.read_exact(&mut buf).ok()?;
    Some(Bytes::from(buf))
}

/// Decodes and answers one request. `None`: close the connection (malformed); `Some(None)`: no
/// response; `Some(Some(owed))`: the response owed.
fn handle(mut frame: Bytes, shared: &Shared, session: &mut Session) -> Option<Option<Owed>> {
    if frame.get(0..2) == Some(&crate::serve::admin::ADMIN_KEY.to_be_bytes()[..]) {
        // evlog's own administration: over the owner-only Unix socket only.
        if session.over_network {
            return None;
        }
        return Some(Some(Owed::Now(crate::serve::admin::answer(&frame, shared)?)));
    }
    let (header, key) = decode_header(&mut frame)?;
    let version = header.request_api_version;
    let client_id = header.client_id.as_deref().unwrap_or_default();
    let sasl = matches!(key, ApiKey::SaslHandshake | ApiKey::SaslAuthenticate);
    if !session.authenticated && !sasl && key != ApiKey::ApiVersions {
        return None; // nothing else before authentication: the connection closes
    }
    let answer = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        if sasl {
            api::sasl(key, version, frame, session, shared)
        } else {
            api::dispatch(key, version, client_id, frame, shared, session.advertised)
        }
    }));
    let reply = match answer {
        Ok(Ok(reply)) => reply,
        // Malformed body, or a panic in a decoder: the connection goes.
        Ok(Err(_)) | Err(_) => return None,
    };
    let header_version = key.response_header_version(version);
    match reply {
        Reply::None => Some(None),
        Reply::Body(body) => Some(Some(Owed::Now(frame_response(header.correlation_id, header_version, &body)?))),
        reply @ Reply::Later(_) => {
            Some(Some(Owed::Later { correlation_id: header.correlation_id, header_version, reply }))
        }
    }
}

/// The request header and its API key; `None` for bytes that are not one.
fn decode_header(frame: &mut Bytes) -> Option<(RequestHeader, ApiKey)> {
    let raw_key = i16::from_be_bytes(frame.get(0..2)?.try_into().ok()?);
    let version = i16::from_be_bytes(frame.get(2..4)?.try_into().ok()?);
    let key = ApiKey::try_from(raw_key).ok()?;
    let header_version = key.request_header_version(version);
    let header =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| RequestHeader::decode(frame, header_version)))
            .ok()?
            .ok()?;
    Some((header, key))
}

/// Length prefix, response header, body.
fn frame_response(correlation_id: i32, header_version: i16, body: &BytesMut) -> Option<Vec<u8>> {
    let mut head = BytesMut::new();
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    header.encode(&mut head, header_version).ok()?;
    let len = i32::try_from(head.len() + body.len()).ok()?;
    let mut out = Vec::with_capacity(4 + head.len() + body.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&head);
    out.extend_from_slice(body);
    Some(out)
}

/// Answers one request frame as `serve_requests` would, the late reply made at once; `false`
/// when the connection would close (see `Dispatcher`).
pub(super) fn answer(frame: Bytes, shared: &Shared, session: &mut Session) -> bool {
    match handle(frame, shared, session) {
        None => false,
        Some(None | Some(Owed::Now(_))) => true,
        Some(Some(Owed::Later { reply, .. })) => {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| finish(reply))).is_ok_and(|r| r.is_ok())
        }
    }
}

/// Decodes one request (header and body) from `frame` without a store: what the fuzz target
/// feeds arbitrary bytes to. Never panics; `false` for bytes that are not a request this server
/// would answer.
#[doc(hidden)]
pub fn decodes(mut frame: Bytes) -> bool {
    let Some((header, key)) = decode_header(&mut frame) else { return false };
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| api::decode_only(key, header.request_api_version, frame)))
        .unwrap_or(false)
}
