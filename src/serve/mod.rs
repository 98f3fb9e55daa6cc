//! Serving a store over the Kafka wire protocol, so other processes and other languages produce
//! to and consume from it with the Kafka clients they already have (`Store::serve`,
//! `evlog serve`). Each topic is one partition, partition 0; the store is the only broker,
//! node 0. Message encoding is the `kafka-protocol` crate's; this module maps requests onto
//! the store.
//!
//! Invariants:
//! - A malformed or oversized request gets its connection closed (after an error response where
//!   the request's header could be read); the store is never touched by it and the server never
//!   panics (decoding runs under `catch_unwind` as well).
//! - `acks=1` and `acks=all` are answered only after the append returned, that is once the
//!   records are as durable as the topic's `Durability` says (`Always`: fsynced).
//! - Loopback only unless told otherwise: a non-loopback address is refused (authentication is
//!   not implemented yet).
//! - Bounded: connections (`connections_max`), request size (`request_bytes_max`), idle time
//!   (`idle_timeout`), records per fetch (`partition_max_bytes` as the client asks, at least one).

mod admin;
mod api;
mod conn;
mod decompress;
mod groups;
mod prometheus;
mod scram;

#[doc(hidden)]
pub use admin::{ADMIN_KEY, Command as AdminCommand, request as admin_request, response as admin_response};
pub use scram::ScramUser;
mod producers;

#[doc(hidden)] // for the fuzz target over request bytes
pub use conn::decodes as request_decodes;

use crate::error::{Error, Result};
use crate::store::Store;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// A Kafka record outside any producer's sequence (no producer id, epoch or sequence),
/// CreateTime `timestamp`: what a fetch answers with, and what the `evlog` command, the tests and
/// the benchmarks produce. Headers as given, names in order.
#[doc(hidden)]
pub fn wire_record(
    offset: i64,
    timestamp: i64,
    key: Option<bytes::Bytes>,
    value: Option<bytes::Bytes>,
    headers: Vec<(kafka_protocol::protocol::StrBytes, Option<bytes::Bytes>)>,
) -> kafka_protocol::records::Record {
    use kafka_protocol::records::{NO_PARTITION_LEADER_EPOCH, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE};
    kafka_protocol::records::Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
        producer_id: NO_PRODUCER_ID,
        producer_epoch: NO_PRODUCER_EPOCH,
        timestamp_type: kafka_protocol::records::TimestampType::Creation,
        offset,
        sequence: NO_SEQUENCE,
        timestamp,
        key,
        value,
        headers,
    }
}

/// The address `evlog serve` listens on by default: Kafka's port, loopback only.
pub const LISTEN_DEFAULT: &str = "127.0.0.1:9092";
/// The Unix socket a served store listens on too, in its root directory (owner-only): how the
/// `evlog` command reaches a store another process holds.
pub const SOCKET_FILE: &str = "evlog.sock";

/// How a store is served; see [`Store::serve`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServeOptions {
    /// Where to listen. Loopback only: any other address is refused.
    pub listen: SocketAddr,
    /// The most client connections at once; a connection past it is closed at once.
    pub connections_max: usize,
    /// The largest request accepted (Kafka's `message.max.bytes` plus its framing); a larger
    /// one closes its connection.
    pub request_bytes_max: usize,
    /// A connection that sends nothing for this long is closed.
    pub idle_timeout: Duration,
    /// Whether a produce to (or metadata request for) a topic that does not exist creates it,
    /// as Kafka's `auto.create.topics.enable` does.
    pub auto_create_topics: bool,
    /// The longest a fetch waits for records, whatever the client asks.
    pub fetch_wait_max: Duration,
    /// The most bytes one compressed record batch may decompress to; a larger one is refused
    /// (its connection closed) before it fills memory.
    pub batch_bytes_max: usize,
    /// Whether to listen on the Unix socket `SOCKET_FILE` in the store's root as well (the
    /// `evlog` command's way in).
    pub unix_socket: bool,
    /// The longest a JoinGroup waits for the members of a rebalance to rejoin, and a
    /// follower's SyncGroup for its leader's assignments, whatever the clients ask.
    pub group_wait_max: Duration,
    /// Users who may connect over TCP, authenticating with SASL SCRAM-SHA-256. With none (the
    /// default) TCP connections need no authentication and only loopback is served; with some,
    /// every TCP connection must authenticate first and any address may be served. The Unix
    /// socket (owner-only) never asks.
    pub scram_users: Vec<ScramUser>,
    /// Where to serve the store's figures as Prometheus text (`GET /metrics`); loopback only.
    /// `None` (the default): not served.
    pub metrics_listen: Option<SocketAddr>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 9092)),
            connections_max: 256,
            request_bytes_max: 16 << 20,
            idle_timeout: Duration::from_secs(600),
            auto_create_topics: true,
            fetch_wait_max: Duration::from_secs(30),
            batch_bytes_max: 64 << 20,
            unix_socket: true,
            group_wait_max: Duration::from_secs(300),
            scram_users: Vec::new(),
            metrics_listen: None,
        }
    }
}

impl ServeOptions {
    /// Options listening on `listen`, defaults otherwise.
    pub fn listening_on(listen: SocketAddr) -> Self {
        ServeOptions { listen, ..ServeOptions::default() }
    }
}

/// A running server; [`Server::shutdown`] (or dropping it) stops accepting, lets the requests in
/// flight finish and closes every connection.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
    /// The Unix socket's path and acceptor, when there is one.
    socket: Option<(PathBuf, JoinHandle<()>)>,
    /// The metrics endpoint's address and thread, when there is one.
    metrics: Option<(SocketAddr, JoinHandle<()>)>,
}

/// A connection's thread, and a handle to close the connection at shutdown.
type ConnectionThread = (JoinHandle<()>, Box<dyn Connection>);

/// A client connection, over TCP or the Unix socket.
pub(crate) trait Connection: Read + Write + Send + std::fmt::Debug + 'static {
    /// A second handle on the same connection (to close it at shutdown).
    fn handle(&self) -> std::io::Result<Box<dyn Connection>>;
    /// Whether it came over the network (TCP), where users must authenticate when some are set.
    fn over_network(&self) -> bool;
    /// The address the client connected to (TCP only).
    fn local_address(&self) -> Option<SocketAddr>;
    fn close(&self, how: std::net::Shutdown);
    fn set_idle_timeout(&self, idle: Duration);
}

impl Connection for TcpStream {
    fn handle(&self) -> std::io::Result<Box<dyn Connection>> {
        Ok(Box::new(self.try_clone()?))
    }
    fn over_network(&self) -> bool {
        true
    }
    fn local_address(&self) -> Option<SocketAddr> {
        self.local_addr().ok()
    }
    fn close(&self, how: std::net::Shutdown) {
        let _ = self.shutdown(how);
    }
    fn set_idle_timeout(&self, idle: Duration) {
        let _ = self.set_read_timeout(Some(idle));
        let _ = self.set_nodelay(true);
    }
}

impl Connection for UnixStream {
    fn handle(&self) -> std::io::Result<Box<dyn Connection>> {
        Ok(Box::new(self.try_clone()?))
    }
    fn over_network(&self) -> bool {
        false
    }
    fn local_address(&self) -> Option<SocketAddr> {
        None
    }
    fn close(&self, how: std::net::Shutdown) {
        let _ = self.shutdown(how);
    }
    fn set_idle_timeout(&self, idle: Duration) {
        let _ = self.set_read_timeout(Some(idle));
    }
}

/// One connection's authentication.
#[derive(Debug)]
struct Session {
    /// Whether requests other than ApiVersions and the SASL ones are answered.
    authenticated: bool,
    /// Whether SaslHandshake chose SCRAM-SHA-256.
    handshaken: bool,
    exchange: scram::Exchange,
    /// Close the connection once the response in hand is sent (a failed authentication).
    closing: bool,
    /// What Metadata and FindCoordinator tell this client to connect to.
    advertised: SocketAddr,
    /// Whether it came over TCP (evlog's administration requests are refused there).
    over_network: bool,
}

impl Session {
    fn new(authenticated: bool, advertised: SocketAddr, over_network: bool) -> Session {
        let exchange = scram::Exchange::default();
        Session { authenticated, handshaken: false, exchange, closing: false, advertised, over_network }
    }
}

/// What the acceptor and the connections share.
#[derive(Debug)]
struct Shared {
    store: Store,
    opts: ServeOptions,
    /// The address clients are told to connect to (Metadata, FindCoordinator).
    advertised: SocketAddr,
    stopping: AtomicBool,
    connections: AtomicUsize,
    /// Each connection's thread and a handle to close its socket at shutdown.
    threads: Mutex<Vec<ConnectionThread>>,
    /// Consumer-group membership (the offsets are the store's).
    groups: groups::Coordinator,
    producer_ids: producers::ProducerIds,
}

impl Shared {
    fn new(store: &Store, opts: ServeOptions, advertised: SocketAddr) -> Shared {
        Shared {
            store: store.clone(),
            groups: groups::Coordinator::new(opts.group_wait_max),
            opts,
            advertised,
            stopping: AtomicBool::new(false),
            connections: AtomicUsize::new(0),
            threads: Mutex::new(Vec::new()),
            producer_ids: producers::ProducerIds::default(),
        }
    }
}

/// Answers request frames as a connection would, without a socket: what the fuzz target
/// `serve_request` drives (every API, against a real store).
#[doc(hidden)]
#[derive(Debug)]
pub struct Dispatcher {
    shared: Shared,
}

impl Dispatcher {
    /// A dispatcher for `store` (`opts.listen` is what Metadata advertises; nothing listens).
    pub fn new(store: &Store, opts: ServeOptions) -> Dispatcher {
        let advertised = opts.listen;
        Dispatcher { shared: Shared::new(store, opts, advertised) }
    }

    /// Answers one request frame (its contents after the length), waits included; `false` when
    /// its connection would be closed.
    pub fn answer(&self, frame: bytes::Bytes) -> bool {
        // As over TCP: evlog's administration requests (a backup writes where it is told) are
        // refused, whatever the bytes ask.
        conn::answer(frame, &self.shared, &mut Session::new(true, self.shared.advertised, true))
    }
}

impl Store {
    /// Serves this store over the Kafka wire protocol on `opts.listen` (port 0 picks a free
    /// one; [`Server::local_addr`] says which) from threads of this process, beside its own use
    /// of the store. Fails with `InvalidOptions` for an address that is not loopback.
    pub fn serve(&self, opts: ServeOptions) -> Result<Server> {
        if !opts.listen.ip().is_loopback() && opts.scram_users.is_empty() {
            return Err(Error::InvalidOptions {
                reason: format!(
                    "{} is not a loopback address: serving beyond this machine needs authentication (ServeOptions::scram_users, evlog serve --users FILE)",
                    opts.listen
                ),
            });
        }
        let listener =
            TcpListener::bind(opts.listen).map_err(|e| Error::io("listen on", opts.listen.to_string(), e))?;
        let addr = listener.local_addr().map_err(|e| Error::io("listen on", opts.listen.to_string(), e))?;
        let shared = Arc::new(Shared::new(self, opts, addr));
        let acceptor = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("evlog-serve".into())
                .spawn(move || accept_loop(listener.incoming(), &shared))
                .map_err(|e| Error::io("start the server thread for", addr.to_string(), e))?
        };
        let mut server = Server { addr, shared, acceptor: Some(acceptor), socket: None, metrics: None };
        if server.shared.opts.unix_socket {
            server.socket = Some(listen_on_socket(self, &server.shared)?);
        }
        if let Some(at) = server.shared.opts.metrics_listen {
            server.metrics = Some(listen_for_metrics(at, &server.shared)?);
        }
        Ok(server)
    }
}

impl Server {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address of the Prometheus endpoint, when `ServeOptions::metrics_listen` asked for one.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|m| m.0)
    }

    /// Stops accepting connections, lets each connection finish the request it is serving,
    /// closes them and waits for their threads.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if self.shared.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        // Wake the acceptors blocked in `accept`.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
        if let Some((path, h)) = self.socket.take() {
            let _ = UnixStream::connect(&path);
            let _ = h.join();
            let _ = std::fs::remove_file(&path);
        }
        if let Some((at, h)) = self.metrics.take() {
            let _ = TcpStream::connect_timeout(&at, Duration::from_secs(1));
            let _ = h.join();
        }
        let threads = std::mem::take(&mut *crate::sync::lock(&self.shared.threads));
        for (_, stream) in &threads {
            // Reading ends; a response being written still goes out.
            stream.close(std::net::Shutdown::Read);
        }
        for (h, _) in threads {
            let _ = h.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Serves the metrics endpoint on `at` (loopback only: the figures name topics and groups).
fn listen_for_metrics(at: SocketAddr, shared: &Arc<Shared>) -> Result<(SocketAddr, JoinHandle<()>)> {
    if !at.ip().is_loopback() {
        let reason = format!("metrics on {at}: the endpoint has no authentication, so it is served on loopback only");
        return Err(Error::InvalidOptions { reason });
    }
    let listener = TcpListener::bind(at).map_err(|e| Error::io("listen on", at.to_string(), e))?;
    let addr = listener.local_addr().map_err(|e| Error::io("listen on", at.to_string(), e))?;
    let shared = shared.clone();
    let h = std::thread::Builder::new()
        .name("evlog-metrics".into())
        .spawn(move || prometheus::serve_metrics(&listener, &shared))
        .map_err(|e| Error::io("start the metrics thread for", addr.to_string(), e))?;
    Ok((addr, h))
}

/// Listens on the store's Unix socket (a file left by a server that was killed is replaced:
/// this process holds the store's lock, so no other server can be using it), owner-only.
/// The socket's name is not data: nothing acknowledged depends on it, so it is neither made
/// durable nor made through `Storage` (a socket is no file a crash model could hold); after a
/// crash a stale name is replaced here, and a client that finds no listener opens the store.
fn listen_on_socket(store: &Store, shared: &Arc<Shared>) -> Result<(PathBuf, JoinHandle<()>)> {
    use std::os::unix::fs::PermissionsExt;
    let path = store.root().join(SOCKET_FILE);
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).map_err(|e| Error::io("listen on", &path, e))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::io("chmod", &path, e))?;
    let shared = shared.clone();
    let h = std::thread::Builder::new()
        .name("evlog-serve-unix".into())
        .spawn(move || accept_loop(listener.incoming(), &shared))
        .map_err(|e| Error::io("start the server thread for", &path, e))?;
    Ok((path, h))
}

fn accept_loop<C: Connection>(incoming: impl Iterator<Item = std::io::Result<C>>, shared: &Arc<Shared>) {
    for stream in incoming {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        if shared.connections.load(Ordering::SeqCst) >= shared.opts.connections_max {
            drop(stream); // over the limit: closed at once
            continue;
        }
        let Ok(handle) = stream.handle() else { continue };
        shared.connections.fetch_add(1, Ordering::SeqCst);
        let conn_shared = shared.clone();
        let spawned = std::thread::Builder::new().name("evlog-serve-conn".into()).spawn(move || {
            conn::serve_connection(Box::new(stream), &conn_shared);
            conn_shared.connections.fetch_sub(1, Ordering::SeqCst);
        });
        match spawned {
            Ok(h) => {
                let mut threads = crate::sync::lock(&shared.threads);
                threads.retain(|(h, _)| !h.is_finished());
                threads.push((h, handle));
            }
            Err(_) => {
                shared.connections.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }
}
