//! SASL SCRAM-SHA-256 (RFC 5802, RFC 7677), the server side, as Kafka clients speak it through
//! SaslHandshake and SaslAuthenticate: the client's first message, the server's challenge (its
//! nonce, the user's salt and iteration count), the client's proof, the server's signature.
//!
//! Invariants:
//! - The server holds only what RFC 5802 calls StoredKey and ServerKey (and the salt), never a
//!   password: `ScramUser::new` derives them and drops the password.
//! - A proof is compared in constant time; an unknown user is answered like a known one up to the
//!   proof (a challenge from a salt derived from the name), so the exchange does not tell
//!   which names exist.
//! - No message is trusted: every field is checked before use, and a malformed one ends the
//!   exchange with a failure, never a panic.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The mechanism's name in SaslHandshake.
pub const MECHANISM: &str = "SCRAM-SHA-256";
/// PBKDF2 iterations for credentials made here (RFC 7677's minimum, Kafka's default).
pub const ITERATIONS: u32 = 4096;
/// Bytes of a generated salt and of the server's share of a nonce.
const RANDOM_BYTES: usize = 18;

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    // HMAC takes keys of any length: `new_from_slice` cannot fail for it.
    let mut mac = HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(message);
    mac.finalize().into_bytes().into()
}

fn random(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    // Without the system's random source no nonce is safe: fail the exchange rather than go on.
    if getrandom::fill(&mut v).is_err() {
        v.clear();
    }
    v
}

/// A user who may authenticate: name, salt, iterations and the keys derived from the password.
#[derive(Clone)]
pub struct ScramUser {
    name: String,
    salt: Vec<u8>,
    iterations: u32,
    stored_key: [u8; 32],
    server_key: [u8; 32],
}

impl std::fmt::Debug for ScramUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramUser").field("name", &self.name).finish_non_exhaustive()
    }
}

impl ScramUser {
    /// A user `name` with `password`: a random salt, `ITERATIONS` rounds; the password itself
    /// is not kept.
    pub fn new(name: &str, password: &str) -> ScramUser {
        Self::with_salt(name, password, &random(RANDOM_BYTES), ITERATIONS)
    }

    fn with_salt(name: &str, password: &str, salt: &[u8], iterations: u32) -> ScramUser {
        let mut salted = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut salted);
        let client_key = hmac(&salted, b"Client Key");
        ScramUser {
            name: name.to_string(),
            salt: salt.to_vec(),
            iterations,
            stored_key: Sha256::digest(client_key).into(),
            server_key: hmac(&salted, b"Server Key"),
        }
    }

    /// The user's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Where one connection's exchange stands.
#[derive(Debug, Default)]
pub(super) enum Exchange {
    /// Waiting for the client's first message.
    #[default]
    Start,
    /// The challenge was sent: what the proof is checked against.
    Challenged { user: Option<ScramUser>, client_first_bare: String, server_first: String, nonce: String },
}

/// What a step of the exchange gives.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// Send these bytes and wait for the next message.
    Continue(Vec<u8>),
    /// Authenticated as this user; send these bytes (the server's signature).
    Done { user: String, reply: Vec<u8> },
    /// Refused (why, for the log and the client's error message).
    Failed(&'static str),
}

/// One field `k=value` of a SCRAM message.
fn field(part: Option<&str>, key: char) -> Option<&str> {
    let p = part?;
    p.strip_prefix(key)?.strip_prefix('=')
}

/// A SCRAM user name with `=2C` and `=3D` decoded (RFC 5802 §5.1); `None` for a bad escape.
fn decode_name(raw: &str) -> Option<String> {
    let mut out = String::new();
    let mut rest = raw;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        let code = rest.get(i + 1..i + 3)?;
        out.push(match code {
            "2C" => ',',
            "3D" => '=',
            _ => return None,
        });
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Some(out)
}

impl Exchange {
    /// Takes the client's next message; `users` are those who may authenticate.
    pub(super) fn step(&mut self, message: &[u8], users: &[ScramUser]) -> Step {
        self.step_with_nonce(message, users, || B64.encode(random(RANDOM_BYTES)))
    }

    fn step_with_nonce(&mut self, message: &[u8], users: &[ScramUser], server_nonce: impl FnOnce() -> String) -> Step {
        let Ok(message) = std::str::from_utf8(message) else {
            return Step::Failed("a SCRAM message that is not UTF-8");
        };
        match std::mem::take(self) {
            Exchange::Start => self.challenge(message, users, server_nonce()),
            Exchange::Challenged { user, client_first_bare, server_first, nonce } => {
                verify(message, user.as_ref(), &client_first_bare, &server_first, &nonce)
            }
        }
    }

    /// The client's first message `n,,n=user,r=nonce` answered with `r=…,s=…,i=…`.
    fn challenge(&mut self, message: &str, users: &[ScramUser], server_nonce: String) -> Step {
        // gs2 header: no channel binding ("n") or a client that could but the server does not
        // offer it ("y"); an authorization identity other than the user is not supported.
        let Some(bare) = message.strip_prefix("n,,").or_else(|| message.strip_prefix("y,,")) else {
            return Step::Failed("SCRAM with channel binding or an authorization identity is not offered");
        };
        let mut parts = bare.split(',');
        let Some(name) = field(parts.next(), 'n').and_then(decode_name) else {
            return Step::Failed("the SCRAM client-first message has no user name");
        };
        let Some(client_nonce) = field(parts.next(), 'r').filter(|n| !n.is_empty()) else {
            return Step::Failed("the SCRAM client-first message has no nonce");
        };
        if server_nonce.is_empty() {
            return Step::Failed("no random source for the server's nonce");
        }
        let user = users.iter().find(|u| u.name == name).cloned();
        // An unknown user gets a challenge as a known one would (a salt derived from the name),
        // and fails at the proof.
        let (salt, iterations) = match &user {
            Some(u) => (u.salt.clone(), u.iterations),
            None => (hmac(b"evlog unknown user", name.as_bytes())[..RANDOM_BYTES].to_vec(), ITERATIONS),
        };
        let nonce = format!("{client_nonce}{server_nonce}");
        let server_first = format!("r={nonce},s={},i={iterations}", B64.encode(salt));
        let reply = server_first.clone().into_bytes();
        *self = Exchange::Challenged { user, client_first_bare: bare.to_string(), server_first, nonce };
        Step::Continue(reply)
    }
}

/// The client's final message `c=…,r=…,p=proof` checked against the user's stored key.
fn verify(message: &str, user: Option<&ScramUser>, client_first_bare: &str, server_first: &str, nonce: &str) -> Step {
    let Some((without_proof, proof)) = message.rsplit_once(",p=") else {
        return Step::Failed("the SCRAM client-final message has no proof");
    };
    let mut parts = without_proof.split(',');
    // "biws" is base64 of "n,,", "eSws" of "y,,": the gs2 header the client sent, unbound.
    if !field(parts.next(), 'c').is_some_and(|c| c == "biws" || c == "eSws") {
        return Step::Failed("the SCRAM client-final message binds a channel");
    }
    if field(parts.next(), 'r') != Some(nonce) {
        return Step::Failed("the SCRAM client-final message has another nonce");
    }
    let Ok(proof) = B64.decode(proof) else { return Step::Failed("the SCRAM proof is not base64") };
    let Some(user) = user else { return Step::Failed("authentication failed") };
    let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
    let signature = hmac(&user.stored_key, auth_message.as_bytes());
    if proof.len() != signature.len() {
        return Step::Failed("authentication failed");
    }
    let client_key: Vec<u8> = proof.iter().zip(signature).map(|(p, s)| p ^ s).collect();
    let computed: [u8; 32] = Sha256::digest(&client_key).into();
    // Constant time: every byte compared whatever the first difference.
    let differs = computed.iter().zip(user.stored_key).fold(0u8, |acc, (a, b)| acc | (a ^ b));
    if differs != 0 {
        return Step::Failed("authentication failed");
    }
    let server_signature = hmac(&user.server_key, auth_message.as_bytes());
    Step::Done { user: user.name.clone(), reply: format!("v={}", B64.encode(server_signature)).into_bytes() }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 §3's exchange: user "user", password "pencil".
    fn rfc_user() -> ScramUser {
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").expect("salt");
        ScramUser::with_salt("user", "pencil", &salt, 4096)
    }

    const CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
    const SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    const CLIENT_FINAL: &str =
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";

    #[test]
    fn the_rfc_7677_exchange_authenticates_and_signs_as_the_rfc_says() {
        let users = [rfc_user()];
        let mut e = Exchange::default();
        let challenge = e.step_with_nonce(CLIENT_FIRST.as_bytes(), &users, || SERVER_NONCE.to_string());
        let expected = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        assert_eq!(challenge, Step::Continue(expected.as_bytes().to_vec()));
        let done = e.step(CLIENT_FINAL.as_bytes(), &users);
        let signature = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=".to_vec();
        assert_eq!(done, Step::Done { user: "user".into(), reply: signature });
    }

    #[test]
    fn a_wrong_password_an_unknown_user_or_a_changed_nonce_fails_at_the_proof() {
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").expect("salt");
        let wrong = [ScramUser::with_salt("user", "pencil2", &salt, 4096)];
        let mut e = Exchange::default();
        assert!(matches!(
            e.step_with_nonce(CLIENT_FIRST.as_bytes(), &wrong, || SERVER_NONCE.into()),
            Step::Continue(_)
        ));
        assert_eq!(e.step(CLIENT_FINAL.as_bytes(), &wrong), Step::Failed("authentication failed"));

        let mut e = Exchange::default();
        let other = [ScramUser::with_salt("someone", "pencil", &salt, 4096)];
        let Step::Continue(challenge) = e.step_with_nonce(CLIENT_FIRST.as_bytes(), &other, || SERVER_NONCE.into())
        else {
            panic!("an unknown user is challenged like a known one");
        };
        assert!(String::from_utf8(challenge).expect("utf-8").ends_with(",i=4096"));
        assert_eq!(e.step(CLIENT_FINAL.as_bytes(), &other), Step::Failed("authentication failed"));

        let mut e = Exchange::default();
        let users = [rfc_user()];
        let _ = e.step_with_nonce(CLIENT_FIRST.as_bytes(), &users, || "another".into());
        assert_eq!(
            e.step(CLIENT_FINAL.as_bytes(), &users),
            Step::Failed("the SCRAM client-final message has another nonce")
        );
    }

    #[test]
    fn malformed_messages_fail_without_panicking() {
        let users = [rfc_user()];
        for first in
            ["", "n,", "p=tls-unique,,n=user,r=x", "n,a=admin,n=user,r=x", "n,,r=x", "n,,n=us=4er,r=x", "n,,n=user"]
        {
            let mut e = Exchange::default();
            assert!(matches!(e.step(first.as_bytes(), &users), Step::Failed(_)), "{first:?}");
        }
        for last in [
            "",
            "c=biws",
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=***",
            "c=cD10bHMtdW5pcXVlLCw=,r=x,p=AA==",
        ] {
            let mut e = Exchange::default();
            let _ = e.step_with_nonce(CLIENT_FIRST.as_bytes(), &users, || SERVER_NONCE.into());
            assert!(matches!(e.step(last.as_bytes(), &users), Step::Failed(_)), "{last:?}");
        }
        assert_eq!(decode_name("a=2Cb=3Dc"), Some("a,b=c".into()));
    }
}
