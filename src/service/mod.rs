//! The one service layer the edges (CLI, HTTP API) call: checks requests against the configured
//! organisation, asks `policy` for decisions and `store` for records. No rule lives twice.

pub mod bulk;
mod listing;
mod overview;
mod report;
mod retention;
mod unsubscribe;

use std::sync::Arc;

use sha2::Digest;

use serde::{Deserialize, Serialize};

pub use listing::{
    BlockedPage, BlockedQuery, DEFAULT_PAGE, EventPage, EventsQuery, MAX_PAGE, Page,
    QueueActReport, SuppressionPage, SuppressionsQuery,
};
pub use overview::{DayCounts, Overview};
pub use report::{AccessReport, RetentionSummary};
pub use retention::PurgeReport;
pub use unsubscribe::{OneClickOutcome, OneClickRequest, UnsubscribeTarget, verified_send};

use crate::address::{AddressError, EmailAddress};
use crate::config::Config;
use crate::model::{
    AddressRecords, Channel, ContactStatus, MailClass, Reason, Scope, Source, SuppressionRecord,
    Timestamp,
};
use crate::policy::{self, Policy, SendQuery, Verdict};
use crate::store::{
    AddOutcome, BatchOutcome, ChainReport, ConsentOutcome, EraseOutcome, EventRecord,
    EvidenceRecord, HELD_UNSUBSCRIBE, NewConsent, NewSuppression, ReviewDecision, ReviewOutcome,
    Store, StoreError,
};

/// How far ahead of this clock a given time may be (other clocks are not exact).
const MAX_CLOCK_SKEW_MINUTES: i64 = 5;

/// What kind of failure a [`ServiceError`] is: each edge maps it once (the CLI to exit codes,
/// HTTP to statuses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is malformed or names something that is not configured.
    Invalid,
    /// What the request names does not exist.
    NotFound,
    /// The request is understood and refused by a rule.
    Refused,
    /// Stored data no longer matches its seal.
    Tampered,
    /// The store failed; trying again later may work.
    Unavailable,
}

/// A request the service refuses, or a store failure.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("invalid address {input:?}: {source}")]
    Address { input: String, source: AddressError },
    #[error("company {0:?} is not configured (add it under [[companies]] in the config)")]
    UnknownCompany(String),
    #[error("brand {brand:?} is not a brand of company {company:?}")]
    UnknownBrand { company: String, brand: String },
    #[error("a brand needs its company")]
    BrandWithoutCompany,
    #[error(
        "{0} suppressions are global (the mailbox is dead for everyone): give no company or brand"
    )]
    BounceNotGlobal(Reason),
    #[error(
        "a note is required for manual suppressions: say why, for whoever answers a data-protection request"
    )]
    NoteRequired,
    #[error(
        "lifting an unsubscribe whose sender was not authenticated needs a note: say why, it is shown beside the lift"
    )]
    LiftNoteRequired,
    #[error("event {0} is not an unsubscribe mail held for review")]
    NotHeld(i64),
    #[error(
        "created_at {0} is in the future: a suppression dated later than now could not be lifted by the owner's opt-in"
    )]
    CreatedInFuture(String),
    #[error(
        "evidence {id} does not match the SHA-256 recorded when it arrived (expected {expected}, the stored bytes give {actual}): it was changed in the database; verify the evidence chain"
    )]
    EvidenceTampered {
        id: i64,
        expected: String,
        actual: String,
    },
    #[error("the consent is dated in the future ({0})")]
    ConsentInFuture(String),
    #[error("{what} {id} does not exist")]
    NotFound { what: &'static str, id: i64 },
    #[error("a purge is already running in this gateway; it goes on: try again when it is done")]
    PurgeRunning,
    #[error(
        "suppression {0} is the address owner's opt-out; only their fresh confirmed opt-in lifts it"
    )]
    OwnerOptOut(i64),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The store's writer could not take the request (it stopped, or its write failed).
    #[error("not stored: {0}")]
    NotStored(String),
}

impl ServiceError {
    /// The kind of failure, for the edges' tables.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ServiceError::Address { .. }
            | ServiceError::UnknownCompany(_)
            | ServiceError::UnknownBrand { .. }
            | ServiceError::BrandWithoutCompany
            | ServiceError::BounceNotGlobal(_)
            | ServiceError::NoteRequired
            | ServiceError::LiftNoteRequired
            | ServiceError::CreatedInFuture(_)
            | ServiceError::ConsentInFuture(_)
            | ServiceError::Invalid(_) => ErrorKind::Invalid,
            ServiceError::NotHeld(_) | ServiceError::NotFound { .. } => ErrorKind::NotFound,
            ServiceError::PurgeRunning | ServiceError::OwnerOptOut(_) => ErrorKind::Refused,
            ServiceError::EvidenceTampered { .. } => ErrorKind::Tampered,
            ServiceError::Store(_) | ServiceError::NotStored(_) => ErrorKind::Unavailable,
        }
    }

    /// A stable machine-readable code (API error bodies; never reworded).
    pub fn code(&self) -> &'static str {
        match self {
            ServiceError::Address { .. } => "invalid_address",
            ServiceError::UnknownCompany(_) => "unknown_company",
            ServiceError::UnknownBrand { .. } => "unknown_brand",
            ServiceError::BrandWithoutCompany => "brand_without_company",
            ServiceError::BounceNotGlobal(_) => "bounce_not_global",
            ServiceError::NoteRequired => "note_required",
            ServiceError::LiftNoteRequired => "lift_note_required",
            ServiceError::NotHeld(_) => "not_held",
            ServiceError::CreatedInFuture(_) => "created_in_future",
            ServiceError::EvidenceTampered { .. } => "evidence_tampered",
            ServiceError::ConsentInFuture(_) => "consent_in_future",
            ServiceError::NotFound { .. } => "not_found",
            ServiceError::PurgeRunning => "purge_running",
            ServiceError::OwnerOptOut(_) => "owner_opt_out",
            ServiceError::Invalid(_) => "invalid_request",
            ServiceError::Store(_) | ServiceError::NotStored(_) => "store_unavailable",
        }
    }
}

/// A send question as the edges ask it (`bouncegate check`, `GET /v1/check`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, utoipa::ToSchema, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CheckQuery {
    /// The recipient address.
    pub address: String,
    /// The company (a `[[companies]]` id).
    pub company: String,
    /// One of the company's brands.
    #[serde(default)]
    pub brand: Option<String>,
    /// `promotional` (the default) or `service`.
    #[serde(default)]
    #[param(value_type = Option<MailClass>)]
    pub class: MailClass,
    /// `email` (the default) or `postal`.
    #[serde(default)]
    #[param(value_type = Option<Channel>)]
    pub channel: Channel,
}

impl CheckQuery {
    /// The policy question it asks.
    pub fn request(&self) -> CheckRequest<'_> {
        CheckRequest {
            company: &self.company,
            brand: self.brand.as_deref(),
            class: self.class,
            channel: self.channel,
        }
    }
}

/// A suppression to record (`bouncegate suppress`, `POST /v1/suppressions`, import rows).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SuppressRequest {
    pub address: String,
    pub reason: Reason,
    #[serde(default)]
    pub company: Option<String>,
    #[serde(default)]
    pub brand: Option<String>,
    /// `email` (the default) or `postal`.
    #[serde(default)]
    pub channel: Channel,
    /// Why; required for `manual`.
    #[serde(default)]
    pub note: Option<String>,
    /// When it stops counting (default: never).
    #[serde(default, deserialize_with = "crate::model::deserialize_opt_time")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<Timestamp>,
    /// Who asks (set by the edge, not by the caller).
    #[serde(skip, default = "api_source")]
    #[schema(ignore)]
    pub source: Source,
    /// When it began, for imports of older blocks (set by the edge).
    #[serde(skip)]
    #[schema(ignore)]
    pub created_at: Option<Timestamp>,
    /// Who records it (set by the edge: `cli:USER`, `api:TOKEN`, `staff:USER`).
    #[serde(skip)]
    #[schema(ignore)]
    pub created_by: Option<String>,
}

fn api_source() -> Source {
    Source::Api
}

/// Which suppressions to lift (`bouncegate lift`, `POST /v1/suppressions/{id}/lift`).
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LiftRequest {
    #[serde(default)]
    pub reason: Option<Reason>,
    #[serde(default)]
    pub company: Option<String>,
    #[serde(default)]
    pub brand: Option<String>,
    #[serde(default)]
    pub channel: Option<Channel>,
    /// Why it is lifted (kept with the record; required for unverified unsubscribes).
    #[serde(default)]
    pub note: Option<String>,
    /// Only this suppression (the API's path names it).
    #[serde(skip)]
    #[schema(ignore)]
    pub id: Option<i64>,
    /// Who lifts it (set by the edge).
    #[serde(skip)]
    #[schema(ignore)]
    pub lifted_by: String,
}

/// The owner's confirmed opt-in (`bouncegate consent`, `POST /v1/consents`).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsentRequest {
    pub address: String,
    pub company: String,
    #[serde(default)]
    pub brand: Option<String>,
    #[serde(default)]
    pub channel: Channel,
    /// When the owner confirmed (default: now).
    #[serde(default, deserialize_with = "crate::model::deserialize_opt_time")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub confirmed_at: Option<Timestamp>,
    /// The proof of the opt-in (the confirmation mail or log line), as text.
    pub proof: String,
    /// A name for the proof (a file name).
    #[serde(default)]
    pub proof_name: Option<String>,
    /// Where the consent came from (set by the edge).
    #[serde(skip)]
    #[schema(ignore)]
    pub source: String,
    /// The proof's bytes when they are not text (set by the CLI from a file).
    #[serde(skip)]
    #[schema(ignore)]
    pub proof_bytes: Option<Vec<u8>>,
}

/// An erasure request (`bouncegate erase`, `POST /v1/erasure`).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErasureRequest {
    pub address: String,
}

/// What recording a suppression did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SuppressReport {
    /// The suppression's id, new or the one already in force.
    pub id: i64,
    /// Whether it is new (`false`: the same one was already in force).
    pub added: bool,
}

/// What an erasure did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ErasureReport {
    pub erased: bool,
    #[serde(flatten)]
    pub outcome: EraseOutcome,
}

/// What a lift did: staff may lift bounces and manual blocks, never the owner's opt-outs.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LiftReport {
    pub lifted: Vec<SuppressionRecord>,
    /// Unsubscribes and complaints that matched and were left standing.
    pub refused: Vec<SuppressionRecord>,
}

/// The status of an address, per company and brand.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StatusReport {
    pub address: String,
    #[serde(serialize_with = "crate::model::serialize_opt_time")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub erased_at: Option<Timestamp>,
    pub companies: Vec<CompanyStatus>,
    pub suppressions: Vec<SuppressionRecord>,
}

/// The status for one company and each of its brands.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CompanyStatus {
    pub company: String,
    pub status: ContactStatus,
    pub brands: Vec<BrandStatus>,
}

/// The status for one brand.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BrandStatus {
    pub brand: String,
    pub status: ContactStatus,
}

/// A send question through the service.
#[derive(Debug, Clone, Copy)]
pub struct CheckRequest<'a> {
    pub company: &'a str,
    pub brand: Option<&'a str>,
    pub class: MailClass,
    pub channel: Channel,
}

/// The suppression service.
#[derive(Debug, Clone)]
pub struct SuppressionService {
    store: Store,
    policy: Policy,
    config: Arc<Config>,
    /// The group-commit writer of the running gateway (one-click requests batch with received
    /// mail); `None` writes each on its own.
    committer: Option<Arc<crate::store::Committer>>,
    /// Set while a retention purge runs (one at a time per gateway).
    purging: Arc<std::sync::atomic::AtomicBool>,
}

impl SuppressionService {
    /// A service over this store, with the rules and organisation of `config`.
    pub fn new(store: Store, config: Arc<Config>) -> Self {
        Self {
            policy: Policy::new(&config.policy),
            store,
            config,
            committer: None,
            purging: Arc::default(),
        }
    }

    /// Writes one-click requests through `committer` (group commit).
    pub fn with_committer(mut self, committer: Arc<crate::store::Committer>) -> Self {
        self.committer = Some(committer);
        self
    }

    /// The store behind the service.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Parses an address, naming it in the error.
    ///
    /// # Errors
    /// [`ServiceError::Address`].
    pub fn parse_address(input: &str) -> Result<EmailAddress, ServiceError> {
        EmailAddress::parse(input).map_err(|source| ServiceError::Address {
            input: input.to_string(),
            source,
        })
    }

    /// The scope for a company and brand, both checked against the configuration.
    ///
    /// # Errors
    /// Unknown company, a brand of another company, or a brand without company.
    pub fn scope(&self, company: Option<&str>, brand: Option<&str>) -> Result<Scope, ServiceError> {
        if let Some(company) = company {
            self.check_company(company, brand)?;
        }
        Scope::from_parts(company, brand).ok_or(ServiceError::BrandWithoutCompany)
    }

    fn check_company(&self, company: &str, brand: Option<&str>) -> Result<(), ServiceError> {
        let known = self
            .config
            .company(company)
            .ok_or_else(|| ServiceError::UnknownCompany(company.to_string()))?;
        match brand {
            Some(brand) if !known.has_brand(brand) => Err(ServiceError::UnknownBrand {
                company: company.to_string(),
                brand: brand.to_string(),
            }),
            _ => Ok(()),
        }
    }

    /// May this mail go to `address`?
    ///
    /// # Errors
    /// Invalid address, unknown company or brand, store failure.
    pub async fn check(
        &self,
        address: &str,
        request: CheckRequest<'_>,
    ) -> Result<Verdict, ServiceError> {
        let address = Self::parse_address(address)?;
        self.check_company(request.company, request.brand)?;
        let started = std::time::Instant::now();
        let records = self.store.records(&self.store.hash(&address)).await?;
        crate::metrics::store_latency("check", started.elapsed());
        Ok(self.decide(&records, request))
    }

    /// [`SuppressionService::check`] as the edges ask it.
    ///
    /// # Errors
    /// Invalid address, unknown company or brand, store failure.
    pub async fn check_query(&self, query: &CheckQuery) -> Result<Verdict, ServiceError> {
        self.check(&query.address, query.request()).await
    }

    /// The decision for records already loaded (bulk filtering).
    pub fn decide(&self, records: &AddressRecords, request: CheckRequest<'_>) -> Verdict {
        let query = SendQuery {
            company: request.company,
            brand: request.brand,
            class: request.class,
            channel: request.channel,
        };
        self.policy.check(records, query, chrono::Utc::now())
    }

    /// Decisions for many addresses at once, in input order.
    ///
    /// # Errors
    /// Unknown company or brand, store failure.
    pub async fn check_many(
        &self,
        addresses: &[EmailAddress],
        request: CheckRequest<'_>,
    ) -> Result<Vec<Verdict>, ServiceError> {
        self.check_company(request.company, request.brand)?;
        let hasher = self.store.hasher();
        let hashes: Vec<_> = addresses.iter().map(|a| hasher.hash(a)).collect();
        let found = self.store.records_many(&hashes).await?;
        let none = AddressRecords::default();
        Ok(hashes
            .iter()
            .map(|h| self.decide(found.get(h).unwrap_or(&none), request))
            .collect())
    }

    /// The status of `address` for every configured company and brand.
    ///
    /// # Errors
    /// Invalid address, store failure.
    pub async fn status(&self, address: &str) -> Result<StatusReport, ServiceError> {
        let address = Self::parse_address(address)?;
        let records = self.store.records(&self.store.hash(&address)).await?;
        let now = chrono::Utc::now();
        let companies = self
            .config
            .companies
            .iter()
            .map(|company| CompanyStatus {
                company: company.id().to_string(),
                status: policy::status(&records, company.id(), None, now),
                brands: company
                    .brands
                    .iter()
                    .map(|brand| BrandStatus {
                        brand: brand.get_ref().clone(),
                        status: policy::status(&records, company.id(), Some(brand.get_ref()), now),
                    })
                    .collect(),
            })
            .collect();
        Ok(StatusReport {
            address: address.as_given().to_string(),
            erased_at: records.erased_at,
            companies,
            suppressions: records.suppressions,
        })
    }

    /// Validates a suppression request into what the store records.
    ///
    /// # Errors
    /// Invalid address, scope or reason/scope combination, missing note.
    pub fn prepare_suppression(
        &self,
        request: &SuppressRequest,
    ) -> Result<NewSuppression, ServiceError> {
        let address = Self::parse_address(&request.address)?;
        let scope = self.scope(request.company.as_deref(), request.brand.as_deref())?;
        if request.reason.is_bounce() && scope != Scope::Global {
            return Err(ServiceError::BounceNotGlobal(request.reason));
        }
        let note = request
            .note
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty());
        if request.reason == Reason::Manual && note.is_none() {
            return Err(ServiceError::NoteRequired);
        }
        let now = chrono::Utc::now();
        if let Some(created_at) = request.created_at
            && created_at > now + chrono::Duration::minutes(MAX_CLOCK_SKEW_MINUTES)
        {
            // A block dated in the future would outlast the owner's confirmed opt-in.
            return Err(ServiceError::CreatedInFuture(crate::model::format_time(
                &created_at,
            )));
        }
        Ok(NewSuppression {
            address,
            channel: request.channel,
            scope,
            reason: request.reason,
            source: request.source,
            note: note.map(str::to_string),
            created_at: request.created_at.unwrap_or(now),
            created_by: request.created_by.clone(),
            expires_at: request.expires_at,
            evidence_id: None,
            event_id: None,
        })
    }

    /// Records a suppression (unchanged if the same one is in force).
    ///
    /// # Errors
    /// See [`SuppressionService::prepare_suppression`]; store failure.
    pub async fn suppress(
        &self,
        request: &SuppressRequest,
    ) -> Result<SuppressReport, ServiceError> {
        let new = self.prepare_suppression(request)?;
        let outcome = self.store.add_suppression(&new, chrono::Utc::now()).await?;
        if matches!(outcome, AddOutcome::Added(_)) {
            crate::metrics::suppression_added(new.reason.as_str(), new.source.as_str());
        }
        Ok(SuppressReport {
            id: outcome.id(),
            added: matches!(outcome, AddOutcome::Added(_)),
        })
    }

    /// Records validated suppressions in one transaction.
    ///
    /// # Errors
    /// Store failure; nothing of the batch was written.
    pub async fn suppress_batch(
        &self,
        batch: &[NewSuppression],
    ) -> Result<BatchOutcome, ServiceError> {
        Ok(self
            .store
            .add_suppressions(batch, chrono::Utc::now())
            .await?)
    }

    /// Lifts the matching bounce and manual suppressions, and unsubscribes whose sender was not
    /// authenticated (with a note); the owner's opt-outs are refused.
    ///
    /// # Errors
    /// Invalid address or scope, store failure.
    pub async fn lift(
        &self,
        address: &str,
        request: &LiftRequest,
    ) -> Result<LiftReport, ServiceError> {
        let address = Self::parse_address(address)?;
        self.lift_hash(&self.store.hash(&address), request).await
    }

    async fn lift_hash(
        &self,
        hash: &crate::secret::AddressHash,
        request: &LiftRequest,
    ) -> Result<LiftReport, ServiceError> {
        let scope = match (request.company.as_deref(), request.brand.as_deref()) {
            (None, None) => None,
            (company, brand) => Some(self.scope(company, brand)?),
        };
        let records = self.store.records(hash).await?;
        let (refused, liftable): (Vec<_>, Vec<_>) = records
            .suppressions
            .into_iter()
            .filter(|s| request.id.is_none_or(|id| id == s.id))
            .filter(|s| request.reason.is_none_or(|r| r == s.reason))
            .filter(|s| request.channel.is_none_or(|c| c == s.channel))
            .filter(|s| scope.as_ref().is_none_or(|scope| *scope == s.scope))
            .partition(|s| s.is_owners_opt_out());
        let unverified = liftable.iter().any(|s| s.source == Source::UnverifiedMail);
        let note = request
            .note
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty());
        if unverified && note.is_none() {
            return Err(ServiceError::LiftNoteRequired);
        }
        let ids: Vec<i64> = liftable.iter().map(|s| s.id).collect();
        let lifted_ids = self
            .store
            .lift(&ids, &request.lifted_by, note, chrono::Utc::now())
            .await?;
        Ok(LiftReport {
            lifted: liftable
                .into_iter()
                .filter(|s| lifted_ids.contains(&s.id))
                .collect(),
            refused,
        })
    }

    /// Lifts one suppression by its id (the API's `POST /v1/suppressions/{id}/lift`), by the
    /// same rules as [`SuppressionService::lift`].
    ///
    /// # Errors
    /// No such suppression in force, the owner's opt-out, a missing note, store failure.
    pub async fn lift_by_id(
        &self,
        id: i64,
        request: &LiftRequest,
    ) -> Result<LiftReport, ServiceError> {
        let not_found = ServiceError::NotFound {
            what: "suppression in force",
            id,
        };
        let hash = self.store.suppression_hash(id).await?.ok_or(not_found)?;
        let request = LiftRequest {
            id: Some(id),
            ..request.clone()
        };
        let report = self.lift_hash(&hash, &request).await?;
        if report.lifted.is_empty() && !report.refused.is_empty() {
            return Err(ServiceError::OwnerOptOut(id));
        }
        Ok(report)
    }

    /// Records the owner's confirmed opt-in, lifting their older opt-outs in its scope.
    ///
    /// # Errors
    /// Invalid address or scope, a date in the future, store failure.
    pub async fn consent(&self, request: &ConsentRequest) -> Result<ConsentOutcome, ServiceError> {
        let address = Self::parse_address(&request.address)?;
        let scope = self.scope(Some(&request.company), request.brand.as_deref())?;
        let now = chrono::Utc::now();
        let confirmed_at = request.confirmed_at.unwrap_or(now);
        if confirmed_at > now + chrono::Duration::minutes(MAX_CLOCK_SKEW_MINUTES) {
            return Err(ServiceError::ConsentInFuture(crate::model::format_time(
                &confirmed_at,
            )));
        }
        let proof = match &request.proof_bytes {
            Some(bytes) => bytes.clone(),
            None => request.proof.as_bytes().to_vec(),
        };
        if proof.iter().all(u8::is_ascii_whitespace) {
            return Err(ServiceError::Invalid(
                "a consent needs its proof (the confirmation the owner gave)".into(),
            ));
        }
        let consent = NewConsent {
            address,
            channel: request.channel,
            scope,
            confirmed_at,
            source: request.source.clone(),
            proof,
            proof_name: request.proof_name.clone(),
        };
        Ok(self.store.record_consent(&consent, now).await?)
    }

    /// Erases the address (data-protection request).
    ///
    /// # Errors
    /// Invalid address, store failure.
    pub async fn erase(
        &self,
        request: &ErasureRequest,
        actor: &str,
    ) -> Result<ErasureReport, ServiceError> {
        let address = Self::parse_address(&request.address)?;
        let outcome = self
            .store
            .erase(
                &address,
                self.config.erasure.keep_opt_out_evidence,
                actor,
                chrono::Utc::now(),
            )
            .await?;
        Ok(ErasureReport {
            erased: true,
            outcome,
        })
    }

    /// Plain unsubscribe mails held for review (unauthenticated, past the per-IP limit).
    ///
    /// # Errors
    /// Store failure.
    pub async fn held_unsubscribes(&self) -> Result<Vec<EventRecord>, ServiceError> {
        Ok(self.store.held_unsubscribes().await?)
    }

    /// Staff's decision on a held unsubscribe mail: accepted, it suppresses as an unverified
    /// unsubscribe (liftable by staff, with the mail as evidence); dismissed, nothing comes of it.
    ///
    /// # Errors
    /// No such held event, no note, the address was erased meanwhile, store failure.
    pub async fn review_held(
        &self,
        event_id: i64,
        decision: ReviewDecision,
        decided_by: &str,
        note: &str,
    ) -> Result<ReviewOutcome, ServiceError> {
        let note = note.trim();
        if note.is_empty() {
            return Err(ServiceError::NoteRequired);
        }
        let event = self
            .store
            .event(event_id)
            .await?
            .filter(|e| e.kind == HELD_UNSUBSCRIBE)
            .ok_or(ServiceError::NotHeld(event_id))?;
        let now = chrono::Utc::now();
        let suppression = match decision {
            ReviewDecision::Dismissed => None,
            ReviewDecision::Accepted => {
                let address = event
                    .address
                    .as_deref()
                    .ok_or(ServiceError::NotHeld(event_id))?;
                let scope = Scope::from_parts(Some(&event.company), Some(&event.brand))
                    .ok_or(ServiceError::NotHeld(event_id))?;
                Some(NewSuppression {
                    address: Self::parse_address(address)?,
                    channel: Channel::Email,
                    scope,
                    reason: Reason::Unsubscribe,
                    source: Source::UnverifiedMail,
                    note: Some(format!(
                        "held unsubscribe mail accepted by {decided_by}: {note}"
                    )),
                    created_at: now,
                    created_by: Some(decided_by.to_string()),
                    expires_at: None,
                    evidence_id: event.evidence_id,
                    event_id: Some(event.id),
                })
            }
        };
        Ok(self
            .store
            .decide_held(
                event_id,
                decision,
                suppression.as_ref(),
                decided_by,
                note,
                now,
            )
            .await?)
    }

    /// Stored evidence, checked against the SHA-256 recorded and sealed when it arrived.
    ///
    /// # Errors
    /// The bytes no longer match (they were changed in the database), store failure.
    pub async fn evidence(&self, id: i64) -> Result<Option<EvidenceRecord>, ServiceError> {
        let Some(evidence) = self.store.evidence(id).await? else {
            return Ok(None);
        };
        let actual = hex::encode(sha2::Sha256::digest(&evidence.raw));
        let sealed = evidence.sealed_sha256.as_deref();
        if actual != evidence.sha256 || sealed.is_some_and(|s| s != actual) {
            return Err(ServiceError::EvidenceTampered {
                id,
                expected: sealed.unwrap_or(&evidence.sha256).to_string(),
                actual,
            });
        }
        Ok(Some(evidence))
    }

    /// Walks the evidence chain (see [`Store::verify_evidence`]).
    ///
    /// # Errors
    /// Store failure.
    pub async fn verify_evidence(&self) -> Result<ChainReport, ServiceError> {
        Ok(self.store.verify_evidence().await?)
    }
}
