//! The access report (GDPR Art. 15, "Auskunft"): everything held about one address, why it is
//! blocked where it is, and how long each item is kept.

use serde::Serialize;

use super::{CompanyStatus, ServiceError, SuppressionService};
use crate::model::Timestamp;
use crate::store::{
    ErasureRecord, HeldConsent, HeldEvent, HeldEvidence, HeldSend, HeldSuppression,
};

/// The retention periods in force when the report was made, in days.
#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
pub struct RetentionSummary {
    pub events_days: u32,
    pub bounce_mail_days: u32,
    pub sends_days: u32,
    pub lifted_proof_days: u32,
    pub expired_suppression_days: u32,
}

/// Everything held about one address. For an erased address only `erased` is filled: its plain
/// data is gone, and the report says when it went.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AccessReport {
    /// The address asked about, as given.
    pub address: String,
    #[serde(serialize_with = "crate::model::serialize_time")]
    #[schema(value_type = String, format = DateTime)]
    pub generated_at: Timestamp,
    pub erased: Option<ErasureRecord>,
    /// Status (A, U, B, D) per configured company and brand.
    pub companies: Vec<CompanyStatus>,
    pub suppressions: Vec<HeldSuppression>,
    pub events: Vec<HeldEvent>,
    pub consents: Vec<HeldConsent>,
    pub evidence: Vec<HeldEvidence>,
    pub sends: Vec<HeldSend>,
    pub retention: RetentionSummary,
}

impl SuppressionService {
    /// The access report for `address`.
    ///
    /// # Errors
    /// Invalid address, store failure.
    pub async fn access_report(&self, address: &str) -> Result<AccessReport, ServiceError> {
        let parsed = Self::parse_address(address)?;
        let now = chrono::Utc::now();
        let days = self.retention_days();
        let history = self
            .store
            .address_history(&self.store.hash(&parsed), days, now)
            .await?;
        let companies = if history.erased.is_some() {
            Vec::new()
        } else {
            self.status(address).await?.companies
        };
        Ok(AccessReport {
            address: parsed.as_given().to_string(),
            generated_at: now,
            erased: history.erased,
            companies,
            suppressions: history.suppressions,
            events: history.events,
            consents: history.consents,
            evidence: history.evidence,
            sends: history.sends,
            retention: RetentionSummary {
                events_days: days.events,
                bounce_mail_days: days.bounce_mail,
                sends_days: days.sends,
                lifted_proof_days: days.lifted_proof,
                expired_suppression_days: days.expired_suppression,
            },
        })
    }
}
