//! `suppress`, `lift`, `consent`, `erase` and `evidence show`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use serde_json::json;

use super::{EXIT_NEGATIVE, EXIT_OK, actor, parse_reason, parse_time, parse_word, print_json};
use crate::model::{Channel, Reason, Source, Timestamp, format_time};
use crate::service::{
    ConsentRequest, ErasureRequest, LiftRequest, SuppressRequest, SuppressionService,
};

#[derive(Debug, clap::Args)]
pub struct SuppressArgs {
    /// The address.
    address: String,
    /// hard_bounce, soft_bounce, complaint, unsubscribe or manual.
    #[arg(long, value_parser = parse_reason)]
    reason: Reason,
    /// Limit to one company (none: global).
    #[arg(long)]
    company: Option<String>,
    /// Limit to one brand of the company.
    #[arg(long)]
    brand: Option<String>,
    /// email, or postal for letter-post blocks.
    #[arg(long, default_value = "email", value_parser = parse_word::<Channel>)]
    channel: Channel,
    /// Why: shown to whoever answers a data-protection request.
    #[arg(long)]
    note: String,
    /// When the suppression stops counting (default: never).
    #[arg(long, value_parser = parse_time)]
    expires: Option<Timestamp>,
    /// Answer as JSON.
    #[arg(long)]
    json: bool,
}

pub async fn suppress(service: &SuppressionService, args: SuppressArgs) -> anyhow::Result<u8> {
    let request = SuppressRequest {
        address: args.address.clone(),
        reason: args.reason,
        company: args.company.clone(),
        brand: args.brand.clone(),
        channel: args.channel,
        note: Some(args.note.clone()),
        source: Source::Cli,
        created_at: None,
        created_by: Some(actor()),
        expires_at: args.expires,
    };
    let report = service.suppress(&request).await?;
    let (id, added) = (report.id, report.added);
    if args.json {
        print_json(&report)?;
    } else if added {
        println!(
            "suppressed {} ({}): suppression {id}",
            args.address.trim(),
            args.reason
        );
    } else {
        println!(
            "{} was already suppressed ({}): suppression {id}",
            args.address.trim(),
            args.reason
        );
    }
    Ok(EXIT_OK)
}

#[derive(Debug, clap::Args)]
pub struct LiftArgs {
    /// The address.
    address: String,
    /// Only suppressions with this reason.
    #[arg(long, value_parser = parse_reason)]
    reason: Option<Reason>,
    /// Only suppressions of exactly this company scope.
    #[arg(long)]
    company: Option<String>,
    /// Only suppressions of exactly this brand scope.
    #[arg(long)]
    brand: Option<String>,
    /// Only this channel.
    #[arg(long, value_parser = parse_word::<Channel>)]
    channel: Option<Channel>,
    /// Why it is lifted (kept with the record).
    #[arg(long)]
    note: Option<String>,
    /// Answer as JSON.
    #[arg(long)]
    json: bool,
}

pub async fn lift(service: &SuppressionService, args: LiftArgs) -> anyhow::Result<u8> {
    let request = LiftRequest {
        reason: args.reason,
        company: args.company.clone(),
        brand: args.brand.clone(),
        channel: args.channel,
        lifted_by: actor(),
        note: args.note.clone(),
        id: None,
    };
    let report = service.lift(&args.address, &request).await?;
    if args.json {
        print_json(&report)?;
    } else {
        for s in &report.lifted {
            println!("lifted suppression {}: {} ({})", s.id, s.reason, s.scope);
        }
        if report.lifted.is_empty() && report.refused.is_empty() {
            println!(
                "no matching suppression in force for {}",
                args.address.trim()
            );
        }
    }
    for s in &report.refused {
        eprintln!(
            "refused to lift suppression {}: {} ({}) is the address owner's opt-out; only their fresh \
             confirmed opt-in lifts it (bouncegate consent ADDRESS --company C --proof FILE)",
            s.id, s.reason, s.scope
        );
    }
    Ok(if report.lifted.is_empty() {
        EXIT_NEGATIVE
    } else {
        EXIT_OK
    })
}

#[derive(Debug, clap::Args)]
pub struct ConsentArgs {
    /// The address that confirmed its opt-in.
    address: String,
    /// The company the consent is given to.
    #[arg(long)]
    company: String,
    /// Only this brand of the company.
    #[arg(long)]
    brand: Option<String>,
    /// The proof of the confirmed opt-in (confirmation mail, form record …), stored as is.
    #[arg(long, value_name = "FILE")]
    proof: PathBuf,
    /// When the owner confirmed (default: now).
    #[arg(long, value_parser = parse_time)]
    confirmed_at: Option<Timestamp>,
    /// The channel consented to.
    #[arg(long, default_value = "email", value_parser = parse_word::<Channel>)]
    channel: Channel,
    /// Answer as JSON.
    #[arg(long)]
    json: bool,
}

pub async fn consent(service: &SuppressionService, args: ConsentArgs) -> anyhow::Result<u8> {
    let proof = std::fs::read(&args.proof)
        .with_context(|| format!("cannot read proof {}", args.proof.display()))?;
    let proof_name = args
        .proof
        .file_name()
        .map(|n| n.to_string_lossy().into_owned());
    let request = ConsentRequest {
        address: args.address.clone(),
        company: args.company.clone(),
        brand: args.brand.clone(),
        channel: args.channel,
        confirmed_at: args.confirmed_at,
        proof: String::new(),
        proof_name,
        source: actor(),
        proof_bytes: Some(proof),
    };
    let outcome = service.consent(&request).await?;
    if args.json {
        print_json(&outcome)?;
    } else {
        println!(
            "recorded consent {} for {}",
            outcome.consent_id,
            args.address.trim()
        );
        for id in &outcome.lifted {
            println!("lifted suppression {id}");
        }
    }
    Ok(EXIT_OK)
}

#[derive(Debug, clap::Args)]
pub struct EraseArgs {
    /// The address to erase.
    address: String,
    /// Answer as JSON.
    #[arg(long)]
    json: bool,
}

pub async fn erase(service: &SuppressionService, args: EraseArgs) -> anyhow::Result<u8> {
    let report = service
        .erase(
            &ErasureRequest {
                address: args.address.clone(),
            },
            &actor(),
        )
        .await?;
    let outcome = report.outcome;
    if args.json {
        print_json(&report)?;
    } else {
        println!(
            "erased {}: plain text removed from {} rows, {} raw mails naming it removed; the keyed hash keeps it blocked where it was (status D){}",
            args.address.trim(),
            outcome.rows_cleared,
            outcome.evidence_purged,
            if outcome.already_erased {
                "; it had been erased before"
            } else {
                ""
            }
        );
    }
    Ok(EXIT_OK)
}

#[derive(Debug, clap::Args)]
pub struct EvidenceShowArgs {
    /// The evidence id.
    id: i64,
    /// Print the record (envelope, time, SHA-256, size) as JSON instead of the raw bytes.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub struct EvidenceVerifyArgs {
    /// Answer as JSON: {"intact", "checked", "purged", "finding_count", "findings", "head"}.
    #[arg(long)]
    json: bool,
}

/// Walks the evidence chain; exit 0 intact, 1 with the first broken link named.
pub async fn evidence_verify(
    service: &SuppressionService,
    args: EvidenceVerifyArgs,
) -> anyhow::Result<u8> {
    let report = service.verify_evidence().await?;
    if args.json {
        let mut value = serde_json::to_value(&report)?;
        value["intact"] = json!(report.is_intact());
        print_json(&value)?;
    } else {
        match report.findings.first() {
            None => println!(
                "evidence chain intact: {} links, {} purged with a tombstone",
                report.checked, report.purged
            ),
            Some(first) => {
                println!(
                    "evidence chain BROKEN: first at evidence {}: {}",
                    first.evidence_id, first.message
                );
                for finding in report.findings.iter().skip(1) {
                    println!("  evidence {}: {}", finding.evidence_id, finding.message);
                }
                let unlisted = report.finding_count - report.findings.len() as u64;
                if unlisted > 0 {
                    println!("  … and {unlisted} more");
                }
            }
        }
        if let Some(head) = &report.head {
            println!(
                "head: evidence {} link {} (note it elsewhere: a later verify shows whether the log was cut back)",
                head.evidence_id, head.link
            );
        }
    }
    Ok(if report.is_intact() {
        EXIT_OK
    } else {
        EXIT_NEGATIVE
    })
}

pub async fn evidence_show(
    service: &SuppressionService,
    args: EvidenceShowArgs,
) -> anyhow::Result<u8> {
    let Some(evidence) = service.evidence(args.id).await? else {
        eprintln!("no evidence with id {}", args.id);
        return Ok(EXIT_NEGATIVE);
    };
    if args.json {
        print_json(&json!({
            "id": evidence.id,
            "received_at": format_time(&evidence.received_at),
            "sha256": evidence.sha256,
            "size": evidence.raw.len(),
            "mail_from": evidence.mail_from,
            "rcpt_to": evidence.rcpt_to,
            "helo": evidence.helo,
            "peer_ip": evidence.peer_ip,
        }))?;
    } else {
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(&evidence.raw)?;
        stdout.flush()?;
    }
    Ok(EXIT_OK)
}
