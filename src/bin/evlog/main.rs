//! `evlog`: inspect, verify, repair and script against an evlog store.
//!
//! Errors are one line on stderr and a non-zero exit; never a panic or a Debug dump.

mod commands;
mod demo;
mod littles_law;
mod remote;
mod text;
mod top;

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(name = "evlog", version, about = "A durable embedded event log: inspect, verify, repair, replay, demo")]
struct Cli {
    /// The store directory (default: the current directory; `demo` uses a temporary one).
    #[arg(long, global = true)]
    dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Sync {
    Always,
    Interval,
    Os,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum OnError {
    Skip,
    Stop,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Append lines from stdin; prints each offset once it is durable under --sync.
    Append {
        topic: String,
        /// Each line is {"timestamp": ms or RFC 3339, "key": "...", "value": any JSON}.
        #[arg(long)]
        json: bool,
        #[arg(long, value_enum, default_value = "always")]
        sync: Sync,
        /// Key of every record (plain lines).
        #[arg(long)]
        key: Option<String>,
        #[arg(long, value_enum, default_value = "stop")]
        on_error: OnError,
    },
    /// Consume as a group: JSON lines, committing after each batch.
    Consume {
        topic: String,
        #[arg(long)]
        group: String,
        /// Keep waiting for new records.
        #[arg(long)]
        follow: bool,
        /// Stop after this many records.
        #[arg(long)]
        max: Option<u64>,
        /// Do not commit.
        #[arg(long)]
        no_commit: bool,
    },
    /// Print records as JSON lines (works while an application writes the store).
    Dump {
        topic: String,
        #[arg(long, default_value_t = 0)]
        from_offset: u64,
        /// ms since the epoch or RFC 3339.
        #[arg(long, value_parser = text::parse_time)]
        from_time: Option<i64>,
        #[arg(long, value_parser = text::parse_time)]
        to_time: Option<i64>,
    },
    /// The last records of a topic; -f to follow.
    Tail {
        topic: String,
        #[arg(short = 'f', long)]
        follow: bool,
        #[arg(short = 'n', long, default_value_t = 10)]
        lines: u64,
    },
    /// Replay topics in timestamp order as JSON lines.
    Replay {
        #[arg(required = true)]
        topics: Vec<String>,
        #[arg(long, value_parser = text::parse_time)]
        from: Option<i64>,
        #[arg(long, value_parser = text::parse_time)]
        to: Option<i64>,
        /// e.g. 5s, 200ms, 1m.
        #[arg(long, value_parser = text::parse_duration)]
        max_lateness: Option<Duration>,
    },
    /// Segments, bytes, offsets, time range, consumer groups with lag (records and seconds).
    Info {
        topic: Option<String>,
        #[arg(long)]
        json: bool,
        /// Watch for this many seconds to measure the append rate (records/s).
        #[arg(long, value_name = "SECS")]
        rate: Option<f64>,
    },
    /// Check every checksum; exit 1 if anything is corrupt.
    Verify { topic: Option<String> },
    /// Shows (no flags) or changes a topic's configuration; prints it as JSON.
    Config {
        topic: String,
        /// Disk budget: 10MiB, 1GiB... (at least 1MiB).
        #[arg(long, value_name = "SIZE", conflicts_with = "no_bytes_max", value_parser = text::parse_size)]
        bytes_max: Option<u64>,
        /// Lift the disk budget.
        #[arg(long)]
        no_bytes_max: bool,
        /// What an append past the budget does: error, block or drop-oldest.
        #[arg(long, value_name = "POLICY", value_parser = text::parse_when_full)]
        when_full: Option<evlog::log::WhenFull>,
        /// Longest wait of a blocked append: 30s, 5m...
        #[arg(long, value_name = "DURATION", value_parser = text::parse_duration)]
        block_timeout: Option<Duration>,
        /// Retention by age: 90s, 7d...
        #[arg(long, value_name = "DURATION", conflicts_with = "no_retention_age", value_parser = text::parse_age)]
        retention_age: Option<Duration>,
        /// Drop the retention age (the store's default applies).
        #[arg(long)]
        no_retention_age: bool,
        /// Retention by size: the oldest sealed segments go while the topic is larger (1GiB...).
        #[arg(long, value_name = "SIZE", conflicts_with = "no_retention_bytes", value_parser = text::parse_size)]
        retention_bytes: Option<u64>,
        /// Drop the retention by size (the store's default applies).
        #[arg(long)]
        no_retention_bytes: bool,
        /// Let background maintenance compact the topic by key.
        #[arg(long, conflicts_with = "no_compact_by_key")]
        compact_by_key: bool,
        /// Stop compacting the topic in the background.
        #[arg(long)]
        no_compact_by_key: bool,
        /// How long compaction keeps a tombstone: 1d, 12h...
        #[arg(long, value_name = "DURATION", value_parser = text::parse_duration)]
        tombstone_retention: Option<Duration>,
        /// Compression of sealed segments by background maintenance: none or lz4.
        #[arg(long, value_name = "CODEC", value_parser = text::parse_compression)]
        compression: Option<evlog::store::Compression>,
    },
    /// Compresses a topic's sealed segments now (LZ4); prints bytes before and after as JSON.
    Compress { topic: String },
    /// Compacts a topic by key now (only the newest record of each key stays in sealed
    /// segments); prints records and bytes before and after as JSON.
    Compact { topic: String },
    /// Writes a consistent copy of the store into DEST (new or empty): groups' offsets and
    /// state of one moment, every topic up to right after it. Needs the store: an application
    /// that holds it calls `Store::backup`.
    Backup { dest: PathBuf },
    /// Truncate torn tails and move corruption into quarantine/ (never deletes data).
    Repair {
        topic: Option<String>,
        #[arg(long)]
        yes: bool,
    },
    /// Consumer groups.
    Groups {
        #[command(subcommand)]
        action: GroupsAction,
    },
    /// A tour: out-of-order producers, a consumer group, a real kill -9, recovery, replay.
    Demo {
        /// Internal: run as the child process that gets killed.
        #[arg(long, hide = true)]
        child: bool,
    },
    /// Forward a topic to a Kafka topic exactly once (needs the `kafka` feature). Progress and
    /// lag on stderr. Resumes exactly where Kafka stands after any crash.
    Forward {
        topic: String,
        /// Broker list, `host:port[,host:port…]`.
        #[arg(long)]
        brokers: String,
        /// The destination topic (must exist).
        #[arg(long)]
        kafka_topic: String,
        /// The local consumer group holding the forwarder's position.
        #[arg(long, default_value = "kafka-forwarder")]
        group: String,
        /// Exit once everything appended before the start is acknowledged.
        #[arg(long)]
        until_caught_up: bool,
    },
    /// Serve the store over the Kafka wire protocol until the process is stopped (any Kafka
    /// client produces and consumes; each topic is one partition).
    /// A live view of the store, refreshed every second (q quits, s sorts, / filters, Enter
    /// shows a topic's groups): through the holder's `evlog serve` when it serves, else read-only.
    Top,
    /// Writes one static, self-contained HTML page about the store (topics, segments, groups'
    /// lag, queues): the file to attach to a bug report.
    Report {
        /// Where to write the page.
        #[arg(long, value_name = "FILE")]
        html: PathBuf,
    },
    Serve {
        /// Where to listen (loopback only, unless --users is given).
        #[arg(long, default_value = "127.0.0.1:9092")]
        listen: std::net::SocketAddr,
        /// Users who may connect over TCP with SASL SCRAM-SHA-256: a file of `name:password`
        /// lines, readable by its owner only. With it, any address may be served.
        #[arg(long, value_name = "FILE")]
        users: Option<PathBuf>,
        /// Serve the store's figures as Prometheus text at http://ADDR/metrics (loopback only).
        #[arg(long, value_name = "ADDR")]
        metrics: Option<std::net::SocketAddr>,
    },
    /// Import every partition of a Kafka topic into a local topic (needs the `kafka` feature).
    Import {
        topic: String,
        #[arg(long)]
        brokers: String,
        #[arg(long)]
        kafka_topic: String,
        /// Exit once nothing is left to import.
        #[arg(long)]
        until_caught_up: bool,
    },
}

#[derive(Subcommand, Debug)]
enum GroupsAction {
    /// Groups of a topic (or all topics) with committed offset and lag.
    List { topic: Option<String> },
    /// Move a group's committed offset.
    Reset {
        topic: String,
        group: String,
        #[arg(long, conflicts_with_all = ["to_time", "earliest", "latest"])]
        to_offset: Option<u64>,
        #[arg(long, value_parser = text::parse_time)]
        to_time: Option<i64>,
        #[arg(long)]
        earliest: bool,
        #[arg(long)]
        latest: bool,
    },
    /// Delete a group.
    Delete { topic: String, group: String },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // Help and version (and the help a bare `evlog` gets) print as clap prints them.
        Err(e) if !e.use_stderr() || e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            e.exit()
        }
        // A bad argument: clap's message (it names the flag and the value) folded into one line,
        // as every other error is, without the usage and the pointer to --help.
        Err(e) => {
            let text = e.render().to_string();
            let message: Vec<&str> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with("Usage:") && !l.starts_with("For more information"))
                .collect();
            let line = message.join(" ");
            eprintln!("evlog: {}", line.strip_prefix("error: ").unwrap_or(&line));
            return ExitCode::from(2);
        }
    };
    match commands::run(cli) {
        Ok(code) => code,
        // The reader of stdout went away: nothing more to say, and nobody to say it to.
        Err(e) if e == commands::STDOUT_CLOSED => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("evlog: {e}");
            ExitCode::from(2)
        }
    }
}
