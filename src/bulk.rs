//! Bulk work on files: importing and exporting suppressions (CSV or JSONL), and filtering a
//! recipient list down to the sendable addresses.
//!
//! Owns the file formats, batching and progress; every rule is asked of the service layer.
//! Bad rows are reported with their line and skipped; good rows are kept.

use std::io::{self, BufRead, Write};

use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};

use crate::address::EmailAddress;
use crate::model::{Channel, SuppressionRecord, format_time, parse_time};
use crate::policy::Verdict;
use crate::service::{CheckRequest, ServiceError, SuppressRequest, SuppressionService};
use crate::store::NewSuppression;

/// Rows written per transaction.
const IMPORT_BATCH: usize = 20_000;
/// Addresses looked up together when filtering.
const FILTER_BATCH: usize = 2_000;
/// Rows reported one by one before the rest are only counted.
const MAX_REPORTED_ERRORS: usize = 1_000;

/// A bulk job failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum BulkError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("CSV: {0}")]
    Csv(#[from] csv::Error),
    #[error("the header has no {0:?} column")]
    MissingColumn(&'static str),
    #[error(transparent)]
    Service(#[from] ServiceError),
}

/// File formats of import and export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Csv,
    Jsonl,
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowError {
    pub line: u64,
    pub message: String,
}

/// What an import did.
#[derive(Debug, Clone, Default, Serialize)]
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
            self.errors.push(RowError { line, message });
        }
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

impl Progress for indicatif::ProgressBar {
    fn update(&self, done: u64) {
        self.set_position(done);
    }
    fn finish(&self) {
        self.finish_and_clear();
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
    let mut input = skip_bom(input)?;
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
                    Err(e) => {
                        report.rows += 1;
                        report.reject(line, e.to_string());
                        continue;
                    }
                }
                report.rows += 1;
                let line = record.position().map_or(line, csv::Position::line);
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
                let read = input.read_line(&mut line_text)?;
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
        address: &row.email,
        reason,
        company: row.company.as_deref(),
        brand: row.brand.as_deref(),
        channel,
        note: row.note.as_deref(),
        source: crate::model::Source::Import,
        created_at,
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
        let Some(row) = export_row(&record) else {
            report.erased += 1;
            continue;
        };
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
    service.scope(Some(request.company), request.brand)?;
    let mut input = skip_bom(input)?;
    let header = first_line(&mut input)?;
    let delimiter = sniff_delimiter(&header);
    let is_csv = header
        .split(delimiter as char)
        .any(|f| f.trim().trim_matches('"').eq_ignore_ascii_case("email"));
    let mut out = Output::new(sendable, rejected, delimiter, is_csv);
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
        out.write_headers(&headers)?;
        let mut record = csv::StringRecord::new();
        while reader.read_record(&mut record)? {
            let address = parse_entry(record.get(column).unwrap_or(""));
            pending.push(Pending {
                record: Entry::Csv(record.clone()),
                address,
            });
            if pending.len() >= FILTER_BATCH {
                decide_batch(service, request, &mut pending, &mut out, &mut report).await?;
                progress.update(reader.position().byte());
            }
        }
    } else {
        out.write_headers(&csv::StringRecord::from(vec!["email"]))?;
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
                decide_batch(service, request, &mut pending, &mut out, &mut report).await?;
                progress.update(bytes);
            }
        }
    }
    decide_batch(service, request, &mut pending, &mut out, &mut report).await?;
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

async fn decide_batch<W: Write, X: Write>(
    service: &SuppressionService,
    request: CheckRequest<'_>,
    pending: &mut Vec<Pending>,
    out: &mut Output<W, X>,
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

    fn write_headers(&mut self, headers: &csv::StringRecord) -> Result<(), BulkError> {
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
