//! `check` and `status`.

use super::{Audience, EXIT_NEGATIVE, EXIT_OK, print_json};
use crate::model::format_time;
use crate::service::SuppressionService;

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The recipient address.
    address: String,
    #[command(flatten)]
    audience: Audience,
    /// Answer as JSON: {"allowed", "status", "blocking": [...]}.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The address.
    address: String,
    /// Answer as JSON.
    #[arg(long)]
    json: bool,
}

pub async fn check(service: &SuppressionService, args: CheckArgs) -> anyhow::Result<u8> {
    let verdict = service
        .check_query(&args.audience.query(&args.address))
        .await?;
    if args.json {
        print_json(&verdict)?;
    } else {
        let word = if verdict.allowed {
            "allowed"
        } else {
            "blocked"
        };
        println!(
            "{word}: {} (status {})",
            args.address.trim(),
            verdict.status
        );
        for b in &verdict.blocking {
            print!(
                "  {} ({}) since {}",
                b.reason.as_str(),
                b.scope,
                format_time(&b.created_at)
            );
            if let Some(source) = b.source {
                print!(" from {source}");
            }
            if let Some(id) = b.evidence_id {
                print!(", evidence {id}");
            }
            match &b.note {
                Some(note) => println!(": {note}"),
                None => println!(),
            }
        }
    }
    Ok(if verdict.allowed {
        EXIT_OK
    } else {
        EXIT_NEGATIVE
    })
}

pub async fn status(service: &SuppressionService, args: StatusArgs) -> anyhow::Result<u8> {
    let report = service.status(&args.address).await?;
    if args.json {
        print_json(&report)?;
        return Ok(EXIT_OK);
    }
    println!("{}", report.address);
    if let Some(erased_at) = report.erased_at {
        println!(
            "  erased {} (only a keyed hash is kept)",
            format_time(&erased_at)
        );
    }
    if report.companies.is_empty() {
        println!("  no companies are configured");
    }
    for company in &report.companies {
        println!("  {}: {}", company.company, company.status);
        for brand in &company.brands {
            println!("    {}: {}", brand.brand, brand.status);
        }
    }
    for s in &report.suppressions {
        print!(
            "  suppression {}: {} ({}, {}) from {} since {}",
            s.id,
            s.reason,
            s.scope,
            s.channel,
            s.source,
            format_time(&s.created_at)
        );
        if let Some(expires) = s.expires_at {
            print!(" until {}", format_time(&expires));
        }
        match &s.note {
            Some(note) => println!(": {note}"),
            None => println!(),
        }
    }
    Ok(EXIT_OK)
}
