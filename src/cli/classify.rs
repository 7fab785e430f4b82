//! `classify`: run the analyser over files and folders, in parallel on all cores.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;

use super::{EXIT_ERROR, EXIT_OK};
use crate::analysis::{RecipientReport, Report};
use crate::config::Config;

#[derive(Debug, clap::Args)]
pub struct ClassifyArgs {
    /// Mail files (a mailbox file gives one line per mail in it), or folders read recursively
    /// (every regular file).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// One JSON object per mail: {"file", "kind", "recipients": [...], "error"}.
    #[arg(long)]
    json: bool,
    /// Per recipient, the rule that decided (its file and number) and the words of the bounce
    /// it matched; with --json, as each recipient's "explanation".
    #[arg(long)]
    explain: bool,
}

#[derive(Serialize)]
struct Line<'a> {
    file: String,
    kind: &'static str,
    recipients: &'a [RecipientReport],
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

pub fn classify(config: &Config, args: ClassifyArgs) -> anyhow::Result<u8> {
    let mut analyzer = crate::serve::load_analyzer(config)?;
    if args.explain {
        analyzer = analyzer.explaining();
    }
    let mut files = Vec::new();
    let mut unreadable = false;
    for path in &args.paths {
        if let Err(e) = collect(path, &mut files) {
            eprintln!("error: cannot read {}: {e}", path.display());
            unreadable = true;
        }
    }
    let workers = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(files.len().max(1));
    let next = AtomicUsize::new(0);
    let mut results: Vec<(usize, Result<String, String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(path) = files.get(i) else { break };
                        let line = std::fs::read(path)
                            .map_err(|e| format!("cannot read {}: {e}", path.display()))
                            .map(|raw| {
                                // A mailbox file gives a line per mail in it.
                                analyzer
                                    .analyze_each(&raw)
                                    .iter()
                                    .map(|report| render(path, report, args.json, args.explain))
                                    .collect::<String>()
                            });
                        out.push((i, line));
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    results.sort_by_key(|(i, _)| *i);
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    for (_, line) in results {
        match line {
            Ok(text) => stdout.write_all(text.as_bytes())?,
            Err(message) => {
                eprintln!("error: {message}");
                unreadable = true;
            }
        }
    }
    stdout.flush()?;
    Ok(if unreadable { EXIT_ERROR } else { EXIT_OK })
}

fn collect(path: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let metadata = std::fs::metadata(path)?;
    if metadata.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        // By name bytes: the same order as `Path`'s component-wise comparison for entries of one
        // folder, at a fraction of its cost (a tenth of a second per 100,000 files).
        entries.sort_unstable_by(|a, b| a.as_os_str().cmp(b.as_os_str()));
        for entry in entries {
            collect(&entry, out)?;
        }
    } else if metadata.is_file() {
        out.push(path.to_path_buf());
    }
    Ok(())
}

fn render(path: &Path, report: &Report, json: bool, explain: bool) -> String {
    if json {
        let line = Line {
            file: path.display().to_string(),
            kind: report.kind.as_str(),
            recipients: &report.recipients,
            error: report.error.as_deref(),
        };
        return serde_json::to_string(&line).unwrap_or_default() + "\n";
    }
    let mut text = format!("{}: {}", path.display(), report.kind);
    if let Some(error) = &report.error {
        text.push_str(&format!(" ({error})"));
    }
    text.push('\n');
    for r in &report.recipients {
        text.push_str(&format!(
            "  {} {} {} {} {}\n",
            r.address, r.class, r.reason, r.status, r.reply_code
        ));
        if explain {
            text.push_str(&format!("    rule: {}\n", r.rule));
            for step in &r.explanation {
                text.push_str(&format!("    - {step}\n"));
            }
        }
    }
    text
}
