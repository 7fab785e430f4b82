//! `review`: plain unsubscribe mails held for staff (sender not authenticated, past the per-IP
//! limit), and staff's decision on each.

use serde_json::json;

use super::{EXIT_NEGATIVE, EXIT_OK, actor, print_json};
use crate::model::format_time;
use crate::service::SuppressionService;
use crate::store::{AddOutcome, ReviewDecision, ReviewOutcome};

#[derive(Debug, clap::Args)]
pub struct ReviewArgs {
    #[command(subcommand)]
    command: Option<ReviewCommand>,
    /// Answer as JSON (the list: one object per held mail).
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Debug, clap::Subcommand)]
enum ReviewCommand {
    /// List the held mails no one has decided on (the default).
    List,
    /// Honour a held mail: an unsubscribe from its From address, marked `unverified_mail`.
    Accept(DecisionArgs),
    /// Do not honour a held mail.
    Dismiss(DecisionArgs),
}

#[derive(Debug, clap::Args)]
struct DecisionArgs {
    /// The held event's id (from `bouncegate review`).
    id: i64,
    /// Why: kept with the decision.
    #[arg(long)]
    note: String,
}

pub async fn review(service: &SuppressionService, args: ReviewArgs) -> anyhow::Result<u8> {
    let (decision, decided) = match args.command.unwrap_or(ReviewCommand::List) {
        ReviewCommand::List => return list(service, args.json).await,
        ReviewCommand::Accept(d) => (ReviewDecision::Accepted, d),
        ReviewCommand::Dismiss(d) => (ReviewDecision::Dismissed, d),
    };
    let outcome = service
        .review_held(decided.id, decision, &actor(), &decided.note)
        .await?;
    let (done, suppression) = match outcome {
        ReviewOutcome::AlreadyDecided => (false, None),
        ReviewOutcome::Decided(added) => (
            true,
            added.map(|a| match a {
                AddOutcome::Added(id) | AddOutcome::AlreadyActive(id) => id,
            }),
        ),
    };
    if args.json {
        print_json(&json!({"id": decided.id, "decided": done, "suppression_id": suppression}))?;
    } else if !done {
        println!(
            "event {} was decided on before; nothing changed",
            decided.id
        );
    } else if let Some(id) = suppression {
        println!("event {}: accepted, suppression {id}", decided.id);
    } else {
        println!("event {}: dismissed", decided.id);
    }
    Ok(if done { EXIT_OK } else { EXIT_NEGATIVE })
}

async fn list(service: &SuppressionService, json: bool) -> anyhow::Result<u8> {
    let held = service.held_unsubscribes().await?;
    if json {
        for event in &held {
            print_json(event)?;
        }
        return Ok(EXIT_OK);
    }
    if held.is_empty() {
        println!("no unsubscribe mails wait for review");
    }
    for event in &held {
        let scope = match (event.company.as_str(), event.brand.as_str()) {
            (company, "") => format!("company:{company}"),
            (company, brand) => format!("brand:{company}/{brand}"),
        };
        println!(
            "event {} at {}: {} from {} ({}), evidence {}",
            event.id,
            format_time(&event.occurred_at),
            event.address.as_deref().unwrap_or("(erased)"),
            scope,
            event.note.as_deref().unwrap_or(""),
            event
                .evidence_id
                .map_or_else(|| "none".to_string(), |id| id.to_string()),
        );
    }
    Ok(EXIT_OK)
}
