//! `purge` (retention) and `report` (what is held about an address).

use std::io::IsTerminal;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use super::{EXIT_OK, actor, print_json};
use crate::render::Lang;
use crate::service::{PurgeReport, SuppressionService};
use crate::store::PurgeRule;

#[derive(Debug, clap::Args)]
pub struct PurgeArgs {
    /// Count what would go, per table and reason, and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Answer as JSON: {"dry_run", "at", "rules": [{"rule", "table", "setting", "before", "rows"}], "total"}.
    #[arg(long)]
    json: bool,
}

pub async fn purge(service: &SuppressionService, args: PurgeArgs) -> anyhow::Result<u8> {
    let report = if args.dry_run {
        service.purge_preview().await?
    } else {
        let spinner = if std::io::stderr().is_terminal() {
            let spinner = ProgressBar::new_spinner();
            if let Ok(style) = ProgressStyle::with_template("{spinner} purging {msg}") {
                spinner.set_style(style);
            }
            spinner.enable_steady_tick(std::time::Duration::from_millis(120));
            spinner
        } else {
            ProgressBar::hidden()
        };
        let mut progress = |rule: PurgeRule, rows: u64| {
            spinner.set_message(format!("{} ({}): {rows} rows", rule.table(), rule.as_str()));
        };
        let report = service.purge(&actor(), &mut progress).await;
        spinner.finish_and_clear();
        report?
    };
    if args.json {
        print_json(&report)?;
    } else {
        print!("{}", purge_text(&report));
    }
    Ok(EXIT_OK)
}

/// The counts as a table for people.
fn purge_text(report: &PurgeReport) -> String {
    let mut text = String::new();
    text.push_str(if report.dry_run {
        "dry run: nothing changed; a purge now would remove\n"
    } else {
        "purged\n"
    });
    for rule in &report.rules {
        text.push_str(&format!(
            "  {:>9}  {:<14} {} {}  [{} = {} days]\n",
            rule.rows,
            rule.table,
            rule.rule.describe(),
            rule.before.format("%Y-%m-%d %H:%M UTC"),
            rule.setting,
            (report.at - rule.before).num_days(),
        ));
    }
    text.push_str(&format!(
        "  {:>9}  rows in all{}\n",
        report.total,
        if report.dry_run {
            ""
        } else {
            " (recorded as a purge event)"
        }
    ));
    text.push_str(
        "kept whatever its age: standing suppressions, the proof of standing opt-outs and complaints, consents, erasure records\n",
    );
    text
}

/// How the access report is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    /// Plain text, for reading in the terminal.
    Text,
    /// JSON, for the CRM.
    Json,
    /// One self-contained HTML page to send or print.
    Html,
}

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The address asked about.
    address: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: ReportFormat,
    /// Language of the text and HTML.
    #[arg(long, default_value = "en", value_parser = super::parse_word::<Lang>)]
    lang: Lang,
    /// Write here instead of standard output.
    #[arg(long, short)]
    output: Option<std::path::PathBuf>,
}

pub async fn report(service: &SuppressionService, args: ReportArgs) -> anyhow::Result<u8> {
    let report = service.access_report(&args.address).await?;
    let body = match args.format {
        ReportFormat::Text => crate::render::report::text(&report, args.lang),
        ReportFormat::Html => crate::render::report::html(&report, args.lang),
        ReportFormat::Json => format!("{}\n", serde_json::to_string_pretty(&report)?),
    };
    match &args.output {
        Some(path) => std::fs::write(path, body)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => print!("{body}"),
    }
    Ok(EXIT_OK)
}
