//! `ServeOptions::metrics_listen`: the store's figures as Prometheus text at `GET /metrics`.
//! Each scrape records them afresh (`monitor::record_metrics`) into this server's own recorder
//! (not the process's global one, so several servers and the application's own recorder do not
//! meet) and renders it. A plain HTTP/1.1 answer over std's `TcpListener`, one connection at a
//! time: a scrape is a few kilobytes every few seconds.

use crate::serve::Shared;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// The longest a scraper may take to send its request line and headers.
const REQUEST_WAIT: Duration = Duration::from_secs(5);
/// The most bytes read of a request's head.
const REQUEST_HEAD_BYTES_MAX: u64 = 16 << 10;

pub(super) fn serve_metrics(listener: &TcpListener, shared: &Shared) {
    let recorder = PrometheusBuilder::new().build_recorder();
    for stream in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        if let Ok(stream) = stream {
            let _ = answer(stream, &recorder, shared);
        }
    }
}

fn answer(mut stream: TcpStream, recorder: &PrometheusRecorder, shared: &Shared) -> std::io::Result<()> {
    stream.set_read_timeout(Some(REQUEST_WAIT))?;
    let mut head = BufReader::new(std::io::Read::take(stream.try_clone()?, REQUEST_HEAD_BYTES_MAX));
    let mut request_line = String::new();
    head.read_line(&mut request_line)?;
    // The rest of the head, up to its blank line.
    let mut line = String::new();
    while head.read_line(&mut line)? > 0 && line.trim_end() != "" {
        line.clear();
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("");
    let (status, body) = if request_line.starts_with("GET ") && (path == "/metrics" || path == "/") {
        let recorded = ::metrics::with_local_recorder(recorder, || crate::monitor::record_metrics(&shared.store));
        match recorded {
            Ok(()) => ("200 OK", recorder.handle().render()),
            Err(e) => ("500 Internal Server Error", format!("evlog: {e}\n")),
        }
    } else {
        ("404 Not Found", "GET /metrics\n".to_string())
    };
    let header = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(header.as_bytes())?;
    stream.write_all(body.as_bytes())
}
