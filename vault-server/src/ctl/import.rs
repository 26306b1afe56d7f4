//! `vaultctl import`: JSONL or CSV citizens into the vault. Each bad row is reported with
//! its line and leaves the store unchanged for that row; `--strict` checks the whole file
//! first and imports nothing if any row is bad. Idempotent (unchanged values are not
//! rewritten) and resumable (a checkpoint per file hash records the last committed line).
//! Messages never quote a citizen id or value.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::backend::AnyStore;
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use vault_core::policy::{FieldType, PolicySet};
use vault_core::vault::{AuditedWrites, PreparedWrites, RecordWrite, WriteOutcome};
use vault_core::{CitizenId, Vault};

use super::{Context, CtlError, CtlResult, out, progress_bar};

const BATCH: usize = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonRow {
    citizen_id: String,
    fields: Map<String, Value>,
}

/// One row before validation.
struct RawRow {
    citizen_id: String,
    fields: Map<String, Value>,
}

/// A row with its line number, or why the row is unreadable.
type NumberedRow = (u64, Result<RawRow, String>);

/// Rows of a JSONL or CSV file, each with its 1-based line number.
enum Rows {
    Jsonl {
        reader: BufReader<File>,
        line: u64,
        buf: Vec<u8>,
    },
    Csv {
        reader: csv::Reader<File>,
        columns: Vec<(String, FieldType)>,
        id_col: usize,
        record: csv::ByteRecord,
        /// Lines before the reader's first (it starts again after an unclosed quote).
        line_base: u64,
    },
}

/// A CSV reader for data rows (no header row) over `file` from byte `offset`.
fn csv_rows_from(mut file: File, offset: u64) -> std::io::Result<csv::Reader<File>> {
    use std::io::Seek as _;
    file.seek(std::io::SeekFrom::Start(offset))?;
    Ok(csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(false)
        .from_reader(file))
}

fn open_file(path: &Path) -> Result<File, CtlError> {
    File::open(path).map_err(|e| CtlError(format!("{}: cannot open: {e}", path.display())))
}

/// The file to import: a path (`vaultctl` importing directly), or a file the operator's
/// `vaultctl` opened and passed to the running server over the admin socket, with the name
/// it was given (for the format and for messages).
#[derive(Debug)]
pub struct Source {
    name: PathBuf,
    passed: Option<File>,
}

impl Source {
    /// A file by path.
    pub fn path(path: &Path) -> Self {
        Self {
            name: path.to_owned(),
            passed: None,
        }
    }

    /// A file already open (passed over the admin socket), named as the operator named it.
    pub fn passed(name: &Path, file: File) -> Self {
        Self {
            name: name.to_owned(),
            passed: Some(file),
        }
    }

    fn shown(&self) -> String {
        self.name.display().to_string()
    }

    /// The file from its start (each stage reads it once, one after the other).
    fn open(&self) -> Result<File, CtlError> {
        use std::io::Seek as _;
        match &self.passed {
            None => open_file(&self.name),
            Some(f) => f
                .try_clone()
                .and_then(|mut f| f.rewind().map(|()| f))
                .map_err(|e| CtlError(format!("{}: cannot read: {e}", self.shown()))),
        }
    }
}

/// Where an import reports: its result lines, the rows it rejects, and its progress.
pub trait Report: Sync {
    /// A line of the result (stdout for `vaultctl`).
    fn say(&self, text: &str) -> CtlResult;
    /// A rejected row or a warning (stderr for `vaultctl`).
    fn warn(&self, text: &str);
    /// Rows committed through `line` of `total` lines.
    fn progress(&self, line: u64, total: u64, committed: u64);
}

/// `vaultctl` importing directly: a progress bar on a terminal, a line now and then when
/// stderr is not one.
struct Terminal {
    bar: indicatif::ProgressBar,
    plain: bool,
    reports: std::sync::atomic::AtomicU64,
}

impl Report for Terminal {
    fn say(&self, text: &str) -> CtlResult {
        self.bar.suspend(|| out(text))
    }
    fn warn(&self, text: &str) {
        self.bar.suspend(|| {
            let _ = writeln!(std::io::stderr(), "{text}");
        });
    }
    fn progress(&self, line: u64, total: u64, committed: u64) {
        self.bar.set_position(line);
        let n = self
            .reports
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        if self.plain && committed > 0 && (n.is_power_of_two() || n.is_multiple_of(100)) {
            let _ = writeln!(
                std::io::stderr(),
                "import: {committed} rows committed through line {line} of {total}"
            );
        }
    }
}

impl Rows {
    fn open(source: &Source, policy: &PolicySet) -> Result<Self, CtlError> {
        let shown = source.shown();
        match source.name.extension().and_then(|e| e.to_str()) {
            Some("jsonl" | "ndjson") => Ok(Self::Jsonl {
                reader: BufReader::with_capacity(1 << 20, source.open()?),
                line: 0,
                buf: Vec::with_capacity(4096),
            }),
            Some("csv") => {
                let mut reader = csv::ReaderBuilder::new()
                    .has_headers(true)
                    .flexible(false)
                    .from_reader(source.open()?);
                let headers = reader
                    .byte_headers()
                    .map_err(|e| {
                        CtlError(format!(
                            "{shown}:1: cannot read the header row: {}",
                            csv_reason(&e)
                        ))
                    })?
                    .clone();
                let mut columns = Vec::new();
                let mut id_col = None;
                for (i, h) in headers.iter().enumerate() {
                    let name = std::str::from_utf8(h)
                        .map_err(|_| CtlError(format!("{shown}:1: header is not valid UTF-8")))?
                        .trim();
                    if name == "citizen_id" {
                        if id_col.replace(i).is_some() {
                            return Err(CtlError(format!(
                                "{shown}:1: column `citizen_id` appears twice"
                            )));
                        }
                        columns.push((String::new(), FieldType::String));
                        continue;
                    }
                    let def = policy.field(name).ok_or_else(|| {
                        let printable = vault_core::FieldName::parse(name)
                            .map_or("<invalid name>".to_owned(), |n| n.to_string());
                        CtlError(format!(
                            "{shown}:1: unknown field `{printable}` in the header row"
                        ))
                    })?;
                    if columns.iter().any(|(n, _)| n == name) {
                        return Err(CtlError(format!(
                            "{shown}:1: column `{name}` appears twice"
                        )));
                    }
                    columns.push((name.to_owned(), def.ty.clone()));
                }
                let id_col = id_col.ok_or_else(|| {
                    CtlError(format!(
                        "{shown}:1: the header row has no `citizen_id` column"
                    ))
                })?;
                Ok(Self::Csv {
                    reader,
                    columns,
                    id_col,
                    record: csv::ByteRecord::new(),
                    line_base: 0,
                })
            }
            _ => Err(CtlError(format!(
                "{shown}: unknown format: the file name must end in .jsonl or .csv"
            ))),
        }
    }

    /// The next row: `None` at the end, `Some((line, Err(reason)))` for a bad row.
    fn next_row(&mut self) -> Result<Option<NumberedRow>, CtlError> {
        match self {
            Self::Jsonl { reader, line, buf } => loop {
                buf.clear();
                let n = reader
                    .read_until(b'\n', buf)
                    .map_err(|e| CtlError(format!("read error after line {line}: {e}")))?;
                if n == 0 {
                    return Ok(None);
                }
                *line += 1;
                while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    buf.pop();
                }
                if buf.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return Ok(Some((*line, parse_json_line(buf))));
            },
            Self::Csv {
                reader,
                columns,
                id_col,
                record,
                line_base,
            } => {
                let read = reader.read_byte_record(record);
                let start = match &read {
                    Ok(_) => record.position().cloned(),
                    Err(e) => e.position().cloned(),
                };
                let line = *line_base + start.as_ref().map_or(0, csv::Position::line);
                // A quote left open swallows the lines after it into one field: name the
                // line where it opened and read on from the next line.
                let swallowed = match &read {
                    Ok(true) => record.iter().any(|f| f.contains(&b'\n')),
                    Err(e) => {
                        matches!(e.kind(), csv::ErrorKind::UnequalLengths { .. })
                            && reader.position().line()
                                > start.as_ref().map_or(0, csv::Position::line) + 1
                    }
                    Ok(false) => false,
                };
                if swallowed && let Some(p) = start {
                    let file = reader
                        .get_ref()
                        .try_clone()
                        .map_err(|e| CtlError(format!("read error at line {line}: {e}")))?;
                    let next = next_line_offset(&file, p.byte())
                        .map_err(|e| CtlError(format!("read error at line {line}: {e}")))?;
                    if let Some(next) = next {
                        *reader = csv_rows_from(file, next)
                            .map_err(|e| CtlError(format!("read error at line {line}: {e}")))?;
                        *line_base = line;
                    } else {
                        *reader = csv_rows_from(file, u64::MAX)
                            .map_err(|e| CtlError(format!("read error at line {line}: {e}")))?;
                    }
                    return Ok(Some((
                        line,
                        Err("a quoted value is not closed on this line (a missing `\"`?); the lines after it are read as rows of their own".into()),
                    )));
                }
                match read {
                    Ok(false) => Ok(None),
                    Ok(true) => Ok(Some((line, csv_row(record, columns, *id_col)))),
                    Err(e) => {
                        if matches!(e.kind(), csv::ErrorKind::Io(_)) {
                            return Err(CtlError(format!(
                                "read error at line {line}: {}",
                                csv_reason(&e)
                            )));
                        }
                        Ok(Some((line, Err(csv_reason(&e)))))
                    }
                }
            }
        }
    }
}

/// The byte offset just past the first newline at or after `from`, if there is one.
fn next_line_offset(file: &File, from: u64) -> std::io::Result<Option<u64>> {
    use std::os::unix::fs::FileExt as _;
    let mut buf = vec![0u8; 64 * 1024];
    let mut at = from;
    loop {
        let n = file.read_at(&mut buf, at)?;
        if n == 0 {
            return Ok(None);
        }
        if let Some(i) = buf
            .get(..n)
            .and_then(|b| b.iter().position(|&c| c == b'\n'))
        {
            return Ok(Some(at + i as u64 + 1));
        }
        at += n as u64;
    }
}

fn csv_reason(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => {
            format!("row has {len} columns, the header has {expected_len}")
        }
        csv::ErrorKind::Utf8 { .. } => "invalid UTF-8".into(),
        csv::ErrorKind::Io(io) => io.to_string(),
        _ => "malformed CSV".into(),
    }
}

fn parse_json_line(bytes: &[u8]) -> Result<RawRow, String> {
    match serde_json::from_slice::<JsonRow>(bytes) {
        Ok(r) => Ok(RawRow {
            citizen_id: r.citizen_id,
            fields: r.fields,
        }),
        // serde_json's own messages can quote the input, so they are never shown.
        Err(_) if std::str::from_utf8(bytes).is_err() => {
            let at = std::str::from_utf8(bytes)
                .err()
                .map_or(0, |e| e.valid_up_to());
            Err(format!("invalid UTF-8 at byte {}", at + 1))
        }
        Err(e) => Err(match e.classify() {
            serde_json::error::Category::Data => {
                "expected {\"citizen_id\": \"<12 digits>\", \"fields\": {...}} and nothing else"
                    .into()
            }
            _ => format!("malformed JSON at column {}", e.column()),
        }),
    }
}

fn csv_row(
    record: &csv::ByteRecord,
    columns: &[(String, FieldType)],
    id_col: usize,
) -> Result<RawRow, String> {
    let mut citizen_id = String::new();
    let mut fields = Map::new();
    for (i, cell) in record.iter().enumerate() {
        let text =
            std::str::from_utf8(cell).map_err(|_| format!("invalid UTF-8 in column {}", i + 1))?;
        if i == id_col {
            citizen_id = text.to_owned();
            continue;
        }
        let Some((name, ty)) = columns.get(i) else {
            return Err("more columns than the header".into());
        };
        if text.is_empty() {
            continue;
        }
        let value = match ty {
            FieldType::Integer => text
                .trim()
                .parse::<i64>()
                .map(Value::from)
                .map_err(|_| format!("invalid value for field `{name}`: expected an integer"))?,
            FieldType::Boolean => match text.trim() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => {
                    return Err(format!(
                        "invalid value for field `{name}`: expected true or false"
                    ));
                }
            },
            FieldType::StringList => Value::Array(
                text.split(';')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| Value::String(s.to_owned()))
                    .collect(),
            ),
            FieldType::String | FieldType::Date | FieldType::Enum(_) => {
                Value::String(text.to_owned())
            }
        };
        fields.insert(name.clone(), value);
    }
    Ok(RawRow { citizen_id, fields })
}

/// Parses and checks one JSONL import row against `policy` as `vaultctl import` does, short
/// of the store (duplicates need it): the `Err` is the operator's message for the row, which
/// never quotes the input (the fuzz target and its corpus replay call it).
pub fn check_jsonl_row(policy: &PolicySet, bytes: &[u8]) -> Result<(), String> {
    let raw = parse_json_line(bytes)?;
    CitizenId::parse(&raw.citizen_id).map_err(|e| e.to_string())?;
    if raw.fields.is_empty() {
        return Err("row has no fields".into());
    }
    policy
        .validate_fields(raw.fields)
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// SHA-256 of the file (its resume identity) and its line count (for the progress bar).
fn scan(source: &Source) -> Result<([u8; 32], u64), CtlError> {
    let mut f = source.open()?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut lines = 0u64;
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| CtlError(format!("{}: read error: {e}", source.shown())))?;
        if n == 0 {
            break;
        }
        let chunk = buf.get(..n).unwrap_or_default();
        hasher.update(chunk);
        lines += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
    }
    Ok((hasher.finalize().into(), lines))
}

/// A validated row, or why it was refused.
fn check_row(
    vault: &Vault<AnyStore>,
    raw: RawRow,
    line: u64,
    seen: &mut HashMap<u128, u64>,
) -> Result<RecordWrite, String> {
    let citizen = CitizenId::parse(&raw.citizen_id).map_err(|e| e.to_string())?;
    if raw.fields.is_empty() {
        return Err("row has no fields".into());
    }
    let key = vault.blind(&citizen).prefix_u128();
    let write = vault
        .validate_write(citizen, raw.fields)
        .map_err(|e| e.to_string())?;
    if let Some(first) = seen.get(&key) {
        return Err(format!("duplicate citizen id (first on line {first})"));
    }
    seen.insert(key, line);
    Ok(write)
}

/// A batch of rows with the rows refused on the way: validated by the reader, sealed by a
/// sealer, committed in `seq` order by the writer.
struct Chunk {
    seq: u64,
    writes: Vec<RecordWrite>,
    prepared: Option<PreparedWrites>,
    rejected: Vec<(u64, String)>,
    skipped: u64,
    last_line: u64,
}

impl Chunk {
    fn new(seq: u64) -> Self {
        Self {
            seq,
            writes: Vec::with_capacity(BATCH),
            prepared: None,
            rejected: Vec::new(),
            skipped: 0,
            last_line: 0,
        }
    }
}

/// Threads that seal batches in parallel.
const SEALERS: usize = 2;

/// The reader stage: parse, validate, de-duplicate, and hand over batches of `BATCH` rows.
fn read_chunks(
    vault: &Vault<AnyStore>,
    policy: &PolicySet,
    file: &Source,
    resume_after: u64,
    total_lines: u64,
    tx: &std::sync::mpsc::SyncSender<Chunk>,
) -> CtlResult {
    let mut rows = Rows::open(file, policy)?;
    let capacity = usize::try_from(total_lines).unwrap_or(0).min(1 << 24);
    let mut seen: HashMap<u128, u64> = HashMap::with_capacity(capacity);
    let mut chunk = Chunk::new(0);
    while let Some((line, row)) = rows.next_row()? {
        chunk.last_line = line;
        if line <= resume_after {
            // Committed by the interrupted run; remember the id for duplicate detection.
            if let Some(id) = row.ok().and_then(|r| CitizenId::parse(&r.citizen_id).ok()) {
                seen.entry(vault.blind(&id).prefix_u128()).or_insert(line);
            }
            chunk.skipped += 1;
            continue;
        }
        match row.and_then(|r| check_row(vault, r, line, &mut seen)) {
            Ok(w) => chunk.writes.push(w),
            Err(why) => chunk.rejected.push((line, why)),
        }
        if chunk.writes.len() >= BATCH {
            let next = Chunk::new(chunk.seq + 1);
            if tx.send(std::mem::replace(&mut chunk, next)).is_err() {
                return Ok(()); // the writer stopped; it reports why
            }
        }
    }
    let _ = tx.send(chunk);
    Ok(())
}

/// The sealer stage: seal each batch against the stored records (CPU-bound, parallel).
fn seal_chunks(
    vault: &Vault<AnyStore>,
    rx: &std::sync::Mutex<std::sync::mpsc::Receiver<Chunk>>,
    tx: &std::sync::mpsc::SyncSender<Result<Chunk, CtlError>>,
) {
    loop {
        let next = rx.lock().ok().and_then(|r| r.recv().ok());
        let Some(mut chunk) = next else { return };
        let result = if chunk.writes.is_empty() {
            Ok(chunk)
        } else {
            match vault.prepare_writes(&chunk.writes) {
                Ok(p) => {
                    chunk.prepared = Some(p);
                    chunk.writes = Vec::new();
                    Ok(chunk)
                }
                Err(e) => Err(CtlError::from(e)),
            }
        };
        if tx.send(result).is_err() {
            return;
        }
    }
}

#[derive(Default)]
struct Stats {
    created: u64,
    updated: u64,
    unchanged: u64,
    rejected: u64,
    skipped: u64,
}

/// The storer stage: in file order, each batch stored once its audit entries are durable,
/// then flushed, then the checkpoint moved past it (data first: never ahead of durable rows).
fn store_chunks(
    vault: &Vault<AnyStore>,
    hash: &[u8; 32],
    total_lines: u64,
    report: &dyn Report,
    rx: std::sync::mpsc::Receiver<(AuditedWrites, u64)>,
) -> Result<Stats, CtlError> {
    let mut stats = Stats::default();
    for (audited, last_line) in rx {
        for outcome in vault.store_writes(audited)? {
            match outcome {
                WriteOutcome::Created(_) => stats.created += 1,
                WriteOutcome::Updated(_) => stats.updated += 1,
                WriteOutcome::Unchanged(_) => stats.unchanged += 1,
            }
        }
        vault.flush()?;
        vault.set_import_checkpoint(hash, Some(last_line))?;
        vault.flush()?;
        report.progress(
            last_line,
            total_lines,
            stats.created + stats.updated + stats.unchanged,
        );
    }
    Ok(stats)
}

pub(super) fn run(ctx: &Context, file: &Path, strict: bool) -> CtlResult {
    let source = Source::path(file);
    let (_, total_lines) = scan(&source)?;
    let vault = ctx.open()?;
    let report = Terminal {
        bar: progress_bar(total_lines, "importing"),
        plain: !std::io::stderr().is_terminal(),
        reports: std::sync::atomic::AtomicU64::new(0),
    };
    let result = import(
        &vault,
        &ctx.actor()?,
        &|| ctx.now(),
        &source,
        strict,
        &report,
    );
    report.bar.finish_and_clear();
    result
}

/// Imports `file` into an open vault, as `actor`, reporting to `report`. Beside a serving
/// vault the caller holds `Vault::lock_writes` throughout (the pipeline prepares and
/// commits separately).
pub fn import(
    vault: &Vault<AnyStore>,
    actor: &vault_core::audit::Actor,
    now: &(dyn Fn() -> vault_core::Timestamp + Sync),
    file: &Source,
    strict: bool,
    report: &dyn Report,
) -> CtlResult {
    let shown = file.shown();
    let (hash, total_lines) = scan(file)?;
    let policy = vault.policy();

    if strict {
        let mut rows = Rows::open(file, &policy)?;
        let mut seen = HashMap::new();
        let mut n = 0u64;
        while let Some((line, row)) = rows.next_row()? {
            if let Err(why) = row.and_then(|r| check_row(vault, r, line, &mut seen)) {
                return Err(CtlError(format!(
                    "{shown}:{line}: {why} (--strict: nothing was imported)"
                )));
            }
            n += 1;
        }
        report.say(&format!("{shown}: all {n} rows are valid\n"))?;
    }

    let resume_after = vault.import_checkpoint(&hash)?.unwrap_or(0);
    if resume_after > 0 {
        report.say(&format!(
            "{shown}: resuming an interrupted import after line {resume_after}\n"
        ))?;
    }
    let started = Instant::now();
    let mut stats = Stats::default();

    // A pipeline over both cores: one reader parses and validates, `SEALERS` threads seal,
    // this thread puts the batches back in file order and queues their audit entries, and
    // a storer waits for each batch's entries to be durable, stores it, flushes and moves the
    // checkpoint, while this thread queues the next batch's entries. Bounded channels keep
    // memory flat.
    let (row_tx, row_rx) = std::sync::mpsc::sync_channel::<Chunk>(4);
    let (sealed_tx, sealed_rx) = std::sync::mpsc::sync_channel::<Result<Chunk, CtlError>>(4);
    let (audited_tx, audited_rx) = std::sync::mpsc::sync_channel::<(AuditedWrites, u64)>(2);
    // Shared by the sealers and dropped with the last of them, so a reader blocked on a full
    // channel is released (its send fails) when the sealers stop early.
    let row_rx = std::sync::Arc::new(std::sync::Mutex::new(row_rx));
    let stored = std::thread::scope(|scope| -> Result<Stats, CtlError> {
        let vault_ref = vault;
        let policy_ref = &*policy;
        let reader = scope.spawn(move || {
            read_chunks(
                vault_ref,
                policy_ref,
                file,
                resume_after,
                total_lines,
                &row_tx,
            )
        });
        for _ in 0..SEALERS {
            let (rx, tx) = (std::sync::Arc::clone(&row_rx), sealed_tx.clone());
            scope.spawn(move || seal_chunks(vault_ref, &rx, &tx));
        }
        drop(row_rx);
        drop(sealed_tx);
        let storer = scope.spawn(|| store_chunks(vault, &hash, total_lines, report, audited_rx));
        let mut waiting: std::collections::BTreeMap<u64, Chunk> = std::collections::BTreeMap::new();
        let mut next_seq = 0u64;
        let queued = (|| -> CtlResult {
            for sealed in sealed_rx.iter() {
                let sealed = sealed?;
                waiting.insert(sealed.seq, sealed);
                while let Some(chunk) = waiting.remove(&next_seq) {
                    next_seq += 1;
                    for (line, why) in &chunk.rejected {
                        report.warn(&format!("{shown}:{line}: {why}"));
                    }
                    stats.rejected += chunk.rejected.len() as u64;
                    stats.skipped += chunk.skipped;
                    if let Some(prepared) = chunk.prepared {
                        let audited = vault.audit_writes(prepared, actor, now())?;
                        if audited_tx.send((audited, chunk.last_line)).is_err() {
                            return Ok(()); // the storer stopped; it reports why
                        }
                    } else {
                        report.progress(chunk.last_line, total_lines, 0);
                    }
                }
            }
            Ok(())
        })();
        drop(audited_tx);
        drop(sealed_rx);
        let stored = storer
            .join()
            .map_err(|_| CtlError("the storer thread failed".into()))?;
        queued?;
        let stored = stored?;
        reader
            .join()
            .map_err(|_| CtlError("the reader thread failed".into()))??;
        Ok(stored)
    })?;
    stats.created = stored.created;
    stats.updated = stored.updated;
    stats.unchanged = stored.unchanged;
    vault.set_import_checkpoint(&hash, None)?;
    vault.flush()?;

    let secs = started.elapsed().as_secs_f64();
    let processed = stats.created + stats.updated + stats.unchanged + stats.rejected;
    report.say(&format!(
        "{shown}: {} created, {} updated, {} unchanged, {} rejected{} in {secs:.1}s ({:.0} rows/s)\n",
        stats.created,
        stats.updated,
        stats.unchanged,
        stats.rejected,
        if stats.skipped > 0 {
            format!(
                ", {} already imported before the interruption",
                stats.skipped
            )
        } else {
            String::new()
        },
        processed as f64 / secs.max(1e-9)
    ))?;
    if stats.rejected > 0 {
        return Err(CtlError(format!(
            "{} row(s) rejected (listed above); every other row was imported",
            stats.rejected
        )));
    }
    Ok(())
}
