//! The command line: argument parsing and output. Every rule is the service layer's; this module
//! only turns arguments into requests and answers into text, JSON and exit codes
//! (0 ok, 1 blocked / not found / refused, 2 error).

mod bulk;
mod classify;
mod events;
mod lifecycle;
mod manage;
mod query;
mod relay;
mod review;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::model::{Channel, MailClass, Reason};
use crate::service::{ErrorKind, ServiceError, SuppressionService};
use crate::store::Store;

/// Exit code: done, allowed, found.
pub const EXIT_OK: u8 = 0;
/// Exit code: blocked, not found, refused, or rows rejected.
pub const EXIT_NEGATIVE: u8 = 1;
/// Exit code: an error.
pub const EXIT_ERROR: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "bouncegate",
    version,
    about = "SMTP gateway for bounces, complaints, unsubscribes and suppression"
)]
struct Cli {
    /// Config file (default: built-in safe defaults).
    #[arg(long, global = true, env = crate::config::CONFIG_ENV, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway.
    Serve,
    /// May promotional (or service) mail go to ADDRESS? Exit 0 allowed, 1 blocked.
    Check(query::CheckArgs),
    /// The status (A, U, B, D) of ADDRESS per company and brand.
    Status(query::StatusArgs),
    /// Suppress ADDRESS.
    Suppress(manage::SuppressArgs),
    /// Lift bounce and manual suppressions (the owner's opt-outs only lift by their consent).
    Lift(manage::LiftArgs),
    /// Record the owner's confirmed opt-in, with its proof.
    Consent(manage::ConsentArgs),
    /// Erase ADDRESS (data-protection request): plain text gone, keyed hash kept, status D.
    Erase(manage::EraseArgs),
    /// Remove what `[retention]` no longer keeps (batched; standing opt-outs' proof stays).
    Purge(lifecycle::PurgeArgs),
    /// Everything held about ADDRESS (GDPR Art. 15 access report): text, JSON or one HTML page.
    Report(lifecycle::ReportArgs),
    /// Import suppressions from CSV or JSONL.
    Import(bulk::ImportArgs),
    /// Export the suppressions in force as CSV or JSONL.
    Export(bulk::ExportArgs),
    /// Keep the sendable addresses of a recipient list.
    Filter(bulk::FilterArgs),
    /// Analyse bounce, complaint and auto-reply mails (files or folders).
    Classify(classify::ClassifyArgs),
    /// What arrived and what was done: bounces, complaints, unsubscribes, lifts, consents,
    /// erasures (oldest first).
    Events(events::EventsArgs),
    /// Unsubscribe mails held for staff review (sender not authenticated, too many from one IP).
    Review(review::ReviewArgs),
    /// Stored evidence.
    Evidence {
        #[command(subcommand)]
        command: EvidenceCommand,
    },
    /// Database maintenance.
    Db {
        #[command(subcommand)]
        command: DbCommand,
    },
    /// The relay's queue: depth, items, hold, release, retry, fail.
    Queue(relay::QueueArgs),
    /// Mails the relay did not send because a suppression stopped them.
    Blocked(relay::BlockedArgs),
    /// The campaign relay.
    Relay {
        #[command(subcommand)]
        command: RelayCommand,
    },
}

#[derive(Debug, Subcommand)]
enum RelayCommand {
    /// Read a password on standard input and print its argon2id hash, for `password_hash` in
    /// `[[relay.clients]]`.
    HashPassword,
}

#[derive(Debug, Subcommand)]
enum EvidenceCommand {
    /// Write the raw mail, byte for byte, to standard output (exit 2 if it no longer matches its
    /// SHA-256).
    Show(manage::EvidenceShowArgs),
    /// Walk the tamper-evident chain over all evidence; exit 1 names the first broken link.
    Verify(manage::EvidenceVerifyArgs),
}

#[derive(Debug, Subcommand)]
enum DbCommand {
    /// Apply pending migrations.
    Migrate,
}

/// Company, brand, class and channel of a send question.
#[derive(Debug, clap::Args)]
struct Audience {
    /// The company (a [[companies]] id).
    #[arg(long)]
    company: String,
    /// The brand (one of the company's brands).
    #[arg(long)]
    brand: Option<String>,
    /// The mail class.
    #[arg(long, default_value = "promotional", value_parser = parse_word::<MailClass>)]
    class: MailClass,
    /// The channel.
    #[arg(long, default_value = "email", value_parser = parse_word::<Channel>)]
    channel: Channel,
}

impl Audience {
    fn request(&self) -> crate::service::CheckRequest<'_> {
        crate::service::CheckRequest {
            company: &self.company,
            brand: self.brand.as_deref(),
            class: self.class,
            channel: self.channel,
        }
    }

    fn query(&self, address: &str) -> crate::service::CheckQuery {
        crate::service::CheckQuery {
            address: address.to_string(),
            company: self.company.clone(),
            brand: self.brand.clone(),
            class: self.class,
            channel: self.channel,
        }
    }
}

fn parse_word<T: std::str::FromStr>(text: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    text.parse().map_err(|e: T::Err| e.to_string())
}

fn parse_reason(text: &str) -> Result<Reason, String> {
    parse_word(text)
}

fn parse_time(text: &str) -> Result<crate::model::Timestamp, String> {
    crate::model::parse_time(text)
        .ok_or_else(|| format!("{text:?} is not a time (use 2026-01-31T12:00:00Z or 2026-01-31)"))
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {}", error_text(&e));
            ExitCode::from(exit_code_of(&e))
        }
    }
}

/// The exit code of a failed command: the CLI's one table over the service's error kinds.
fn exit_code_of(error: &anyhow::Error) -> u8 {
    let kind = error.chain().find_map(|cause| {
        cause
            .downcast_ref::<ServiceError>()
            .or_else(
                || match cause.downcast_ref::<crate::service::bulk::BulkError>() {
                    Some(crate::service::bulk::BulkError::Service(e)) => Some(e),
                    _ => None,
                },
            )
            .map(ServiceError::kind)
    });
    match kind {
        Some(ErrorKind::NotFound | ErrorKind::Refused) => EXIT_NEGATIVE,
        Some(ErrorKind::Invalid | ErrorKind::Tampered | ErrorKind::Unavailable) | None => {
            EXIT_ERROR
        }
    }
}

/// An error and its causes on one line, each cause once: errors that already say their cause
/// (`invalid address …: the local part …`) do not get it repeated.
fn error_text(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let cause = cause.to_string();
        if text.contains(&cause) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&cause);
    }
    text
}

async fn run(cli: Cli) -> anyhow::Result<u8> {
    let config = Arc::new(Config::load(cli.config.as_deref())?);
    let serving = matches!(cli.command, Command::Serve);
    crate::serve::init_logging(if serving { "info" } else { "warn" }, config.log.format);
    match cli.command {
        Command::Serve => {
            crate::serve::run(config).await?;
            return Ok(EXIT_OK);
        }
        Command::Classify(args) => return classify::classify(&config, args),
        Command::Relay {
            command: RelayCommand::HashPassword,
        } => return hash_password(),
        _ => {}
    }
    let store = Store::open(&config.database.url, config.database.max_connections)
        .await
        .with_context(|| format!("database {}", redact(&config.database.url)))?;
    let service = SuppressionService::new(store, config);
    let code = match cli.command {
        Command::Serve | Command::Classify(_) | Command::Relay { .. } => {
            unreachable!("handled above")
        }
        Command::Check(args) => query::check(&service, args).await?,
        Command::Status(args) => query::status(&service, args).await?,
        Command::Suppress(args) => manage::suppress(&service, args).await?,
        Command::Lift(args) => manage::lift(&service, args).await?,
        Command::Consent(args) => manage::consent(&service, args).await?,
        Command::Erase(args) => manage::erase(&service, args).await?,
        Command::Report(args) => lifecycle::report(&service, args).await?,
        Command::Purge(args) => lifecycle::purge(&service, args).await?,
        Command::Import(args) => bulk::import(&service, args).await?,
        Command::Export(args) => bulk::export(&service, args).await?,
        Command::Filter(args) => bulk::filter(&service, args).await?,
        Command::Review(args) => review::review(&service, args).await?,
        Command::Events(args) => events::events(&service, args).await?,
        Command::Queue(args) => relay::queue(&service, args).await?,
        Command::Blocked(args) => relay::blocked(&service, args).await?,
        Command::Evidence {
            command: EvidenceCommand::Show(args),
        } => manage::evidence_show(&service, args).await?,
        Command::Evidence {
            command: EvidenceCommand::Verify(args),
        } => manage::evidence_verify(&service, args).await?,
        Command::Db {
            command: DbCommand::Migrate,
        } => {
            println!("database is up to date");
            EXIT_OK
        }
    };
    service.store().close().await;
    Ok(code)
}

/// `relay hash-password`: one line of standard input (without its line end) in, its hash out.
fn hash_password() -> anyhow::Result<u8> {
    let mut password = String::new();
    std::io::stdin()
        .read_line(&mut password)
        .context("cannot read the password from standard input")?;
    let password = password.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        anyhow::bail!("no password on standard input");
    }
    let hash = crate::relay::hash_password(password)
        .map_err(|e| anyhow::anyhow!("cannot hash the password: {e}"))?;
    println!("{hash}");
    Ok(EXIT_OK)
}

/// A database URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// Prints `value` as one line of JSON.
fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(value)?);
    Ok(())
}

/// Who did it, for the record: `cli:$USER`.
fn actor() -> String {
    format!(
        "cli:{}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".into())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact("postgres://bg:s3cret@db:5432/bg"),
            "postgres://bg:***@db:5432/bg"
        );
        assert_eq!(redact("postgres://bg@db/bg"), "postgres://bg@db/bg");
        assert_eq!(
            redact("sqlite://data/bouncegate.db"),
            "sqlite://data/bouncegate.db"
        );
    }

    #[test]
    fn causes_are_said_once() {
        let address = crate::service::SuppressionService::parse_address("a..b@example.org")
            .expect_err("invalid");
        let error = anyhow::Error::new(address).context("check");
        assert_eq!(
            error_text(&error),
            "check: invalid address \"a..b@example.org\": the local part has a leading, trailing or doubled '.'"
        );
        let io = std::io::Error::other("disk full");
        let error = anyhow::Error::new(io).context("cannot write export.csv");
        assert_eq!(error_text(&error), "cannot write export.csv: disk full");
    }

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
