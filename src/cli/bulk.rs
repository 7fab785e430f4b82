//! `import`, `export` and `filter`.

use std::fs::File;
use std::io::{self, BufRead, BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use super::{Audience, EXIT_NEGATIVE, EXIT_OK, print_json};
use crate::service::bulk::{self, Format, Progress};

/// The terminal's progress bar draws the service's progress.
struct Bar(ProgressBar);

impl Progress for Bar {
    fn update(&self, done: u64) {
        self.0.set_position(done);
    }
    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

use crate::service::SuppressionService;

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// CSV (header row: email, reason [, company, brand, channel, note, created_at]) or JSONL; - for stdin.
    file: PathBuf,
    /// Format (default: jsonl for .jsonl/.ndjson files, else csv).
    #[arg(long, value_parser = super::parse_word::<Format>)]
    format: Option<Format>,
    /// Answer as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Format.
    #[arg(long, default_value = "csv", value_parser = super::parse_word::<Format>)]
    format: Format,
    /// Write here instead of standard output.
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// For opening in a spreadsheet: cells starting with =, +, -, @ get a leading ' so that
    /// nothing runs as a formula (such a file is for reading, not for re-import).
    #[arg(long)]
    spreadsheet_safe: bool,
}

#[derive(Debug, clap::Args)]
pub struct FilterArgs {
    #[command(flatten)]
    audience: Audience,
    /// The list: one address per line, or CSV with an `email` column; - for stdin.
    file: PathBuf,
    /// Write the sendable entries here instead of standard output.
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Write the other entries here, with their reason.
    #[arg(long, value_name = "FILE")]
    rejected: Option<PathBuf>,
}

/// A progress bar over `total` bytes, drawn only on a terminal.
fn progress_bar(total: Option<u64>, what: &str) -> Bar {
    if !io::stderr().is_terminal() {
        return Bar(ProgressBar::hidden());
    }
    let bar = match total {
        Some(total) => ProgressBar::new(total),
        None => ProgressBar::new_spinner(),
    };
    let template = format!(
        "{what} {{bar:40}} {{percent:>3}}% {{bytes}}/{{total_bytes}} {{elapsed}} (eta {{eta}})"
    );
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style);
    }
    Bar(bar)
}

fn open_input(path: &Path) -> anyhow::Result<(Box<dyn BufRead>, Option<u64>)> {
    if path == Path::new("-") {
        return Ok((Box::new(BufReader::new(io::stdin())), None));
    }
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let size = file.metadata().ok().map(|m| m.len());
    Ok((Box::new(BufReader::with_capacity(1 << 16, file)), size))
}

fn create_output(path: &Path) -> anyhow::Result<File> {
    File::create(path).with_context(|| format!("cannot create {}", path.display()))
}

pub async fn import(service: &SuppressionService, args: ImportArgs) -> anyhow::Result<u8> {
    let format =
        args.format
            .unwrap_or_else(|| match args.file.extension().and_then(|e| e.to_str()) {
                Some("jsonl" | "ndjson") => Format::Jsonl,
                _ => Format::Csv,
            });
    let (input, size) = open_input(&args.file)?;
    let bar = progress_bar(size, "importing");
    let report = bulk::import(service, input, format, &bar)
        .await
        .with_context(|| format!("import of {}", args.file.display()))?;
    if args.json {
        print_json(&report)?;
    } else {
        println!(
            "{} rows: {} added, {} already suppressed, {} rejected",
            report.rows, report.added, report.unchanged, report.rejected
        );
        for e in &report.errors {
            eprintln!("line {}: {}", e.line, e.message);
        }
        let unlisted = report.rejected - report.errors.len() as u64;
        if unlisted > 0 {
            eprintln!("… and {unlisted} more rejected rows");
        }
    }
    Ok(if report.rejected > 0 {
        EXIT_NEGATIVE
    } else {
        EXIT_OK
    })
}

pub async fn export(service: &SuppressionService, args: ExportArgs) -> anyhow::Result<u8> {
    let output: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(create_output(path)?),
        None => Box::new(io::stdout().lock()),
    };
    if args.spreadsheet_safe && args.format != Format::Csv {
        anyhow::bail!("--spreadsheet-safe goes with --format csv");
    }
    let report = bulk::export(service, output, args.format, args.spreadsheet_safe).await?;
    eprintln!("exported {} suppressions", report.written);
    if report.erased > 0 {
        eprintln!(
            "{} suppressions of erased addresses were not exported (only their keyed hash is kept)",
            report.erased
        );
    }
    Ok(EXIT_OK)
}

pub async fn filter(service: &SuppressionService, args: FilterArgs) -> anyhow::Result<u8> {
    let (input, size) = open_input(&args.file)?;
    let output: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(create_output(path)?),
        None => Box::new(io::stdout().lock()),
    };
    let rejected = args.rejected.as_deref().map(create_output).transpose()?;
    let bar = progress_bar(size, "filtering");
    let report = bulk::filter(
        service,
        input,
        args.audience.request(),
        output,
        rejected,
        &bar as &dyn Progress,
    )
    .await?;
    eprintln!(
        "{} read, {} sendable, {} rejected",
        report.read, report.sendable, report.rejected
    );
    Ok(EXIT_OK)
}
