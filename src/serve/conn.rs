//! One client connection: length-prefixed requests in, responses out, in order.

use crate::serve::api::{self, Reply};
use crate::serve::{Connection, Shared};
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};
use std::sync::atomic::Ordering;

/// Serves requests on `stream` until the client closes it, it idles past the limit, a request is
/// malformed or too large, or the server stops.
pub(super) fn serve_connection(mut stream: Box<dyn Connection>, shared: &Shared) {
    stream.set_idle_timeout(shared.opts.idle_timeout);
    serve_requests(&mut *stream, shared);
    // The server keeps a clone of the socket (to close it at shutdown): dropping this one alone
    // would leave the connection open.
    stream.close(std::net::Shutdown::Both);
}

fn serve_requests(stream: &mut dyn Connection, shared: &Shared) {
    loop {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let Some(frame) = read_frame(stream, shared.opts.request_bytes_max) else { return };
        let Some(response) = handle(frame, shared) else { return };
        if let Some(bytes) = response
            && stream.write_all(&bytes).is_err()
        {
            return;
        }
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
/// response (a produce with `acks=0`); `Some(Some(bytes))`: the framed response.
fn handle(mut frame: Bytes, shared: &Shared) -> Option<Option<Vec<u8>>> {
    let (header, key) = decode_header(&mut frame)?;
    let version = header.request_api_version;
    let client_id = header.client_id.as_deref().unwrap_or_default();
    let answer = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        api::dispatch(key, version, client_id, frame, shared)
    }));
    let reply = match answer {
        Ok(Ok(reply)) => reply,
        // Malformed body, or a panic in a decoder: the connection goes.
        Ok(Err(_)) | Err(_) => return None,
    };
    match reply {
        Reply::None => Some(None),
        Reply::Body(body) => {
            let header_version = key.response_header_version(version);
            Some(Some(frame_response(header.correlation_id, header_version, &body)?))
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

/// Decodes one request (header and body) from `frame` without a store: what the fuzz target
/// feeds arbitrary bytes to. Never panics; `false` for bytes that are not a request this server
/// would answer.
#[doc(hidden)]
pub fn decodes(mut frame: Bytes) -> bool {
    let Some((header, key)) = decode_header(&mut frame) else { return false };
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| api::decode_only(key, header.request_api_version, frame)))
        .unwrap_or(false)
}
