//! `profstore query`: range queries, label listings and profiles.

use super::client::Client;
use super::{push::label_set, table, time, Conn};
use crate::model::time::parse_duration;
use crate::pprof::{decode, DecodeLimits};
use clap::{Args, Subcommand, ValueEnum};
use std::io::{IsTerminal, Write};

/// The `query` subcommands.
#[derive(Subcommand, Debug)]
pub enum QueryCommand {
    /// Totals over time per series (`/api/v1/query_range`).
    Range(RangeArgs),
    /// The profile at one time (`/api/v1/profile`): a top-functions table.
    Profile(ProfileArgs),
    /// The matching profiles merged over a range (`/api/v1/profile/merge`).
    Merge(MergeArgs),
    /// B minus A (`/api/v1/profile/diff`): a table of net changes per
    /// function.
    Diff(DiffArgs),
    /// Label names, one per line.
    Labels(MatchArgs),
    /// Values of a label, one per line.
    Values(ValuesArgs),
}

/// `[--start T] [--end T]`, defaulting to the last hour.
#[derive(Args, Debug)]
pub struct Range {
    /// Start of the range [default: END minus 1h].
    #[arg(long)]
    pub start: Option<String>,
    /// End of the range [default: now].
    #[arg(long)]
    pub end: Option<String>,
}

impl Range {
    /// `(start, end)` in ms.
    fn resolve(&self, now: i64) -> Result<(i64, i64), String> {
        resolve_range(self.start.as_deref(), self.end.as_deref(), now)
    }
}

fn resolve_range(start: Option<&str>, end: Option<&str>, now: i64) -> Result<(i64, i64), String> {
    let end = end.map_or(Ok(now), |t| time::parse(t, now))?;
    let start = start.map_or(Ok(end - 3_600_000), |t| time::parse(t, now))?;
    Ok((start, end))
}

/// `query range`.
#[derive(Args, Debug)]
pub struct RangeArgs {
    /// Series selector, e.g. `process_cpu:cpu:nanoseconds:cpu:nanoseconds:delta{job="api"}`.
    pub selector: String,
    #[allow(missing_docs)] // clap would show a field doc as help text
    #[command(flatten)]
    pub range: Range,
    /// Resolution step [default: (END-START)/250, at least 1s].
    #[arg(long)]
    pub step: Option<String>,
    /// Timestamp style of the table, or `json` for the server's raw answer.
    #[arg(long, short = 'o', value_enum, default_value_t = RangeOutput::Rfc3339)]
    pub output: RangeOutput,
}

/// How `query range` prints.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeOutput {
    /// Table with RFC 3339 times.
    Rfc3339,
    /// Table with unix seconds.
    Unix,
    /// The server's JSON.
    Json,
}

/// Profile output options shared by `profile`, `merge` and `diff`.
#[derive(Args, Debug)]
pub struct ProfileOutput {
    /// Rows of the top-functions table.
    #[arg(long, default_value_t = 20)]
    pub top: usize,
    /// Download the server's rendering in this format instead of printing
    /// the table (to --output, or stdout for text formats).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// File to write the download to (implies `--format pprof` when no
    /// --format is given).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<std::path::PathBuf>,
}

/// Server-side profile formats.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Gzipped pprof (binary).
    Pprof,
    /// Flame graph JSON.
    Flamegraph,
    /// Top functions JSON.
    Top,
    /// Folded stacks (text).
    Folded,
    /// Flame graph SVG.
    Svg,
}

/// `query profile`.
#[derive(Args, Debug)]
pub struct ProfileArgs {
    /// Series selector.
    pub selector: String,
    /// Start of the 5-minute window to read [default: now-5m].
    #[arg(long)]
    pub time: Option<String>,
    #[allow(missing_docs)] // clap would show a field doc as help text
    #[command(flatten)]
    pub out: ProfileOutput,
}

/// `query merge`.
#[derive(Args, Debug)]
pub struct MergeArgs {
    /// Series selector.
    pub selector: String,
    #[allow(missing_docs)] // clap would show a field doc as help text
    #[command(flatten)]
    pub range: Range,
    #[allow(missing_docs)] // clap would show a field doc as help text
    #[command(flatten)]
    pub out: ProfileOutput,
}

/// `query diff`: A is the base, B the compared side.
#[derive(Args, Debug)]
pub struct DiffArgs {
    /// Selector of the base side.
    #[arg(long)]
    pub query_a: String,
    /// Selector of the compared side [default: --query-a].
    #[arg(long)]
    pub query_b: Option<String>,
    /// Start of A's range [default: END_A minus 1h].
    #[arg(long)]
    pub start_a: Option<String>,
    /// End of A's range [default: now].
    #[arg(long)]
    pub end_a: Option<String>,
    /// Start of B's range [default: END_B minus 1h].
    #[arg(long)]
    pub start_b: Option<String>,
    /// End of B's range [default: now].
    #[arg(long)]
    pub end_b: Option<String>,
    #[allow(missing_docs)] // clap would show a field doc as help text
    #[command(flatten)]
    pub out: ProfileOutput,
}

/// `--match SEL`, repeatable.
#[derive(Args, Debug)]
pub struct MatchArgs {
    /// Only series matching this selector (repeatable: any of them).
    #[arg(long = "match", value_name = "SELECTOR")]
    pub matches: Vec<String>,
}

/// `query values`.
#[derive(Args, Debug)]
pub struct ValuesArgs {
    /// Label name.
    pub label: String,
    #[allow(missing_docs)] // clap would show a field doc as help text
    #[command(flatten)]
    pub matches: MatchArgs,
}

/// Runs a query subcommand.
pub fn run(cmd: &QueryCommand, conn: &Conn) -> Result<(), String> {
    let client = Client::new(&conn.url)?;
    let now = time::now_ms();
    match cmd {
        QueryCommand::Range(a) => range(&client, a, now),
        QueryCommand::Profile(a) => {
            let t = a.time.as_deref().map(|t| time::parse(t, now)).transpose()?;
            let t = t.map(time::to_param);
            let mut params = vec![("query", a.selector.clone())];
            params.extend(t.map(|t| ("time", t)));
            profile(&client, "/api/v1/profile", params, &a.out)
        }
        QueryCommand::Merge(a) => {
            let (s, e) = a.range.resolve(now)?;
            let params = vec![
                ("query", a.selector.clone()),
                ("start", time::to_param(s)),
                ("end", time::to_param(e)),
            ];
            profile(&client, "/api/v1/profile/merge", params, &a.out)
        }
        QueryCommand::Diff(a) => {
            let (sa, ea) = resolve_range(a.start_a.as_deref(), a.end_a.as_deref(), now)?;
            let (sb, eb) = resolve_range(a.start_b.as_deref(), a.end_b.as_deref(), now)?;
            let params = vec![
                ("query_a", a.query_a.clone()),
                ("start_a", time::to_param(sa)),
                ("end_a", time::to_param(ea)),
                (
                    "query_b",
                    a.query_b.clone().unwrap_or_else(|| a.query_a.clone()),
                ),
                ("start_b", time::to_param(sb)),
                ("end_b", time::to_param(eb)),
            ];
            profile(&client, "/api/v1/profile/diff", params, &a.out)
        }
        QueryCommand::Labels(m) => lines(&client, "/api/v1/labels", m),
        QueryCommand::Values(v) => {
            // Path segment: escape what is not unreserved.
            let name: String = v
                .label
                .bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                        (b as char).to_string()
                    }
                    b => format!("%{b:02X}"),
                })
                .collect();
            lines(&client, &format!("/api/v1/label/{name}/values"), &v.matches)
        }
    }
}

fn lines(client: &Client, path: &str, m: &MatchArgs) -> Result<(), String> {
    let params: Vec<(&str, &str)> = m.matches.iter().map(|s| ("match[]", s.as_str())).collect();
    let data = client.data(path, &params)?;
    let mut out = std::io::stdout().lock();
    for v in data.as_array().into_iter().flatten() {
        writeln!(out, "{}", v.as_str().unwrap_or_default()).map_err(write_err)?;
    }
    Ok(())
}

fn write_err(e: std::io::Error) -> String {
    format!("writing the output: {e}")
}

fn range(client: &Client, a: &RangeArgs, now: i64) -> Result<(), String> {
    let (s, e) = a.range.resolve(now)?;
    let step = match &a.step {
        Some(step) => {
            parse_duration(step).map_err(|e| format!("invalid --step: {e}"))?;
            step.clone()
        }
        None => format!("{}s", time::default_step_ms(s, e) / 1000),
    };
    let (s, e) = (time::to_param(s), time::to_param(e));
    let params = [
        ("query", a.selector.as_str()),
        ("start", s.as_str()),
        ("end", e.as_str()),
        ("step", step.as_str()),
    ];
    let body = client.get("/api/v1/query_range", &params)?;
    let mut out = std::io::stdout().lock();
    if a.output == RangeOutput::Json {
        out.write_all(&body).map_err(write_err)?;
        return writeln!(out).map_err(write_err);
    }
    let data = super::client::json(&body)?;
    let mut first = true;
    for series in data["data"]["result"].as_array().into_iter().flatten() {
        let labels = series["metric"].as_object().into_iter().flatten();
        let labels = label_set(labels.map(|(k, v)| (k.as_str(), v.as_str().unwrap_or_default())));
        let sep = if first { "" } else { "\n" };
        first = false;
        writeln!(out, "{sep}{labels}").map_err(write_err)?;
        for p in series["values"].as_array().into_iter().flatten() {
            let t = p[0].as_f64().unwrap_or(f64::NAN);
            let t = match a.output {
                RangeOutput::Unix => p[0].to_string(),
                _ => time::rfc3339((t * 1000.0).round() as i64),
            };
            writeln!(out, "  {t}  {}", p[1].as_str().unwrap_or_default()).map_err(write_err)?;
        }
    }
    if first {
        eprintln!("no series match {:?} in that range", a.selector);
    }
    Ok(())
}

fn profile(
    client: &Client,
    path: &str,
    mut params: Vec<(&str, String)>,
    out: &ProfileOutput,
) -> Result<(), String> {
    let format = out.format.or(out.output.as_ref().map(|_| Format::Pprof));
    let Some(format) = format else {
        params.push(("format", "pprof".into()));
        let body = client.get(path, &pairs(&params))?;
        let p = decode(&body, &DecodeLimits::default())
            .map_err(|e| format!("cannot decode the server's pprof: {e}"))?;
        let text = table::render(&table::top(&p, path.ends_with("/diff")), out.top);
        return std::io::stdout()
            .write_all(text.as_bytes())
            .map_err(write_err);
    };
    let name = format
        .to_possible_value()
        .map_or_else(|| "pprof".to_string(), |v| v.get_name().to_string());
    params.push(("format", name));
    let binary = format == Format::Pprof;
    if out.output.is_none() && binary && std::io::stdout().is_terminal() {
        return Err(
            "refusing to write a binary pprof to a terminal: use --output FILE or redirect stdout"
                .into(),
        );
    }
    let body = client.get(path, &pairs(&params))?;
    match &out.output {
        Some(file) => {
            std::fs::write(file, &body).map_err(|e| format!("writing {}: {e}", file.display()))
        }
        None => std::io::stdout().write_all(&body).map_err(write_err),
    }
}

fn pairs<'a>(params: &'a [(&'a str, String)]) -> Vec<(&'a str, &'a str)> {
    params.iter().map(|(k, v)| (*k, v.as_str())).collect()
}
