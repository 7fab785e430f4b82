//! Everything held about one address, for the access report (GDPR Art. 15): its suppressions,
//! events, consents, evidence (metadata, and the headers of the mails that prove opt-outs) and
//! sends, each with the date the retention purge will remove it. The dates follow the purge's
//! own rules (`retention`).

use sqlx::Row;

use super::retention::RetentionDays;
use super::{Store, StoreError, rows};
use crate::model::{Channel, Reason, Source, Timestamp};
use crate::secret::AddressHash;

/// How long an item is kept, and by which rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Keep {
    /// When the purge removes it; `None` while what it proves stands, or never.
    #[serde(serialize_with = "crate::model::serialize_opt_time")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub until: Option<Timestamp>,
    pub rule: KeepRule,
}

/// Why an item is kept as long as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum KeepRule {
    /// `[retention] events_days` after it occurred.
    EventsDays,
    /// `[retention] bounce_mail_days` after it arrived.
    BounceMailDays,
    /// `[retention] sends_days` after the send.
    SendsDays,
    /// `[retention] lifted_proof_days` after the lift.
    LiftedProofDays,
    /// `[retention] expired_suppression_days` after the expiry.
    ExpiredSuppressionDays,
    /// While the suppression stands (it, or the proof of it).
    WhileStanding,
    /// As long as the suppression that follows from it is kept.
    WithSuppression,
    /// Not purged: the proof of a consent, the record of an erasure.
    Indefinitely,
}

/// Who may lift a suppression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LiftPath {
    /// Only the owner's fresh confirmed opt-in (their own opt-out or complaint).
    OwnersConfirmedOptIn,
    /// Staff, with a note (bounces, staff blocks, unauthenticated unsubscribe mails), or the
    /// owner's confirmed opt-in.
    Staff,
    /// It no longer stands.
    NotInForce,
}

/// A suppression of the address, standing or not.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct HeldSuppression {
    pub id: i64,
    pub channel: Channel,
    /// `""`: every company.
    pub company: String,
    /// `""`: every brand of the company.
    pub brand: String,
    pub reason: Reason,
    pub source: Source,
    pub note: Option<String>,
    #[serde(serialize_with = "crate::model::serialize_time")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    /// Who recorded it by hand (`staff:USER`, `api:TOKEN`, `cli:USER`); `None` for mail and clicks.
    pub created_by: Option<String>,
    #[serde(serialize_with = "crate::model::serialize_opt_time")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<Timestamp>,
    #[serde(serialize_with = "crate::model::serialize_opt_time")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub lifted_at: Option<Timestamp>,
    pub lifted_by: Option<String>,
    pub lift_note: Option<String>,
    pub evidence_id: Option<i64>,
    pub standing: bool,
    pub lift: LiftPath,
    pub kept: Keep,
    #[serde(skip)]
    event_id: Option<i64>,
}

/// An event about the address.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct HeldEvent {
    pub id: i64,
    #[serde(serialize_with = "crate::model::serialize_time")]
    #[schema(value_type = String, format = DateTime)]
    pub occurred_at: Timestamp,
    pub kind: String,
    pub company: String,
    pub brand: String,
    pub reason: Option<String>,
    pub status: Option<String>,
    pub reply_code: Option<String>,
    pub diagnostic: Option<String>,
    pub message_id: Option<String>,
    pub verified: bool,
    pub evidence_id: Option<i64>,
    pub source: Option<String>,
    pub note: Option<String>,
    /// The bounce rule that decided the reason.
    pub rule: Option<String>,
    pub kept: Keep,
}

/// A confirmed opt-in of the address; its proof named by its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct HeldConsent {
    pub id: i64,
    pub channel: Channel,
    pub company: String,
    pub brand: String,
    #[serde(serialize_with = "crate::model::serialize_time")]
    #[schema(value_type = String, format = DateTime)]
    pub confirmed_at: Timestamp,
    #[serde(serialize_with = "crate::model::serialize_time")]
    #[schema(value_type = String, format = DateTime)]
    pub recorded_at: Timestamp,
    pub source: String,
    pub proof_sha256: String,
    pub proof_name: Option<String>,
    pub kept: Keep,
}

/// A stored raw mail (or one-click request) about the address: metadata; for the proof of an
/// opt-out also its header section.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct HeldEvidence {
    pub id: i64,
    #[serde(serialize_with = "crate::model::serialize_time")]
    #[schema(value_type = String, format = DateTime)]
    pub received_at: Timestamp,
    /// The kind of the event it arrived as (bounce, unsubscribe, complaint, auto_reply …).
    pub kind: String,
    pub size: i64,
    pub sha256: String,
    /// The original mail's header section, for opt-outs and complaints (else `None`).
    pub headers: Option<String>,
    pub kept: Keep,
}

/// A mail sent to the address through the relay (metadata only).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct HeldSend {
    pub id: i64,
    pub company: String,
    pub brand: String,
    pub class: String,
    pub message_id: String,
    #[serde(serialize_with = "crate::model::serialize_time")]
    #[schema(value_type = String, format = DateTime)]
    pub sent_at: Timestamp,
    pub kept: Keep,
}

/// The record of an erasure.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct ErasureRecord {
    #[serde(serialize_with = "crate::model::serialize_time")]
    #[schema(value_type = String, format = DateTime)]
    pub erased_at: Timestamp,
    /// Who erased it (the actor the erasure named).
    pub erased_by: Option<String>,
}

/// Everything held about one address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressHistory {
    pub erased: Option<ErasureRecord>,
    pub suppressions: Vec<HeldSuppression>,
    pub events: Vec<HeldEvent>,
    pub consents: Vec<HeldConsent>,
    pub evidence: Vec<HeldEvidence>,
    pub sends: Vec<HeldSend>,
}

const OPT_OUT_KINDS: [&str; 3] = ["unsubscribe", "complaint", "unsubscribe_held"];

fn after(at: Timestamp, days: u32) -> Option<Timestamp> {
    Some(at + chrono::Duration::days(i64::from(days)))
}

impl Store {
    /// Everything held under `hash`, with the date each item goes at `days`' retention. An
    /// erased address's history holds its erasure record and nothing more.
    ///
    /// # Errors
    /// The database failed.
    pub async fn address_history(
        &self,
        hash: &AddressHash,
        days: RetentionDays,
        now: Timestamp,
    ) -> Result<AddressHistory, StoreError> {
        let erased = sqlx::query("SELECT erased_at FROM erasures WHERE address_hash = $1")
            .bind(hash.as_str())
            .fetch_optional(&self.pool)
            .await?;
        if let Some(row) = erased {
            let by = sqlx::query(
                "SELECT note FROM events WHERE address_hash = $1 AND kind = 'erase' ORDER BY id LIMIT 1",
            )
            .bind(hash.as_str())
            .fetch_optional(&self.pool)
            .await?
            .map(|row| rows::opt_text(&row, "note"))
            .transpose()?
            .flatten()
            .map(|note| note.trim_start_matches("erased by ").to_string());
            return Ok(AddressHistory {
                erased: Some(ErasureRecord {
                    erased_at: rows::time(&row, "erased_at")?,
                    erased_by: by,
                }),
                ..AddressHistory::default()
            });
        }
        let suppressions = self.held_suppressions(hash, days, now).await?;
        let events = self.held_events(hash, days, &suppressions).await?;
        let evidence = self.held_evidence(&events, &suppressions, days).await?;
        let consents = sqlx::query(
            "SELECT id, channel, company, brand, confirmed_at, recorded_at, source, proof_sha256, proof_name \
             FROM consents WHERE address_hash = $1 ORDER BY id",
        )
        .bind(hash.as_str())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| {
            Ok(HeldConsent {
                id: rows::int(row, "id")?,
                channel: rows::word(row, "channel")?,
                company: rows::text(row, "company")?,
                brand: rows::text(row, "brand")?,
                confirmed_at: rows::time(row, "confirmed_at")?,
                recorded_at: rows::time(row, "recorded_at")?,
                source: rows::text(row, "source")?,
                proof_sha256: rows::text(row, "proof_sha256")?,
                proof_name: rows::opt_text(row, "proof_name")?,
                kept: Keep {
                    until: None,
                    rule: KeepRule::Indefinitely,
                },
            })
        })
        .collect::<Result<_, StoreError>>()?;
        let sends = sqlx::query(
            "SELECT id, company, brand, class, message_id, sent_at FROM sends WHERE address_hash = $1 ORDER BY id",
        )
        .bind(hash.as_str())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| {
            let sent_at = rows::time(row, "sent_at")?;
            Ok(HeldSend {
                id: rows::int(row, "id")?,
                company: rows::text(row, "company")?,
                brand: rows::text(row, "brand")?,
                class: rows::text(row, "class")?,
                message_id: rows::text(row, "message_id")?,
                sent_at,
                kept: Keep {
                    until: after(sent_at, days.sends),
                    rule: KeepRule::SendsDays,
                },
            })
        })
        .collect::<Result<_, StoreError>>()?;
        Ok(AddressHistory {
            erased: None,
            suppressions,
            events,
            consents,
            evidence,
            sends,
        })
    }

    async fn held_suppressions(
        &self,
        hash: &AddressHash,
        days: RetentionDays,
        now: Timestamp,
    ) -> Result<Vec<HeldSuppression>, StoreError> {
        sqlx::query(
            "SELECT id, channel, company, brand, reason, source, note, created_at, created_by, \
               expires_at, evidence_id, event_id, lifted_at, lifted_by, lift_note \
             FROM suppressions WHERE address_hash = $1 ORDER BY id",
        )
        .bind(hash.as_str())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| {
            let reason: Reason = rows::word(row, "reason")?;
            let source: Source = rows::word(row, "source")?;
            let expires_at = rows::opt_time(row, "expires_at")?;
            let lifted_at = rows::opt_time(row, "lifted_at")?;
            let lifted_by = rows::opt_text(row, "lifted_by")?;
            let expired = lifted_by.as_deref() == Some("expiry")
                || (lifted_at.is_none() && expires_at.is_some_and(|t| t <= now));
            let standing = lifted_at.is_none() && !expired;
            let kept = match (standing, expired, lifted_at) {
                (true, _, _) => Keep {
                    // A standing suppression with an expiry goes a while after it expires.
                    until: expires_at.and_then(|t| after(t, days.expired_suppression)),
                    rule: if expires_at.is_some() {
                        KeepRule::ExpiredSuppressionDays
                    } else {
                        KeepRule::WhileStanding
                    },
                },
                (false, true, _) => Keep {
                    until: expires_at.and_then(|t| after(t, days.expired_suppression)),
                    rule: KeepRule::ExpiredSuppressionDays,
                },
                (false, false, lifted) => Keep {
                    until: lifted.and_then(|t| after(t, days.lifted_proof)),
                    rule: KeepRule::LiftedProofDays,
                },
            };
            let lift = if !standing {
                LiftPath::NotInForce
            } else if reason.is_owner_opt_out() && source != Source::UnverifiedMail {
                LiftPath::OwnersConfirmedOptIn
            } else {
                LiftPath::Staff
            };
            Ok(HeldSuppression {
                id: rows::int(row, "id")?,
                channel: rows::word(row, "channel")?,
                company: rows::text(row, "company")?,
                brand: rows::text(row, "brand")?,
                reason,
                source,
                note: rows::opt_text(row, "note")?,
                created_at: rows::time(row, "created_at")?,
                created_by: rows::opt_text(row, "created_by")?,
                expires_at,
                lifted_at,
                lifted_by,
                lift_note: rows::opt_text(row, "lift_note")?,
                evidence_id: rows::opt_int(row, "evidence_id")?,
                standing,
                lift,
                kept,
                event_id: rows::opt_int(row, "event_id")?,
            })
        })
        .collect()
    }

    async fn held_events(
        &self,
        hash: &AddressHash,
        days: RetentionDays,
        suppressions: &[HeldSuppression],
    ) -> Result<Vec<HeldEvent>, StoreError> {
        sqlx::query(
            "SELECT id, occurred_at, kind, company, brand, reason, status, reply_code, diagnostic, \
               message_id, verified, evidence_id, source, note, rule \
             FROM events WHERE address_hash = $1 ORDER BY id",
        )
        .bind(hash.as_str())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| {
            let id = rows::int(row, "id")?;
            let occurred_at = rows::time(row, "occurred_at")?;
            let kind = rows::text(row, "kind")?;
            let kept = if kind == "erase" {
                Keep {
                    until: None,
                    rule: KeepRule::Indefinitely,
                }
            } else if suppressions.iter().any(|s| s.event_id == Some(id)) {
                Keep {
                    until: None,
                    rule: KeepRule::WithSuppression,
                }
            } else {
                Keep {
                    until: after(occurred_at, days.events),
                    rule: KeepRule::EventsDays,
                }
            };
            Ok(HeldEvent {
                id,
                occurred_at,
                kind,
                company: rows::text(row, "company")?,
                brand: rows::text(row, "brand")?,
                reason: rows::opt_text(row, "reason")?,
                status: rows::opt_text(row, "status")?,
                reply_code: rows::opt_text(row, "reply_code")?,
                diagnostic: rows::opt_text(row, "diagnostic")?,
                message_id: rows::opt_text(row, "message_id")?,
                verified: rows::int(row, "verified")? != 0,
                evidence_id: rows::opt_int(row, "evidence_id")?,
                source: rows::opt_text(row, "source")?,
                note: rows::opt_text(row, "note")?,
                rule: rows::opt_text(row, "rule")?,
                kept,
            })
        })
        .collect()
    }

    async fn held_evidence(
        &self,
        events: &[HeldEvent],
        suppressions: &[HeldSuppression],
        days: RetentionDays,
    ) -> Result<Vec<HeldEvidence>, StoreError> {
        let mut ids: Vec<i64> = events
            .iter()
            .filter_map(|e| e.evidence_id)
            .chain(suppressions.iter().filter_map(|s| s.evidence_id))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let mut held = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(row) = sqlx::query(
                "SELECT id, received_at, sha256, size, raw FROM evidence WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            else {
                continue;
            };
            let received_at = rows::time(&row, "received_at")?;
            let event = events.iter().find(|e| e.evidence_id == Some(id));
            let proving: Vec<&HeldSuppression> = suppressions
                .iter()
                .filter(|s| {
                    s.evidence_id == Some(id)
                        || s.event_id.is_some_and(|e| {
                            events
                                .iter()
                                .any(|ev| ev.id == e && ev.evidence_id == Some(id))
                        })
                })
                .collect();
            let kind = event.map(|e| e.kind.clone()).unwrap_or_else(|| {
                proving
                    .first()
                    .map(|s| s.reason.as_str().to_string())
                    .unwrap_or_else(|| "mail".into())
            });
            let opt_out = OPT_OUT_KINDS.contains(&kind.as_str())
                || proving.iter().any(|s| s.reason.is_owner_opt_out());
            // Other addresses' standing suppressions may rest on it too (the purge checks
            // them); this report dates it by this address's own.
            let kept = if !opt_out {
                Keep {
                    until: after(received_at, days.bounce_mail),
                    rule: KeepRule::BounceMailDays,
                }
            } else if proving.iter().any(|s| s.standing) {
                Keep {
                    until: None,
                    rule: KeepRule::WhileStanding,
                }
            } else {
                let from = proving
                    .iter()
                    .filter_map(|s| s.lifted_at.or(s.expires_at))
                    .max()
                    .unwrap_or(received_at)
                    .max(received_at);
                Keep {
                    until: after(from, days.lifted_proof),
                    rule: KeepRule::LiftedProofDays,
                }
            };
            let raw: Vec<u8> = row.try_get("raw")?;
            held.push(HeldEvidence {
                id,
                received_at,
                kind,
                size: rows::int(&row, "size")?,
                sha256: rows::text(&row, "sha256")?,
                headers: opt_out.then(|| header_section(&raw)),
                kept,
            });
        }
        Ok(held)
    }
}

/// The header section of a raw mail (up to the first empty line), as text.
fn header_section(raw: &[u8]) -> String {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 2)
        .or_else(|| raw.windows(2).position(|w| w == b"\n\n").map(|i| i + 1))
        .unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[..end]).into_owned()
}
