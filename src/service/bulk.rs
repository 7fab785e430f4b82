//! Bulk work on files: importing and exporting suppressions (CSV or JSONL), and filtering a
//! recipient list down to the sendable addresses.
//!
//! Owns the file formats, batching and progress; every rule is asked of the service layer.
//! Bad rows are reported with their line and skipped; good rows are kept.

use std::io::{self, BufRead, Write};

use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};

use super::{CheckRequest, ServiceError, SuppressRequest, SuppressionService};
use crate::address::EmailAddress;
use crate::model::{Channel, SuppressionRecord, format_time, parse_time};
use crate::policy::Verdict;
use crate::store::NewSuppression;

/// Rows written per transaction.
const IMPORT_BATCH: usize = 20_000;
/// Addresses looked up together when filtering.
const FILTER_BATCH: usize = 2_000;
/// Rows reported one by one before the rest are only counted.
const MAX_REPORTED_ERRORS: usize = 1_000;
/// Longest input line read; past it the file is not read on (it is not a list of addresses).
pub const MAX_LINE: usize = 64 * 1024;
/// Longest text of a row quoted back in an error message.
const MAX_QUOTED: usize = 200;
/// Lines one CSV record may span (a quoted note with line breaks); more is an unclosed quote.
const MAX_RECORD_LINES: u64 = 20;

/// A bulk job failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum BulkError {
    #[error("{0}")]
    Io(io::Error),
    #[error("CSV: {0}")]
    Csv(csv::Error),
    #[error("the header has no {0:?} column")]
    MissingColumn(&'static str),
    #[error("line {0} is longer than {MAX_LINE} bytes: this is not a list of addresses")]
    LineTooLong(u64),
    #[error(transparent)]
    Service(#[from] ServiceError),
}

/// File formats of import and export.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    #[default]
    Csv,
    Jsonl,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim() {
            "csv" => Ok(Format::Csv),
            "jsonl" | "ndjson" => Ok(Format::Jsonl),
            other => Err(format!("{other:?} is not a format (csv or jsonl)")),
        }
    }
}

/// One row of an import or export file; the same field names in CSV and JSONL.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuppressionRow {
    pub email: String,
    pub reason: String,
    #[serde(default, deserialize_with = "empty_as_none")]
    pub company: Option<String>,
    #[serde(default, deserialize_with = "empty_as_none")]
    pub brand: Option<String>,
    #[serde(default, deserialize_with = "empty_as_none")]
    pub channel: Option<String>,
    #[serde(default, deserialize_with = "empty_as_none")]
    pub note: Option<String>,
    #[serde(default, deserialize_with = "empty_as_none")]
    pub created_at: Option<String>,
}

fn empty_as_none<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let value: Option<String> = Option::deserialize(d)?;
    Ok(value
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty()))
}

/// A row that was not imported or not filtered, with its line in the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RowError {
    pub line: u64,
    pub message: String,
}

/// What an import did.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct ImportReport {
    pub rows: u64,
    pub added: u64,
    pub unchanged: u64,
    pub rejected: u64,
    /// The first rejected rows, with line and reason.
    pub errors: Vec<RowError>,
}

impl ImportReport {
    fn reject(&mut self, line: u64, message: String) {
        self.rejected += 1;
        if self.errors.len() < MAX_REPORTED_ERRORS {
            self.errors.push(RowError {
                line,
                message: shorten(message),
            });
        }
    }
}

/// A message cut to a few hundred bytes: a row's text is quoted back, never echoed whole.
fn shorten(mut message: String) -> String {
    if message.len() > MAX_QUOTED * 2 {
        let mut cut = MAX_QUOTED * 2;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push_str("… (cut)");
    }
    message
}

/// Refuses input lines past [`MAX_LINE`] as they are read, so that neither a huge field nor an
/// unclosed quote makes a reader hold the whole file.
pub struct LineLimit<R> {
    inner: R,
    /// Lines completed so far.
    line: u64,
    /// Bytes of the line being read.
    current: usize,
}

impl<R> LineLimit<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            line: 0,
            current: 0,
        }
    }
}

/// The line a [`LineLimit`] refused, as the I/O error it raised.
#[derive(Debug)]
struct LineTooLong(u64);

impl std::fmt::Display for LineTooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {} is longer than {MAX_LINE} bytes", self.0)
    }
}

impl std::error::Error for LineTooLong {}

impl<R: io::Read> io::Read for LineLimit<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut rest = &buf[..n];
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            if self.current + end > MAX_LINE {
                break;
            }
            self.line += 1;
            self.current = 0;
            rest = &rest[end + 1..];
        }
        self.current += rest.len();
        if self.current > MAX_LINE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                LineTooLong(self.line + 1),
            ));
        }
        Ok(n)
    }
}

/// The line a read refused for its length, if that is what `error` is.
fn line_too_long(error: &io::Error) -> Option<u64> {
    error
        .get_ref()
        .and_then(|e| e.downcast_ref::<LineTooLong>())
        .map(|e| e.0)
}

impl From<csv::Error> for BulkError {
    fn from(error: csv::Error) -> Self {
        if let csv::ErrorKind::Io(io) = error.kind()
            && let Some(line) = line_too_long(io)
        {
            return BulkError::LineTooLong(line);
        }
        BulkError::Csv(error)
    }
}

/// Progress of a long job, shown on a terminal only.
pub trait Progress {
    /// `done` of `total` units (bytes read) so far.
    fn update(&self, done: u64);
    /// The job ended.
    fn finish(&self);
}

impl Progress for () {
    fn update(&self, _: u64) {}
    fn finish(&self) {}
}

impl From<io::Error> for BulkError {
    fn from(error: io::Error) -> Self {
        match line_too_long(&error) {
            Some(line) => BulkError::LineTooLong(line),
            None => BulkError::Io(error),
        }
    }
}

/// Skips a UTF-8 byte-order mark (spreadsheet exports start with one).
fn skip_bom<R: BufRead>(mut input: R) -> io::Result<R> {
    if input.fill_buf()?.starts_with(b"\xEF\xBB\xBF") {
        input.consume(3);
    }
    Ok(input)
}

/// CSV as spreadsheets write it: ',' or, where the header has ';' (or tabs) and no ',', that.
fn sniff_delimiter(first_line: &str) -> u8 {
    if first_line.contains(',') {
        b','
    } else if first_line.contains(';') {
        b';'
    } else if first_line.contains('\t') {
        b'\t'
    } else {
        b','
    }
}

fn first_line<R: BufRead>(input: &mut R) -> io::Result<String> {
    let buffer = input.fill_buf()?;
    let end = buffer
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(buffer.len());
    Ok(String::from_utf8_lossy(&buffer[..end]).into_owned())
}

/// Imports suppressions from CSV (with a header row) or JSONL. Rows already in force are left
/// unchanged, so importing the same file twice changes nothing; an import only ever adds blocks.
///
/// # Errors
/// The input cannot be read, or the store failed (rows of earlier batches stay imported).
pub async fn import<R: BufRead>(
    service: &SuppressionService,
    input: R,
    format: Format,
    progress: &dyn Progress,
) -> Result<ImportReport, BulkError> {
    let mut input = skip_bom(io::BufReader::new(LineLimit::new(input)))?;
    let mut report = ImportReport::default();
    let mut batch = Vec::with_capacity(IMPORT_BATCH);
    match format {
        Format::Csv => {
            let delimiter = sniff_delimiter(&first_line(&mut input)?);
            let mut reader = csv::ReaderBuilder::new()
                .delimiter(delimiter)
                .trim(csv::Trim::All)
                .flexible(true)
                .from_reader(input);
            let headers = reader.headers()?.clone();
            for required in ["email", "reason"] {
                if !headers.iter().any(|h| h == required) {
                    return Err(BulkError::MissingColumn(required));
                }
            }
            let mut record = csv::StringRecord::new();
            loop {
                let line = reader.position().line();
                match reader.read_record(&mut record) {
                    Ok(false) => break,
                    Ok(true) => {}
                    Err(e) if e.is_io_error() => {
                        // The input cannot be read on: keep what was good so far, then say why.
                        flush(service, &mut batch, &mut report).await?;
                        return Err(e.into());
                    }
                    Err(e) => {
                        report.rows += 1;
                        report.reject(line, e.to_string());
                        continue;
                    }
                }
                report.rows += 1;
                let line = record.position().map_or(line, csv::Position::line);
                let spanned = reader.position().line().saturating_sub(line);
                if spanned > MAX_RECORD_LINES || swallowed_rows(&record, delimiter) {
                    report.reject(
                        line,
                        format!(
                            "a quote opened on line {line} is not closed: the {spanned} lines after it were read as one field and are not imported"
                        ),
                    );
                    continue;
                }
                if record.len() > headers.len() {
                    report.reject(
                        line,
                        format!(
                            "{} fields, but the header names {}",
                            record.len(),
                            headers.len()
                        ),
                    );
                    continue;
                }
                match record.deserialize::<SuppressionRow>(Some(&headers)) {
                    Ok(row) => prepare_row(service, &row, line, &mut batch, &mut report),
                    Err(e) => report.reject(line, e.to_string()),
                }
                if batch.len() >= IMPORT_BATCH {
                    flush(service, &mut batch, &mut report).await?;
                    progress.update(reader.position().byte());
                }
            }
        }
        Format::Jsonl => {
            let mut line_text = String::new();
            let mut line = 0;
            let mut bytes = 0;
            loop {
                line_text.clear();
                let read = match input.read_line(&mut line_text) {
                    Ok(read) => read,
                    Err(e) => {
                        flush(service, &mut batch, &mut report).await?;
                        return Err(e.into());
                    }
                };
                if read == 0 {
                    break;
                }
                line += 1;
                bytes += read as u64;
                if line_text.trim().is_empty() {
                    continue;
                }
                report.rows += 1;
                match serde_json::from_str::<SuppressionRow>(&line_text) {
                    Ok(row) => prepare_row(service, &row, line, &mut batch, &mut report),
                    Err(e) => report.reject(line, e.to_string()),
                }
                if batch.len() >= IMPORT_BATCH {
                    flush(service, &mut batch, &mut report).await?;
                    progress.update(bytes);
                }
            }
        }
    }
    flush(service, &mut batch, &mut report).await?;
    progress.finish();
    Ok(report)
}

/// Whether a field holds line breaks followed by what look like further rows (an address and the
/// delimiter): the mark of a quote that was never closed, at the end of a file too.
fn swallowed_rows(record: &csv::StringRecord, delimiter: u8) -> bool {
    let delimiter = char::from(delimiter);
    record.iter().any(|field| {
        field
            .lines()
            .skip(1)
            .any(|line| line.contains('@') && line.contains(delimiter))
    })
}

fn prepare_row(
    service: &SuppressionService,
    row: &SuppressionRow,
    line: u64,
    batch: &mut Vec<NewSuppression>,
    report: &mut ImportReport,
) {
    match validate_row(service, row) {
        Ok(new) => batch.push(new),
        Err(message) => report.reject(line, message),
    }
}

fn validate_row(
    service: &SuppressionService,
    row: &SuppressionRow,
) -> Result<NewSuppression, String> {
    let reason = row.reason.parse().map_err(|e| format!("{e}"))?;
    let channel = match &row.channel {
        Some(c) => c.parse().map_err(|e| format!("{e}"))?,
        None => Channel::Email,
    };
    let created_at = match &row.created_at {
        Some(text) => Some(parse_time(text).ok_or_else(|| {
            format!("created_at {text:?} is not a time (use 2026-01-31T12:00:00Z or 2026-01-31)")
        })?),
        None => None,
    };
    let request = SuppressRequest {
        address: row.email.clone(),
        reason,
        company: row.company.clone(),
        brand: row.brand.clone(),
        channel,
        note: row.note.clone(),
        source: crate::model::Source::Import,
        created_at,
        created_by: None,
        expires_at: None,
    };
    service
        .prepare_suppression(&request)
        .map_err(|e| e.to_string())
}

async fn flush(
    service: &SuppressionService,
    batch: &mut Vec<NewSuppression>,
    report: &mut ImportReport,
) -> Result<(), BulkError> {
    if batch.is_empty() {
        return Ok(());
    }
    let outcome = service.suppress_batch(batch).await?;
    report.added += outcome.added as u64;
    report.unchanged += outcome.unchanged as u64;
    batch.clear();
    Ok(())
}

/// Writes every suppression in force, in the import format (so an export imports again).
/// Erased addresses have no plain text left and are counted, not written.
///
/// # Errors
/// Writing failed, or the store failed.
pub async fn export<W: Write>(
    service: &SuppressionService,
    output: W,
    format: Format,
    spreadsheet_safe: bool,
) -> Result<ExportReport, BulkError> {
    let mut report = ExportReport::default();
    let mut rows = service.store().active_suppressions();
    let now = chrono::Utc::now();
    let mut sink = Sink::new(output, format == Format::Csv, b',');
    if let Sink::Csv(writer) = &mut sink {
        writer.write_record([
            "email",
            "reason",
            "company",
            "brand",
            "channel",
            "note",
            "created_at",
        ])?;
    }
    while let Some(record) = rows.try_next().await.map_err(ServiceError::from)? {
        if !record.is_in_force(now) {
            continue;
        }
        let Some(mut row) = export_row(&record) else {
            report.erased += 1;
            continue;
        };
        if spreadsheet_safe {
            row.neutralize_formulas();
        }
        match &mut sink {
            Sink::Csv(writer) => writer.serialize(&row)?,
            Sink::Plain(writer) => {
                serde_json::to_writer(&mut *writer, &row).map_err(io::Error::other)?;
                writer.write_all(b"\n")?;
            }
        }
        report.written += 1;
    }
    sink.flush()?;
    Ok(report)
}

/// A buffered output written as CSV records or as plain lines.
enum Sink<W: Write> {
    Csv(Box<csv::Writer<io::BufWriter<W>>>),
    Plain(io::BufWriter<W>),
}

impl<W: Write> Sink<W> {
    fn new(output: W, csv: bool, delimiter: u8) -> Self {
        if csv {
            Sink::Csv(Box::new(
                csv::WriterBuilder::new()
                    .has_headers(false)
                    .delimiter(delimiter)
                    .flexible(true)
                    .from_writer(io::BufWriter::new(output)),
            ))
        } else {
            Sink::Plain(io::BufWriter::new(output))
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Csv(writer) => writer.flush(),
            Sink::Plain(writer) => writer.flush(),
        }
    }
}

/// What an export wrote.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ExportReport {
    pub written: u64,
    /// Suppressions of erased addresses (kept as keyed hashes only, so not exportable).
    pub erased: u64,
}

impl SuppressionRow {
    /// Cells a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, and tab or CR before
    /// them) get a leading `'`, so opening an export in a spreadsheet runs nothing. Such a file
    /// is for reading: the quote becomes part of the value on re-import.
    pub fn neutralize_formulas(&mut self) {
        let cells = [
            Some(&mut self.email),
            Some(&mut self.reason),
            self.company.as_mut(),
            self.brand.as_mut(),
            self.channel.as_mut(),
            self.note.as_mut(),
            self.created_at.as_mut(),
        ];
        for cell in cells.into_iter().flatten() {
            if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
                cell.insert(0, '\'');
            }
        }
    }
}

fn export_row(record: &SuppressionRecord) -> Option<SuppressionRow> {
    Some(SuppressionRow {
        email: record.address.clone()?,
        reason: record.reason.to_string(),
        company: record.scope.company().map(str::to_string),
        brand: record.scope.brand().map(str::to_string),
        channel: Some(record.channel.to_string()),
        note: record.note.clone(),
        created_at: Some(format_time(&record.created_at)),
    })
}

/// What a filter run did.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct FilterReport {
    pub read: u64,
    pub sendable: u64,
    pub rejected: u64,
}

/// One input entry waiting for its decision.
struct Pending {
    /// The text to write back: the line, or the CSV record.
    record: Entry,
    address: Result<EmailAddress, String>,
}

enum Entry {
    Line(String),
    Csv(csv::StringRecord),
}

/// Reads a recipient list (one address per line, or CSV with an `email` column) and writes the
/// sendable entries to `sendable` and the others, with their reason, to `rejected`.
///
/// # Errors
/// Unknown company or brand, unreadable input, failed writes, store failure.
pub async fn filter<R: BufRead, W: Write, X: Write>(
    service: &SuppressionService,
    input: R,
    request: CheckRequest<'_>,
    sendable: W,
    rejected: Option<X>,
    progress: &dyn Progress,
) -> Result<FilterReport, BulkError> {
    filter_with(service, input, request, progress, |delimiter, is_csv| {
        Box::new(Output::new(sendable, rejected, delimiter, is_csv))
    })
    .await
}

/// [`filter`] with one decision per entry written to `output` as a line of JSON, in input
/// order: `{"line": 3, "email": "…", "sendable": false, "reason": "unsubscribe (company:acme)"}`.
///
/// # Errors
/// See [`filter`].
pub async fn filter_decisions<R: BufRead, W: Write>(
    service: &SuppressionService,
    input: R,
    request: CheckRequest<'_>,
    output: W,
    progress: &dyn Progress,
) -> Result<FilterReport, BulkError> {
    filter_with(service, input, request, progress, |_, _| {
        Box::new(JsonDecisions {
            output: io::BufWriter::new(output),
            column: 0,
            line: 0,
        })
    })
    .await
}

async fn filter_with<'o, R: BufRead>(
    service: &SuppressionService,
    input: R,
    request: CheckRequest<'_>,
    progress: &dyn Progress,
    output: impl FnOnce(u8, bool) -> Box<dyn Decisions + 'o>,
) -> Result<FilterReport, BulkError> {
    service.scope(Some(request.company), request.brand)?;
    let mut input = skip_bom(io::BufReader::new(LineLimit::new(input)))?;
    let header = first_line(&mut input)?;
    let delimiter = sniff_delimiter(&header);
    let is_csv = header
        .split(delimiter as char)
        .any(|f| f.trim().trim_matches('"').eq_ignore_ascii_case("email"));
    let mut out = output(delimiter, is_csv);
    let out = out.as_mut();
    let mut report = FilterReport::default();
    let mut pending = Vec::with_capacity(FILTER_BATCH);
    if is_csv {
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .flexible(true)
            .from_reader(input);
        let headers = reader.headers()?.clone();
        let column = headers
            .iter()
            .position(|h| h.trim().eq_ignore_ascii_case("email"))
            .ok_or(BulkError::MissingColumn("email"))?;
        out.headers(&headers, column)?;
        let mut record = csv::StringRecord::new();
        while reader.read_record(&mut record)? {
            let address = parse_entry(record.get(column).unwrap_or(""));
            pending.push(Pending {
                record: Entry::Csv(record.clone()),
                address,
            });
            if pending.len() >= FILTER_BATCH {
                decide_batch(service, request, &mut pending, out, &mut report).await?;
                progress.update(reader.position().byte());
            }
        }
    } else {
        out.headers(&csv::StringRecord::from(vec!["email"]), 0)?;
        let mut bytes = 0;
        let mut text = String::new();
        loop {
            text.clear();
            let read = input.read_line(&mut text)?;
            if read == 0 {
                break;
            }
            bytes += read as u64;
            let entry = text.trim();
            if entry.is_empty() || entry.starts_with('#') {
                continue;
            }
            pending.push(Pending {
                address: parse_entry(entry),
                record: Entry::Line(entry.to_string()),
            });
            if pending.len() >= FILTER_BATCH {
                decide_batch(service, request, &mut pending, out, &mut report).await?;
                progress.update(bytes);
            }
        }
    }
    decide_batch(service, request, &mut pending, out, &mut report).await?;
    out.flush()?;
    progress.finish();
    Ok(report)
}

fn parse_entry(text: &str) -> Result<EmailAddress, String> {
    if text.trim().is_empty() {
        return Err("no address".into());
    }
    EmailAddress::parse(text).map_err(|e| format!("invalid address: {e}"))
}

async fn decide_batch(
    service: &SuppressionService,
    request: CheckRequest<'_>,
    pending: &mut Vec<Pending>,
    out: &mut dyn Decisions,
    report: &mut FilterReport,
) -> Result<(), BulkError> {
    let valid: Vec<EmailAddress> = pending
        .iter()
        .filter_map(|p| p.address.as_ref().ok().cloned())
        .collect();
    let verdicts = service.check_many(&valid, request).await?;
    let mut verdicts = verdicts.into_iter();
    for entry in pending.drain(..) {
        report.read += 1;
        let outcome = match &entry.address {
            Ok(_) => {
                let verdict = verdicts.next().expect("one verdict per valid address");
                if verdict.allowed {
                    Ok(())
                } else {
                    Err(describe(&verdict))
                }
            }
            // A letter-shop row without e-mail cannot match an e-mail-keyed block; it goes out.
            Err(_)
                if request.channel == Channel::Postal
                    && entry.address.as_ref().is_err_and(|e| e == "no address") =>
            {
                Ok(())
            }
            Err(message) => Err(message.clone()),
        };
        match outcome {
            Ok(()) => {
                report.sendable += 1;
                out.sendable(&entry.record)?;
            }
            Err(reason) => {
                report.rejected += 1;
                out.rejected(&entry.record, &reason)?;
            }
        }
    }
    Ok(())
}

fn describe(verdict: &Verdict) -> String {
    verdict
        .blocking
        .iter()
        .map(|b| format!("{} ({})", b.reason.as_str(), b.scope))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Where filter decisions go.
trait Decisions {
    /// The input's header (`column` holds the address).
    fn headers(&mut self, headers: &csv::StringRecord, column: usize) -> Result<(), BulkError>;
    fn sendable(&mut self, entry: &Entry) -> Result<(), BulkError>;
    fn rejected(&mut self, entry: &Entry, reason: &str) -> Result<(), BulkError>;
    fn flush(&mut self) -> Result<(), BulkError>;
}

/// One JSON line per decision.
struct JsonDecisions<W: Write> {
    output: io::BufWriter<W>,
    column: usize,
    line: u64,
}

#[derive(Serialize)]
struct Decision<'a> {
    /// The entry's number in the input (1 = the first address).
    entry: u64,
    email: &'a str,
    sendable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
}

impl<W: Write> JsonDecisions<W> {
    fn write(&mut self, entry: &Entry, reason: Option<&str>) -> Result<(), BulkError> {
        self.line += 1;
        let email = match entry {
            Entry::Line(text) => text.as_str(),
            Entry::Csv(record) => record.get(self.column).unwrap_or("").trim(),
        };
        let decision = Decision {
            entry: self.line,
            email,
            sendable: reason.is_none(),
            reason,
        };
        serde_json::to_writer(&mut self.output, &decision).map_err(io::Error::other)?;
        self.output.write_all(b"\n")?;
        Ok(())
    }
}

impl<W: Write> Decisions for JsonDecisions<W> {
    fn headers(&mut self, _: &csv::StringRecord, column: usize) -> Result<(), BulkError> {
        self.column = column;
        Ok(())
    }
    fn sendable(&mut self, entry: &Entry) -> Result<(), BulkError> {
        self.write(entry, None)
    }
    fn rejected(&mut self, entry: &Entry, reason: &str) -> Result<(), BulkError> {
        self.write(entry, Some(reason))
    }
    fn flush(&mut self) -> Result<(), BulkError> {
        Ok(self.output.flush()?)
    }
}

/// Where filter results go: sendable entries as they came; rejected ones as CSV with a `reason` column.
struct Output<W: Write, X: Write> {
    sendable: Sink<W>,
    rejected: Option<Box<csv::Writer<io::BufWriter<X>>>>,
}

impl<W: Write, X: Write> Output<W, X> {
    fn new(sendable: W, rejected: Option<X>, delimiter: u8, is_csv: bool) -> Self {
        Self {
            sendable: Sink::new(sendable, is_csv, delimiter),
            rejected: rejected.map(|r| {
                match Sink::new(r, true, if is_csv { delimiter } else { b',' }) {
                    Sink::Csv(writer) => writer,
                    Sink::Plain(_) => unreachable!("asked for CSV"),
                }
            }),
        }
    }
}

impl<W: Write, X: Write> Decisions for Output<W, X> {
    fn headers(&mut self, headers: &csv::StringRecord, _: usize) -> Result<(), BulkError> {
        if let Sink::Csv(writer) = &mut self.sendable {
            writer.write_record(headers)?;
        }
        if let Some(rejected) = self.rejected.as_mut() {
            let mut with_reason = headers.clone();
            with_reason.push_field(if headers.iter().any(|h| h == "reason") {
                "rejected_reason"
            } else {
                "reason"
            });
            rejected.write_record(&with_reason)?;
        }
        Ok(())
    }

    fn sendable(&mut self, entry: &Entry) -> Result<(), BulkError> {
        // The output follows the input's format: CSV records go to the CSV writer, lines as they came.
        match (&mut self.sendable, entry) {
            (Sink::Csv(writer), Entry::Csv(record)) => writer.write_record(record)?,
            (Sink::Plain(writer), Entry::Line(text)) => {
                writer.write_all(text.as_bytes())?;
                writer.write_all(b"\n")?;
            }
            _ => unreachable!("the sink and the entries are made from the same detected format"),
        }
        Ok(())
    }

    fn rejected(&mut self, entry: &Entry, reason: &str) -> Result<(), BulkError> {
        let Some(rejected) = self.rejected.as_mut() else {
            return Ok(());
        };
        let mut record = match entry {
            Entry::Line(text) => csv::StringRecord::from(vec![text.as_str()]),
            Entry::Csv(record) => record.clone(),
        };
        record.push_field(reason);
        rejected.write_record(&record)?;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), BulkError> {
        self.sendable.flush()?;
        if let Some(rejected) = self.rejected.as_mut() {
            rejected.flush()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_spreadsheet_delimiters() {
        for (line, expected) in [
            ("email,reason", b','),
            ("email;reason;company", b';'),
            ("email\treason", b'\t'),
            ("email", b','),
        ] {
            assert_eq!(sniff_delimiter(line), expected, "{line}");
        }
    }

    #[test]
    fn skips_a_byte_order_mark() {
        let mut input = skip_bom(&b"\xEF\xBB\xBFemail\n"[..]).unwrap();
        assert_eq!(first_line(&mut input).unwrap(), "email");
    }
}
