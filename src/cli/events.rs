//! `events`: what arrived and what was done (bounces, complaints, unsubscribes, lifts, consents,
//! erasures), oldest first.

use super::{EXIT_OK, parse_time, print_json};
use crate::model::{Timestamp, format_time};
use crate::service::{EventsQuery, MAX_PAGE, SuppressionService};

#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    /// Only events since this time (2026-01-31 or RFC 3339).
    #[arg(long, value_parser = parse_time)]
    since: Option<Timestamp>,
    /// Only events of this address.
    #[arg(long)]
    address: Option<String>,
    /// Only events of this kind (bounce, complaint, unsubscribe, lift, consent, erase, …).
    #[arg(long)]
    kind: Option<String>,
    /// At most this many (default: all).
    #[arg(long)]
    limit: Option<u64>,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
}

pub async fn events(service: &SuppressionService, args: EventsArgs) -> anyhow::Result<u8> {
    let mut query = EventsQuery {
        since: args.since,
        address: args.address.clone(),
        kind: args.kind.clone(),
        cursor: None,
        limit: Some(MAX_PAGE),
    };
    let mut shown = 0u64;
    let wanted = args.limit.unwrap_or(u64::MAX);
    'pages: loop {
        let page = service.events(&query).await?;
        for event in &page.items {
            if shown >= wanted {
                break 'pages;
            }
            shown += 1;
            if args.json {
                print_json(event)?;
                continue;
            }
            let scope = match (event.company.as_str(), event.brand.as_str()) {
                ("", _) => String::new(),
                (company, "") => format!(" {company}"),
                (company, brand) => format!(" {company}/{brand}"),
            };
            print!(
                "{} {} {}{}",
                format_time(&event.occurred_at),
                event.kind,
                event.address.as_deref().unwrap_or("(erased)"),
                scope
            );
            if let Some(source) = &event.source {
                print!(" via {source}");
            }
            if let Some(id) = event.evidence_id {
                print!(", evidence {id}");
            }
            // What the analyser said of a bounce, and the rule that decided it.
            let analysed: Vec<String> = [
                event.reason.clone(),
                event.status.clone(),
                event.rule.as_ref().map(|rule| format!("rule {rule}")),
            ]
            .into_iter()
            .flatten()
            .collect();
            if !analysed.is_empty() {
                print!(" [{}]", analysed.join(", "));
            }
            match &event.note {
                Some(note) => println!(": {note}"),
                None => println!(),
            }
        }
        match page.next_cursor {
            Some(cursor) => query.cursor = Some(cursor),
            None => break,
        }
    }
    if !args.json && shown == 0 {
        println!("no events");
    }
    Ok(EXIT_OK)
}
