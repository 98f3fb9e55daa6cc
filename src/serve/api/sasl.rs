//! SaslHandshake and SaslAuthenticate: SCRAM-SHA-256 (see `scram.rs`) for a server with users.
//! Until a TCP connection has authenticated, it may send only ApiVersions and these two; after a
//! failed exchange it is closed, as Kafka does.

use crate::serve::api::{Malformed, Reply, decode, encode};
use crate::serve::scram::{self, Exchange, Step};
use crate::serve::{Session, Shared};
use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse};
use kafka_protocol::protocol::StrBytes;

const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
const ILLEGAL_SASL_STATE: i16 = 34;
const SASL_AUTHENTICATION_FAILED: i16 = 58;

pub(in crate::serve) fn sasl(
    key: ApiKey,
    version: i16,
    body: Bytes,
    session: &mut Session,
    s: &Shared,
) -> Result<Reply, Malformed> {
    if key == ApiKey::SaslHandshake {
        let r: SaslHandshakeRequest = decode(body, version)?;
        let offered = !s.opts.scram_users.is_empty();
        let ok = offered && &*r.mechanism == scram::MECHANISM;
        session.handshaken = ok;
        session.exchange = Exchange::default();
        let mechanisms = if offered { vec![StrBytes::from_static_str(scram::MECHANISM)] } else { Vec::new() };
        let code = if ok { 0 } else { UNSUPPORTED_SASL_MECHANISM };
        return encode(&SaslHandshakeResponse::default().with_error_code(code).with_mechanisms(mechanisms), version);
    }
    let r: kafka_protocol::messages::SaslAuthenticateRequest = decode(body, version)?;
    let response = SaslAuthenticateResponse::default();
    if !session.handshaken || session.authenticated {
        session.closing = true;
        let message = "SaslAuthenticate outside a SCRAM exchange begun by SaslHandshake";
        let refused =
            response.with_error_code(ILLEGAL_SASL_STATE).with_error_message(Some(StrBytes::from_static_str(message)));
        return encode(&refused, version);
    }
    let response = match session.exchange.step(&r.auth_bytes, &s.opts.scram_users) {
        Step::Continue(reply) => response.with_auth_bytes(Bytes::from(reply)),
        Step::Done { user: _, reply } => {
            session.authenticated = true;
            response.with_auth_bytes(Bytes::from(reply))
        }
        Step::Failed(why) => {
            session.closing = true;
            response
                .with_error_code(SASL_AUTHENTICATION_FAILED)
                .with_error_message(Some(StrBytes::from_static_str(why)))
        }
    };
    encode(&response, version)
}
