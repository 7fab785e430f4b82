//! `queue` and `blocked`: the relay's queue and the mails suppressions stopped.

use super::{EXIT_NEGATIVE, EXIT_OK, parse_time, print_json};
use crate::model::{Timestamp, format_time};
use crate::service::SuppressionService;
use crate::store::{QueueAction, QueueTarget};

#[derive(Debug, clap::Args)]
pub struct QueueArgs {
    #[command(subcommand)]
    command: Option<QueueCommand>,
    /// Answer as JSON.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Debug, clap::Subcommand)]
enum QueueCommand {
    /// Depth by state, the oldest waiting mail, recent failures (the default).
    Summary,
    /// One queue item.
    Show { id: i64 },
    /// Keep waiting items from being delivered.
    Hold(QueueSelection),
    /// Let held items go again.
    Release(QueueSelection),
    /// Deliver waiting items now instead of at their next attempt.
    Retry(QueueSelection),
    /// Give waiting items up (recorded as failed).
    Fail(QueueSelection),
}

#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
struct QueueSelection {
    /// The item's id.
    id: Option<i64>,
    /// Every waiting item.
    #[arg(long)]
    all: bool,
}

impl QueueSelection {
    fn target(&self) -> QueueTarget {
        match self.id {
            Some(id) if !self.all => QueueTarget::One(id),
            _ => QueueTarget::All,
        }
    }
}

pub async fn queue(service: &SuppressionService, args: QueueArgs) -> anyhow::Result<u8> {
    let (action, selection) = match args.command.unwrap_or(QueueCommand::Summary) {
        QueueCommand::Summary => {
            let summary = service.queue_summary().await?;
            if args.json {
                print_json(&summary)?;
            } else {
                println!(
                    "queued {}, held {}, delivered {}, failed {}, dropped {}",
                    summary.queued,
                    summary.held,
                    summary.delivered,
                    summary.failed,
                    summary.dropped
                );
                if let Some(oldest) = &summary.oldest_waiting {
                    println!("oldest waiting since {oldest}");
                }
                for failure in &summary.recent_failures {
                    println!(
                        "failed {}: {} ({}): {}",
                        failure.id,
                        failure.recipient,
                        failure.message_id,
                        failure.last_error.as_deref().unwrap_or("")
                    );
                }
            }
            return Ok(EXIT_OK);
        }
        QueueCommand::Show { id } => {
            let entry = service.queue_entry(id).await?;
            if args.json {
                print_json(&entry)?;
            } else {
                println!(
                    "item {}: {} to {} ({}, {}{}), {} attempts, next {}, Message-ID {}, return path {}",
                    entry.id,
                    entry.state,
                    entry.recipient,
                    entry.class,
                    entry.company,
                    if entry.brand.is_empty() {
                        String::new()
                    } else {
                        format!("/{}", entry.brand)
                    },
                    entry.attempts,
                    entry.next_attempt_at,
                    entry.message_id,
                    entry.return_path
                );
                if let Some(error) = &entry.last_error {
                    println!("last error: {error}");
                }
            }
            return Ok(EXIT_OK);
        }
        QueueCommand::Hold(s) => (QueueAction::Hold, s),
        QueueCommand::Release(s) => (QueueAction::Release, s),
        QueueCommand::Retry(s) => (QueueAction::Retry, s),
        QueueCommand::Fail(s) => (QueueAction::Fail, s),
    };
    let report = service.queue_act(action, selection.target()).await?;
    let changed = report.changed;
    if args.json {
        print_json(&report)?;
    } else {
        println!("{changed} queue items changed");
    }
    Ok(if changed > 0 { EXIT_OK } else { EXIT_NEGATIVE })
}

#[derive(Debug, clap::Args)]
pub struct BlockedArgs {
    /// Only blocks since this time (2026-01-31 or RFC 3339).
    #[arg(long, value_parser = parse_time)]
    since: Option<Timestamp>,
    /// At most this many, newest first.
    #[arg(long, default_value_t = 1000)]
    limit: i64,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
}

pub async fn blocked(service: &SuppressionService, args: BlockedArgs) -> anyhow::Result<u8> {
    let records = service.recent_blocked(args.since, args.limit).await?;
    for record in &records {
        if args.json {
            print_json(record)?;
        } else {
            let brand = if record.brand.is_empty() {
                String::new()
            } else {
                format!("/{}", record.brand)
            };
            println!(
                "{} {}{} {}: {} (at {}, client {}, recipient hash {}…, Message-ID {})",
                format_time(&record.blocked_at),
                record.company,
                brand,
                record.class,
                record.reason,
                record.stage,
                record.client,
                &record.recipient_hash[..16.min(record.recipient_hash.len())],
                record.message_id.as_deref().unwrap_or("-"),
            );
        }
    }
    if !args.json && records.is_empty() {
        println!("no blocked mail");
    }
    Ok(EXIT_OK)
}
