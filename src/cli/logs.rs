//! `fentaris logs tail | summary | verify`: read the audit trail back.

use std::collections::VecDeque;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::{CliError, CliResult, Context, output};
use crate::audit::chain::{ChainKey, split_line};
use crate::audit::read::{Filter, file_set, lines, parse, summarize};
use crate::diagnostics::escape_control;

#[derive(Debug, clap::Subcommand)]
pub enum LogsCommand {
    /// Show audit records (oldest first); -f follows new ones, across rotation
    Tail(TailArgs),
    /// Count requests and denials by subject, server and target over a window
    Summary(SummaryArgs),
    /// Check the tamper-evident chain of the audit files, and compare their end with the
    /// sealed checkpoint `serve` keeps beside the config (a cut-off tail is reported)
    Verify(VerifyArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TailFormat {
    Table,
    Json,
    Raw,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Decision {
    Allow,
    Deny,
}

#[derive(Debug, Clone, clap::Args)]
pub struct Selection {
    /// Only records at or after this time: a duration ago (`1h`, `30m`) or RFC 3339
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Only records of this user
    #[arg(long, value_name = "USER", add = clap_complete::ArgValueCandidates::new(crate::cli::completions::complete_users))]
    pub user: Option<String>,
    /// Only records about this server
    #[arg(long, value_name = "SERVER", add = clap_complete::ArgValueCandidates::new(crate::cli::completions::complete_servers))]
    pub server: Option<String>,
    /// Only records of this tenant
    #[arg(long, value_name = "TENANT")]
    pub tenant: Option<String>,
    /// The audit file (default: `audit.path` of the config, with its rotated files)
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct TailArgs {
    #[command(flatten)]
    pub select: Selection,
    /// How many records to show (the last N that match)
    #[arg(short = 'n', long = "lines", value_name = "N", default_value_t = 20)]
    pub lines: usize,
    /// Keep printing new records as they are written
    #[arg(short, long)]
    pub follow: bool,
    /// Only requests with this decision
    #[arg(long, value_enum)]
    pub decision: Option<Decision>,
    /// Only tool calls whose tool matches this glob (`create_*`)
    #[arg(long, value_name = "GLOB")]
    pub tool: Option<String>,
    /// Only records with this tag (repeatable)
    #[arg(long, value_name = "K=V")]
    pub tag: Vec<String>,
    /// Only records of this event (`request`, `auth.failed`, `session.open`, ...)
    #[arg(long, value_name = "EVENT")]
    pub event: Option<String>,
    /// `table` for people, `json` (one object per line), `raw` (the lines as stored)
    #[arg(long, value_enum, default_value_t = TailFormat::Table)]
    pub format: TailFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ListFormat {
    Table,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct SummaryArgs {
    #[command(flatten)]
    pub select: Selection,
    /// `table` for people, `json` for scripts (the window is --since, default 24h)
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Files to verify, oldest first (default: the configured audit file and its rotated files)
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// `table` (human) or `json`
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
}

pub fn run(ctx: &Context, cmd: LogsCommand) -> CliResult {
    match cmd {
        LogsCommand::Tail(a) => tail(ctx, a),
        LogsCommand::Summary(a) => summary(ctx, a),
        LogsCommand::Verify(a) => verify(ctx, a),
    }
}

/// The configured audit file.
fn audit_path(ctx: &Context, given: Option<&Path>) -> Result<PathBuf, CliError> {
    if let Some(p) = given {
        return Ok(p.to_path_buf());
    }
    let (loaded, config) = ctx.load_valid()?;
    if config.audit.sink == crate::config::AuditSink::Stdout {
        return Err(CliError::usage(
            "audit.sink is `stdout`: records go to the container's log collector, not to a file\nhelp: pass --file PATH to read a saved copy",
        ));
    }
    Ok(loaded.dir.join(&config.audit.path))
}

fn parse_since(s: &str) -> Result<SystemTime, CliError> {
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        return Ok(t);
    }
    let d = humantime::parse_duration(s).map_err(|_| {
        CliError::usage(format!(
            "--since `{s}`: give a duration ago (`1h`, `30m`, `2d`) or an RFC 3339 time (`2026-11-26T10:00:00Z`)"
        ))
    })?;
    Ok(SystemTime::now()
        .checked_sub(d)
        .unwrap_or(SystemTime::UNIX_EPOCH))
}

fn filter(sel: &Selection) -> Result<Filter, CliError> {
    Ok(Filter {
        since: sel.since.as_deref().map(parse_since).transpose()?,
        user: sel.user.clone(),
        server: sel.server.clone(),
        tenant: sel.tenant.clone(),
        ..Filter::default()
    })
}

/// Every record of the set, oldest first, as (line, parsed record).
fn read_all(path: &Path) -> Result<Vec<(String, Value)>, CliError> {
    let Some((_, (), contents)) = live_snapshot(path, lines, |_| ())? else {
        return Err(CliError::usage(format!(
            "no audit log at {}\nhelp: set \"autoLog\": true in the config and run `fentaris serve`",
            super::display_path(path)
        )));
    };
    Ok(contents
        .into_iter()
        .flatten()
        .filter_map(|l| parse(&l).map(|v| (l, v)))
        .collect())
}

fn tail(ctx: &Context, a: TailArgs) -> CliResult {
    let path = audit_path(ctx, a.select.file.as_deref())?;
    let mut f = filter(&a.select)?;
    f.decision = a.decision.map(|d| match d {
        Decision::Allow => "allow".to_string(),
        Decision::Deny => "deny".to_string(),
    });
    f.event = a.event.clone();
    f.tool = a
        .tool
        .as_deref()
        .map(|g| {
            globset::Glob::new(g)
                .map(|g| g.compile_matcher())
                .map_err(|e| CliError::usage(format!("--tool `{g}`: {e}")))
        })
        .transpose()?;
    f.tags = a
        .tag
        .iter()
        .map(|t| {
            t.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| CliError::usage(format!("--tag `{t}`: write it as KEY=VALUE")))
        })
        .collect::<Result<_, _>>()?;
    let color = output::stdout_color();
    let mut last: VecDeque<(String, Value)> = VecDeque::new();
    // The active file is opened first and then followed from where its reading ended.
    let mut follower = Follower::new(&path);
    if follower.cur.is_none() && file_set(&path).is_empty() && !a.follow {
        read_all(&path)?;
    }
    let mut existing = Vec::new();
    for f in file_set(&path).iter().filter(|f| f.as_path() != path) {
        let ls =
            lines(f).map_err(|e| CliError::fatal(format!("cannot read {}: {e}", f.display())))?;
        existing.extend(ls);
    }
    existing.extend(follower.next_lines().map_err(|e| read_error(&path, e))?);
    let existing = existing
        .into_iter()
        .filter_map(|l| parse(&l).map(|v| (l, v)));
    let mut existing_names = (
        std::collections::BTreeSet::new(),
        std::collections::BTreeSet::new(),
    );
    for (line, v) in existing {
        if let Some(u) = v.pointer("/subject/id").and_then(Value::as_str) {
            existing_names.0.insert(u.to_string());
        }
        if let Some(s) = v.get("server").and_then(Value::as_str) {
            existing_names.1.insert(s.to_string());
        }
        if f.matches(&v) {
            last.push_back((line, v));
            if last.len() > a.lines {
                last.pop_front();
            }
        }
    }
    if last.is_empty() {
        hint_unknown_names(ctx, &a.select, &existing_names);
    }
    match (a.format, a.follow) {
        (TailFormat::Table, false) => {
            output::print(&table(last.iter().map(|(_, v)| v), color));
            if let Some(id) = last
                .iter()
                .rev()
                .find_map(|(_, v)| v.get("requestId").and_then(Value::as_str))
            {
                eprintln!(
                    "why a decision was made: fentaris policy explain --request-id {}",
                    escape_control(id)
                );
            }
        }
        _ => {
            for (line, v) in &last {
                print_one(a.format, line, v, color);
            }
        }
    }
    if !a.follow {
        return Ok(());
    }
    loop {
        let new = follower.next_lines().map_err(|e| read_error(&path, e))?;
        if new.is_empty() {
            std::thread::sleep(Duration::from_millis(100));
        }
        for line in new {
            if let Some(v) = parse(&line)
                && f.matches(&v)
            {
                print_one(a.format, &line, &v, color);
            }
        }
    }
}

type SeenNames = (
    std::collections::BTreeSet<String>,
    std::collections::BTreeSet<String>,
);

/// Nothing matched: a `--user` or `--server` that is neither in the config nor in the log is
/// probably a typo. Say so, with the closest name (on stderr; the output stays empty).
fn hint_unknown_names(ctx: &Context, sel: &Selection, seen: &SeenNames) {
    let config = ctx.load().ok().and_then(|l| l.outcome.config);
    let mut users: Vec<String> = seen.0.iter().cloned().collect();
    let mut servers: Vec<String> = seen.1.iter().cloned().collect();
    if let Some(c) = &config {
        users.extend(crate::suggest::config_users(c));
        servers.extend(crate::suggest::config_servers(c));
    }
    users.sort();
    users.dedup();
    servers.sort();
    servers.dedup();
    for (what, given, known) in [
        ("user", &sel.user, &users),
        ("server", &sel.server, &servers),
    ] {
        if let Some(g) = given
            && let Some(m) = crate::suggest::unknown_name(what, g, known)
        {
            eprintln!(
                "note: {}",
                m.replace("in the config", "in the config or the log")
            );
        }
    }
}

fn read_error(path: &Path, e: std::io::Error) -> CliError {
    CliError::fatal(format!("cannot read {}: {e}", path.display()))
}

fn print_one(format: TailFormat, line: &str, v: &Value, color: bool) {
    match format {
        TailFormat::Raw => output::print(&format!("{line}\n")),
        TailFormat::Json => output::print(&format!("{v}\n")),
        TailFormat::Table => output::print(&format!("{}\n", one_line(v, color))),
    }
}

fn field(v: &Value, pointer: &str) -> String {
    escape_control(v.pointer(pointer).and_then(Value::as_str).unwrap_or(""))
}

/// The columns of a record: time, subject, server, target, decision (or event), outcome,
/// reason, latency.
fn columns(v: &Value) -> [String; 9] {
    let time = field(v, "/time").replace('T', " ").replace('Z', "");
    let target = match field(v, "/target") {
        t if t.is_empty() => field(v, "/method"),
        t => t,
    };
    let decision = match field(v, "/decision") {
        d if d.is_empty() => field(v, "/event"),
        d => d.to_uppercase(),
    };
    let latency = v
        .get("latencyMs")
        .and_then(Value::as_f64)
        .map(|l| format!("{l:.1} ms"))
        .unwrap_or_default();
    [
        time,
        field(v, "/subject/id"),
        field(v, "/server"),
        target,
        decision,
        field(v, "/outcome"),
        field(v, "/reason"),
        latency,
        field(v, "/requestId"),
    ]
}

fn paint(decision: &str, color: bool) -> String {
    if !color {
        return decision.to_string();
    }
    let style = match decision {
        "DENY" => anstyle::AnsiColor::Red.on_default().bold(),
        "ALLOW" => anstyle::AnsiColor::Green.on_default(),
        _ => anstyle::Style::new().dimmed(),
    };
    format!("{style}{decision}{style:#}")
}

fn one_line(v: &Value, color: bool) -> String {
    let c = columns(v);
    format!(
        "{}  {:<12} {:<5} {:<14} {}/{}  {}  {}",
        c[0],
        c[1],
        paint(&c[4], color),
        c[5],
        c[2],
        c[3],
        c[6],
        c[7]
    )
}

fn table<'a>(records: impl Iterator<Item = &'a Value>, color: bool) -> String {
    use comfy_table::{Cell, Color};
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY);
    crate::cli::output::fit(&mut t);
    if color {
        t.enforce_styling();
    } else {
        t.force_no_tty();
    }
    t.set_header([
        "time", "subject", "server", "target", "decision", "outcome", "reason", "latency",
        "request",
    ]);
    for v in records {
        let c = columns(v);
        let mut cells: Vec<Cell> = c.iter().map(Cell::new).collect();
        if color {
            cells[4] = match c[4].as_str() {
                "DENY" => Cell::new(&c[4]).fg(Color::Red),
                "ALLOW" => Cell::new(&c[4]).fg(Color::Green),
                _ => Cell::new(&c[4]),
            };
        }
        t.add_row(cells);
    }
    format!("{t}\n")
}

#[cfg(unix)]
fn inode(m: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(m)
}
#[cfg(not(unix))]
fn inode(_: &std::fs::Metadata) -> u64 {
    0
}

/// Reads the active audit file line by line and follows it across rotation: when another
/// file appears at the path, the old one is read to its end first, then the new one from
/// its start. No line is skipped or read twice.
struct Follower {
    path: PathBuf,
    cur: Option<(std::io::BufReader<std::fs::File>, u64)>,
    partial: String,
}

impl Follower {
    fn new(path: &Path) -> Follower {
        let mut f = Follower {
            path: path.to_path_buf(),
            cur: None,
            partial: String::new(),
        };
        f.cur = f.open();
        f
    }

    fn open(&self) -> Option<(std::io::BufReader<std::fs::File>, u64)> {
        let f = std::fs::File::open(&self.path).ok()?;
        let ino = inode(&f.metadata().ok()?);
        Some((std::io::BufReader::new(f), ino))
    }

    /// Whole lines available in the current file.
    fn drain(&mut self, out: &mut Vec<String>) -> std::io::Result<()> {
        let Some((reader, _)) = self.cur.as_mut() else {
            return Ok(());
        };
        loop {
            let mut buf = String::new();
            if reader.read_line(&mut buf)? == 0 {
                return Ok(());
            }
            self.partial.push_str(&buf);
            if self.partial.ends_with('\n') {
                let line = std::mem::take(&mut self.partial);
                out.push(line.trim_end_matches('\n').to_string());
            }
        }
    }

    /// Every whole line written since the last call.
    fn next_lines(&mut self) -> std::io::Result<Vec<String>> {
        let mut out = Vec::new();
        self.drain(&mut out)?;
        let rotated = match (&self.cur, std::fs::metadata(&self.path)) {
            (None, Ok(_)) => true,
            (Some((_, ino)), Ok(m)) => inode(&m) != *ino,
            (_, Err(_)) => false,
        };
        if rotated {
            // Lines written to the old file just before it was renamed, then every file
            // rotated after it (several rotations can happen between two polls), then the
            // new file.
            self.drain(&mut out)?;
            self.partial.clear();
            for _ in 0..10_000 {
                let Some((_, ino)) = &self.cur else { break };
                let ino = *ino;
                let at = (1..10_000u32)
                    .map(|i| crate::audit::writer::rotated(&self.path, i))
                    .take_while(|p| std::fs::symlink_metadata(p).is_ok())
                    .position(|p| std::fs::metadata(&p).is_ok_and(|m| inode(&m) == ino));
                match at {
                    // `cur` is `.(k+1)`, not the newest rotated file: read `.k` next.
                    Some(k) if k >= 1 => {
                        let next = crate::audit::writer::rotated(&self.path, k as u32);
                        let Ok(f) = std::fs::File::open(&next) else {
                            break;
                        };
                        let Ok(m) = f.metadata() else { break };
                        self.cur = Some((std::io::BufReader::new(f), inode(&m)));
                        self.drain(&mut out)?;
                        self.partial.clear();
                    }
                    _ => break,
                }
            }
            self.cur = self.open();
            self.drain(&mut out)?;
        }
        Ok(out)
    }
}

fn summary(ctx: &Context, a: SummaryArgs) -> CliResult {
    let path = audit_path(ctx, a.select.file.as_deref())?;
    let mut sel = a.select.clone();
    if sel.since.is_none() {
        sel.since = Some("24h".into());
    }
    let f = filter(&sel)?;
    let records = read_all(&path)?;
    let s = summarize(records.iter().map(|(_, v)| v).filter(|v| f.matches(v)));
    if a.format == ListFormat::Json {
        output::print_json(&s);
        return Ok(());
    }
    let mut out = format!(
        "since {}: {} requests, {} allowed, {} denied; {} failed authentications\n",
        sel.since.as_deref().unwrap_or("24h"),
        s.requests,
        s.allowed,
        s.denied,
        s.auth_failures
    );
    if !s.denials.is_empty() {
        let mut t = comfy_table::Table::new();
        t.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY);
        crate::cli::output::fit(&mut t);
        t.force_no_tty();
        t.set_header(["denials", "subject", "server", "target", "last"]);
        for d in &s.denials {
            t.add_row([
                d.count.to_string(),
                escape_control(&d.subject),
                escape_control(&d.server),
                escape_control(&d.target),
                escape_control(&d.last),
            ]);
        }
        out.push_str(&format!("{t}\n"));
    }
    output::print(&out);
    Ok(())
}

/// The chain algorithm a file was written with (from its `file.start` record).
fn algorithm_of(lines: &[String]) -> Option<String> {
    let first = lines.first()?;
    let (body, _) = split_line(first)?;
    let v: Value = serde_json::from_str(&format!("{body}}}")).ok()?;
    v.pointer("/detail/chain")?.as_str().map(str::to_string)
}

/// The checkpoint that applies to a verified set: (checkpoint file, the log's name in it),
/// when the set ends with the configured audit file.
fn checkpoint_for(ctx: &Context, files: &[PathBuf]) -> Option<(PathBuf, String)> {
    // Quietly: with explicit files the config may be absent or broken (no diagnostics here).
    let loaded = ctx.load().ok()?;
    let config = loaded
        .outcome
        .config
        .as_ref()
        .filter(|_| !loaded.outcome.has_errors())?;
    if config.audit.sink == crate::config::AuditSink::Stdout {
        return None;
    }
    let path = loaded.dir.join(&config.audit.path);
    let last = files.last()?;
    let same = last == &path
        || matches!((last.canonicalize(), path.canonicalize()), (Ok(a), Ok(b)) if a == b);
    same.then(|| {
        (
            crate::audit::checkpoint::path_for(&loaded.dir),
            crate::audit::checkpoint::log_name(&loaded.dir, &path),
        )
    })
}

/// Whether a file's `file.start` says a checkpoint is kept for it.
fn has_checkpoint_marker(lines: &[String]) -> bool {
    lines
        .first()
        .and_then(|l| split_line(l))
        .and_then(|(b, _)| serde_json::from_str::<Value>(&format!("{b}}}")).ok())
        .is_some_and(|v| v.pointer("/detail/checkpoint").is_some())
}

/// Compare a verified set with its checkpoint: `Ok(status)` for the report, `Err(problem)`
/// when the checkpoint shows the log was cut, replaced, or the checkpoint itself was
/// deleted, edited or forged.
/// The checkpoint, read *before* the log files: a running `serve` only checkpoints what it
/// already wrote, so reading in this order never mistakes a live log for a cut one.
type PreRead = Option<(PathBuf, String, std::io::Result<String>)>;

fn pre_read_checkpoint(ctx: &Context, files: &[PathBuf]) -> PreRead {
    let (cp_path, log_name) = checkpoint_for(ctx, files)?;
    let text = crate::audit::checkpoint::read_nofollow(&cp_path);
    Some((cp_path, log_name, text))
}

fn check_against_checkpoint(
    pre: PreRead,
    files: &[PathBuf],
    contents: &[Vec<String>],
    key: &ChainKey,
    last_seq: Option<u64>,
) -> Result<String, String> {
    use crate::audit::checkpoint::{Checkpoint, CheckpointError, compare, no_symlink_message};
    let Some((cp_path, log_name, text)) = pre else {
        return Ok(
            "no checkpoint applies to these files: a cut-off tail cannot be detected from the files alone".into(),
        );
    };
    let newest = files
        .last()
        .map(|f| super::display_path(f))
        .unwrap_or_default();
    let cp_name = super::display_path(&cp_path);
    let marked = contents.iter().any(|l| has_checkpoint_marker(l));
    let loaded = match text {
        Ok(t) => Checkpoint::open(&t, key, &cp_path).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CheckpointError::Unreadable {
            path: cp_name.clone(),
            why: no_symlink_message(&e),
        }),
    };
    match loaded {
        Err(e) => Err(e.to_string()),
        Ok(None) if marked => Err(format!(
            "the audit checkpoint {cp_name} is missing, but {newest} was written with one: it was deleted (a cut-off tail would go unnoticed)"
        )),
        Ok(None) => Ok(format!(
            "no checkpoint at {cp_name} (written by `fentaris serve` from this version on): a cut-off tail cannot be detected yet"
        )),
        Ok(Some(cp)) if cp.log != log_name => Ok(format!(
            "the checkpoint {cp_name} is for another log ({}): not compared",
            cp.log
        )),
        Ok(Some(cp)) => match compare(&cp, contents, last_seq) {
            Some(f) => Err(format!(
                "{} (checkpoint {cp_name}, written {})",
                f.message(&newest),
                cp.time
            )),
            None => Ok(format!(
                "matches the checkpoint {cp_name} (seq {}, written {}){}",
                cp.seq,
                cp.time,
                copied_note(files, contents, &cp)
            )),
        },
    }
}

/// When the checkpointed record is in the newest file but that file has another identity
/// than the checkpoint saw: it was copied or restored (a note, not a failure).
fn copied_note(
    files: &[PathBuf],
    contents: &[Vec<String>],
    cp: &crate::audit::checkpoint::Checkpoint,
) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let holds = contents.last().is_some_and(|lines| {
            lines.iter().any(|l| {
                parse(l).and_then(|v| v.get("seq").and_then(Value::as_u64)) == Some(cp.seq)
            })
        });
        if let Some(m) = files.last().and_then(|f| std::fs::metadata(f).ok())
            && holds
            && (m.dev(), m.ino()) != (cp.file.dev, cp.file.ino)
        {
            return "\nnote: the newest file is not the file the checkpoint was written for (another inode): it was copied or restored since".into();
        }
    }
    let _ = (files, contents, cp);
    String::new()
}

/// The identity (device, inode, path) of every file of a set: a rotation renames them.
fn identities(files: &[PathBuf]) -> Vec<Option<(u64, u64)>> {
    use std::os::unix::fs::MetadataExt;
    files
        .iter()
        .map(|f| {
            std::fs::symlink_metadata(f)
                .ok()
                .map(|m| (m.dev(), m.ino()))
        })
        .collect()
}

/// A live log read at one moment: its files, what `before` returned for them, their lines.
type Snapshot<T> = (Vec<PathBuf>, T, Vec<Vec<String>>);

/// The files of a live log and their lines (the newest read by `last`), read as one
/// consistent snapshot: a rotation that happens while they are read (every file is renamed
/// one step) is noticed by the files' identities, and the read starts over (bounded).
/// `before` runs on each attempt's file set before the files are read. `None`: no log.
fn live_snapshot<T>(
    path: &Path,
    last: fn(&Path) -> std::io::Result<Vec<String>>,
    mut before: impl FnMut(&[PathBuf]) -> T,
) -> Result<Option<Snapshot<T>>, CliError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let files = file_set(path);
        if files.is_empty() {
            return Ok(None);
        }
        let ids = identities(&files);
        let pre = before(&files);
        let read = files
            .iter()
            .enumerate()
            .map(|(i, f)| {
                if i + 1 == files.len() {
                    last(f)
                } else {
                    lines(f)
                }
                .map_err(|e| (f.clone(), e))
            })
            .collect::<Result<Vec<_>, _>>();
        let stable = file_set(path) == files && identities(&files) == ids;
        match read {
            Ok(contents) if stable => return Ok(Some((files, pre, contents))),
            Err((f, e)) if stable || attempt >= 50 => {
                return Err(CliError::fatal(format!("cannot read {}: {e}", f.display())));
            }
            Ok(_) if attempt >= 50 => {
                return Err(CliError::fatal(format!(
                    "the audit log at {} kept rotating while it was read; try again",
                    super::display_path(path)
                )));
            }
            _ => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
    }
}

fn verify(ctx: &Context, a: VerifyArgs) -> CliResult {
    let (mut files, pre, contents) = if a.files.is_empty() {
        let path = audit_path(ctx, None)?;
        // The active file of a running serve may end in a write in progress.
        live_snapshot(&path, crate::audit::read::whole_lines, |files| {
            pre_read_checkpoint(ctx, files)
        })?
        .ok_or_else(|| CliError::usage(format!("no audit log at {}", super::display_path(&path))))?
    } else {
        let files = a.files.clone();
        let pre = pre_read_checkpoint(ctx, &files);
        let contents = files
            .iter()
            .map(|f| {
                lines(f).map_err(|e| CliError::fatal(format!("cannot read {}: {e}", f.display())))
            })
            .collect::<Result<Vec<_>, _>>()?;
        (files, pre, contents)
    };
    let mut contents = contents;
    if a.files.is_empty() && contents.len() > 1 && contents.last().is_some_and(Vec::is_empty) {
        // A rotation in progress: the new file exists, its file.start not yet written.
        contents.pop();
        files.pop();
    }
    // The key comes from the deployment, never from the file: where there is a vault the
    // chain must be an HMAC under its key (a file claiming a plain hash chain is refused by
    // `verify` as chained with the wrong algorithm).
    let has_vault = ctx.vault_path().map(|(_, p)| p.exists()).unwrap_or(false);
    let claims_hmac =
        contents.first().and_then(|l| algorithm_of(l)).as_deref() == Some("hmac-sha256");
    let key = if has_vault || claims_hmac {
        let (_, vault) = ctx.open_vault().map_err(|e| {
            CliError::fatal(format!(
                "this audit log is chained with the vault's key, so verifying it needs the vault: {}",
                e.message
            ))
        })?;
        ChainKey::Hmac(vault.audit_key())
    } else {
        ChainKey::Sha256
    };
    let names: Vec<String> = files.iter().map(|f| super::display_path(f)).collect();
    match crate::audit::chain::verify(&contents, &key) {
        Ok(v) => {
            let checkpoint = check_against_checkpoint(pre, &files, &contents, &key, v.last_seq);
            match (checkpoint, a.format) {
                (Err(problem), ListFormat::Json) => {
                    output::print_json(&serde_json::json!({
                        "ok": false, "files": names, "file": names.last(), "records": v.records,
                        "lastSeq": v.last_seq, "message": problem,
                    }));
                    Err(CliError::silent(1))
                }
                (Err(problem), _) => Err(CliError::findings(format!(
                    "error: {problem}\nhelp: the audit log was altered after it was written; keep the files and the checkpoint as evidence"
                ))),
                (Ok(status), ListFormat::Json) => {
                    output::print_json(&serde_json::json!({
                        "ok": true, "files": names, "records": v.records,
                        "algorithm": v.algorithm, "lastSeq": v.last_seq, "last": v.last,
                        "checkpoint": status,
                    }));
                    Ok(())
                }
                (Ok(status), _) => {
                    output::print(&format!(
                        "ok: {} records in {} file{} ({}), last seq {}, last chain value {}\ncheckpoint: {status}\n",
                        v.records,
                        files.len(),
                        if files.len() == 1 { "" } else { "s" },
                        v.algorithm,
                        v.last_seq.map_or("-".into(), |s| s.to_string()),
                        v.last
                    ));
                    Ok(())
                }
            }
        }
        Err(b) => {
            let file = names.get(b.file).cloned().unwrap_or_default();
            if a.format == ListFormat::Json {
                output::print_json(&serde_json::json!({
                    "ok": false, "files": names, "file": file, "line": b.line, "message": b.message,
                }));
                Err(CliError::silent(1))
            } else {
                Err(CliError::findings(format!(
                    "error: {file}:{}: {}\nhelp: the audit log was altered at or before this line; keep the files as evidence",
                    b.line, b.message
                )))
            }
        }
    }
}
