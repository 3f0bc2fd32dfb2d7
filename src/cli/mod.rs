//! The command-line client: `profstore push` and `profstore query`, which
//! talk to a running daemon over its HTTP API so nobody needs curl.
//!
//! - [`client`]: a blocking HTTP client (plain HTTP only; no https).
//! - [`push`]: uploads pprof files to `/api/v1/write`.
//! - [`query`]: range queries, label listings and profiles (a top-functions
//!   table computed here by [`table`], or the server's bytes in any format).
//! - [`time`]: command-line times, relative forms included.
//!
//! Every failure prints `profstore: <message>` (the server's `error` field
//! when it answered one) on stderr and exits with code 1.

pub mod client;
pub mod push;
pub mod query;
pub mod table;
pub mod time;

use clap::Args;
use std::process::ExitCode;

/// Where the daemon is.
#[derive(Args, Debug)]
pub struct Conn {
    /// Base URL of the daemon (plain HTTP only: https is not supported).
    #[arg(
        long,
        env = "PROFSTORE_URL",
        default_value = "http://127.0.0.1:7070",
        global = true
    )]
    pub url: String,
}

/// `profstore push`.
#[derive(Args, Debug)]
#[command(
    after_help = "Prints one line per file: file, series, samples and the profile's \
    timestamp. Exits with 1 if any file failed."
)]
pub struct PushArgs {
    /// pprof files (gzipped or not); `-` reads stdin.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<String>,
    /// Profile name (the metric name's prefix, e.g. `process_cpu`); inferred
    /// by the server when absent.
    #[arg(long)]
    pub name: Option<String>,
    /// A label `NAME=VALUE` of the pushed series (repeatable).
    #[arg(long = "label", short = 'l', value_name = "NAME=VALUE", value_parser = push::parse_label)]
    pub labels: Vec<(String, String)>,
    #[allow(missing_docs)] // clap would show a field doc as help text
    #[command(flatten)]
    pub conn: Conn,
}

/// `profstore query`.
#[derive(Args, Debug)]
#[command(
    after_help = "Times (--start, --end, --time, ...): unix seconds, RFC 3339 \
    (2024-05-01T12:00:00Z), `now`, `now-1h`, `now+5m` or `-30m` (before now).\n\
    Durations (--step): `15s`, `1m`, `1h30m`, or seconds."
)]
pub struct QueryArgs {
    #[allow(missing_docs)] // clap would show a field doc as help text
    #[command(subcommand)]
    pub command: query::QueryCommand,
    #[allow(missing_docs)] // clap would show a field doc as help text
    #[command(flatten)]
    pub conn: Conn,
}

/// Runs `push`.
pub fn run_push(args: PushArgs) -> ExitCode {
    exit(push::run(&args))
}

/// Runs `query`.
pub fn run_query(args: QueryArgs) -> ExitCode {
    exit(query::run(&args.command, &args.conn))
}

fn exit(r: Result<(), String>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("profstore: {e}");
            ExitCode::FAILURE
        }
    }
}
