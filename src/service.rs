//! The one service layer the edges (CLI, HTTP API) call: checks requests against the configured
//! organisation, asks `policy` for decisions and `store` for records. No rule lives twice.

use std::sync::Arc;

use sha2::Digest;

use serde::Serialize;

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

/// A request the service refuses, or a store failure.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("invalid address {input:?}: {source}")]
    Address { input: String, source: AddressError },
    #[error("company {0:?} is not configured (add it under [[companies]] in the config)")]
    UnknownCompany(String),
    #[error("brand {brand:?} is not a brand of company {company:?}")]
    UnknownBrand { company: String, brand: String },
    #[error("a brand needs its company (--company)")]
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
        "lifting an unsubscribe whose sender was not authenticated needs a note (--note): say why, it is shown beside the lift"
    )]
    LiftNoteRequired,
    #[error("event {0} is not an unsubscribe mail held for review (see `bouncegate review`)")]
    NotHeld(i64),
    #[error(
        "created_at {0} is in the future: a suppression dated later than now could not be lifted by the owner's opt-in"
    )]
    CreatedInFuture(String),
    #[error(
        "evidence {id} does not match the SHA-256 recorded when it arrived (expected {expected}, the stored bytes give {actual}): it was changed in the database; run `bouncegate evidence verify`"
    )]
    EvidenceTampered {
        id: i64,
        expected: String,
        actual: String,
    },
    #[error("the consent is dated in the future ({0})")]
    ConsentInFuture(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A suppression to record through the service (validated against the organisation).
#[derive(Debug, Clone)]
pub struct SuppressRequest<'a> {
    pub address: &'a str,
    pub reason: Reason,
    pub company: Option<&'a str>,
    pub brand: Option<&'a str>,
    pub channel: Channel,
    pub note: Option<&'a str>,
    pub source: Source,
    pub created_at: Option<Timestamp>,
    pub expires_at: Option<Timestamp>,
}

/// Which suppressions to lift.
#[derive(Debug, Clone, Default)]
pub struct LiftRequest<'a> {
    pub reason: Option<Reason>,
    pub company: Option<&'a str>,
    pub brand: Option<&'a str>,
    pub channel: Option<Channel>,
    pub lifted_by: &'a str,
    pub note: Option<&'a str>,
}

/// What a lift did: staff may lift bounces and manual blocks, never the owner's opt-outs.
#[derive(Debug, Clone, Serialize)]
pub struct LiftReport {
    pub lifted: Vec<SuppressionRecord>,
    /// Unsubscribes and complaints that matched and were left standing.
    pub refused: Vec<SuppressionRecord>,
}

/// The status of an address, per company and brand.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    pub address: String,
    #[serde(serialize_with = "crate::model::serialize_opt_time")]
    pub erased_at: Option<Timestamp>,
    pub companies: Vec<CompanyStatus>,
    pub suppressions: Vec<SuppressionRecord>,
}

/// The status for one company and each of its brands.
#[derive(Debug, Clone, Serialize)]
pub struct CompanyStatus {
    pub company: String,
    pub status: ContactStatus,
    pub brands: Vec<BrandStatus>,
}

/// The status for one brand.
#[derive(Debug, Clone, Serialize)]
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
}

impl SuppressionService {
    /// A service over this store, with the rules and organisation of `config`.
    pub fn new(store: Store, config: Arc<Config>) -> Self {
        Self {
            policy: Policy::new(&config.policy),
            store,
            config,
        }
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
        let records = self.store.records(&self.store.hash(&address)).await?;
        Ok(self.decide(&records, request))
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
        request: &SuppressRequest<'_>,
    ) -> Result<NewSuppression, ServiceError> {
        let address = Self::parse_address(request.address)?;
        let scope = self.scope(request.company, request.brand)?;
        if request.reason.is_bounce() && scope != Scope::Global {
            return Err(ServiceError::BounceNotGlobal(request.reason));
        }
        let note = request.note.map(str::trim).filter(|n| !n.is_empty());
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
        request: &SuppressRequest<'_>,
    ) -> Result<AddOutcome, ServiceError> {
        let new = self.prepare_suppression(request)?;
        Ok(self.store.add_suppression(&new, chrono::Utc::now()).await?)
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
        request: &LiftRequest<'_>,
    ) -> Result<LiftReport, ServiceError> {
        let address = Self::parse_address(address)?;
        let scope = match (request.company, request.brand) {
            (None, None) => None,
            (company, brand) => Some(self.scope(company, brand)?),
        };
        let records = self.store.records(&self.store.hash(&address)).await?;
        let (refused, liftable): (Vec<_>, Vec<_>) = records
            .suppressions
            .into_iter()
            .filter(|s| request.reason.is_none_or(|r| r == s.reason))
            .filter(|s| request.channel.is_none_or(|c| c == s.channel))
            .filter(|s| scope.as_ref().is_none_or(|scope| *scope == s.scope))
            .partition(|s| s.is_owners_opt_out());
        let unverified = liftable.iter().any(|s| s.source == Source::UnverifiedMail);
        if unverified && request.note.is_none_or(|n| n.trim().is_empty()) {
            return Err(ServiceError::LiftNoteRequired);
        }
        let ids: Vec<i64> = liftable.iter().map(|s| s.id).collect();
        let lifted_ids = self
            .store
            .lift(&ids, request.lifted_by, request.note, chrono::Utc::now())
            .await?;
        Ok(LiftReport {
            lifted: liftable
                .into_iter()
                .filter(|s| lifted_ids.contains(&s.id))
                .collect(),
            refused,
        })
    }

    /// Records the owner's confirmed opt-in, lifting their older opt-outs in its scope.
    ///
    /// # Errors
    /// Invalid address or scope, a date in the future, store failure.
    #[allow(clippy::too_many_arguments)]
    pub async fn consent(
        &self,
        address: &str,
        company: &str,
        brand: Option<&str>,
        channel: Channel,
        confirmed_at: Option<Timestamp>,
        proof: Vec<u8>,
        proof_name: Option<String>,
        source: &str,
    ) -> Result<ConsentOutcome, ServiceError> {
        let address = Self::parse_address(address)?;
        let scope = self.scope(Some(company), brand)?;
        let now = chrono::Utc::now();
        let confirmed_at = confirmed_at.unwrap_or(now);
        if confirmed_at > now + chrono::Duration::minutes(5) {
            return Err(ServiceError::ConsentInFuture(crate::model::format_time(
                &confirmed_at,
            )));
        }
        let consent = NewConsent {
            address,
            channel,
            scope,
            confirmed_at,
            source: source.to_string(),
            proof,
            proof_name,
        };
        Ok(self.store.record_consent(&consent, now).await?)
    }

    /// Erases the address (data-protection request).
    ///
    /// # Errors
    /// Invalid address, store failure.
    pub async fn erase(&self, address: &str, actor: &str) -> Result<EraseOutcome, ServiceError> {
        let address = Self::parse_address(address)?;
        Ok(self
            .store
            .erase(
                &address,
                self.config.erasure.keep_opt_out_evidence,
                actor,
                chrono::Utc::now(),
            )
            .await?)
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
