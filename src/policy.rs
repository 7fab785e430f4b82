//! The one place that decides whether a mail may go to an address.
//!
//! Pure: it takes what the store knows about an address ([`AddressRecords`]) and a question
//! (company, brand, class, channel, time) and answers with a [`Verdict`]. No I/O, no clock.

use serde::Serialize;

use crate::config::PolicyConfig;
use crate::model::{
    AddressRecords, Channel, ContactStatus, MailClass, Reason, Scope, Source, SuppressionRecord,
    Timestamp,
};

/// The question: may mail of this company/brand and class go out on this channel?
#[derive(Debug, Clone, Copy)]
pub struct SendQuery<'a> {
    pub company: &'a str,
    pub brand: Option<&'a str>,
    pub class: MailClass,
    pub channel: Channel,
}

/// Why a mail is blocked: a suppression, or the address's erasure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockReason {
    Suppressed(Reason),
    Erased,
}

impl BlockReason {
    /// `hard_bounce`, …, `manual`, or `erased`.
    pub fn as_str(self) -> &'static str {
        match self {
            BlockReason::Suppressed(reason) => reason.as_str(),
            BlockReason::Erased => "erased",
        }
    }
}

impl utoipa::PartialSchema for BlockReason {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let mut words: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        words.push("erased");
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .enum_values(Some(words))
            .into()
    }
}

impl utoipa::ToSchema for BlockReason {}

impl Serialize for BlockReason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One thing that blocks the mail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Blocking {
    pub reason: BlockReason,
    pub scope: Scope,
    #[serde(serialize_with = "crate::model::serialize_time")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    pub note: Option<String>,
    pub evidence_id: Option<i64>,
    /// Where the suppression came from (`unverified_mail`: an unsubscribe mail whose sender was
    /// not authenticated); `None` for an erasure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    /// The suppression row, `None` for an erasure.
    #[serde(skip)]
    #[schema(ignore)]
    pub suppression_id: Option<i64>,
}

/// The answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Verdict {
    pub allowed: bool,
    pub status: ContactStatus,
    pub blocking: Vec<Blocking>,
}

impl Verdict {
    /// What blocks the recipient, as a sending platform logs it:
    /// `unsubscribed (brand:acme/news)`, `bounced (global)`, `erased (data-protection request)`.
    pub fn describe(&self) -> String {
        let Some(first) = self.blocking.first() else {
            return "blocked".into();
        };
        match first.reason {
            BlockReason::Erased => "erased (data-protection request)".into(),
            BlockReason::Suppressed(reason) => {
                let word = match reason {
                    Reason::Unsubscribe => "unsubscribed",
                    Reason::Complaint => "complained",
                    Reason::HardBounce | Reason::SoftBounce => "bounced",
                    Reason::Manual => "blocked",
                };
                format!("{word} ({})", first.scope)
            }
        }
    }
}

/// The decision rules, configured.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    service_blocked_by: Vec<Reason>,
}

impl Policy {
    /// Rules from the `[policy]` config.
    pub fn new(config: &PolicyConfig) -> Self {
        Self {
            service_blocked_by: config.service_blocked_by.clone(),
        }
    }

    /// May this mail go to the address whose records these are?
    pub fn check(&self, records: &AddressRecords, query: SendQuery<'_>, now: Timestamp) -> Verdict {
        let mut blocking = Vec::new();
        if let Some(erased_at) =
            erased_and_not_reconsented(records, query.company, query.brand, query.channel)
            && query.class == MailClass::Promotional
        {
            blocking.push(Blocking {
                reason: BlockReason::Erased,
                scope: Scope::Global,
                created_at: erased_at,
                note: Some("erased on a data-protection request".into()),
                evidence_id: None,
                source: None,
                suppression_id: None,
            });
        }
        for suppression in standing(records, query.company, query.brand, query.channel, now) {
            if query.class == MailClass::Service
                && !self.service_blocked_by.contains(&suppression.reason)
            {
                continue;
            }
            blocking.push(Blocking {
                reason: BlockReason::Suppressed(suppression.reason),
                scope: suppression.scope.clone(),
                created_at: suppression.created_at,
                note: suppression.note.clone(),
                evidence_id: suppression.evidence_id,
                source: Some(suppression.source),
                suppression_id: Some(suppression.id),
            });
        }
        Verdict {
            allowed: blocking.is_empty(),
            status: status(records, query.company, query.brand, now),
            blocking,
        }
    }
}

/// The e-mail status for a company (and brand): `D` erased, `B` bounced, `U` opted out, `A` active.
pub fn status(
    records: &AddressRecords,
    company: &str,
    brand: Option<&str>,
    now: Timestamp,
) -> ContactStatus {
    if erased_and_not_reconsented(records, company, brand, Channel::Email).is_some() {
        return ContactStatus::Deleted;
    }
    let standing: Vec<_> = standing(records, company, brand, Channel::Email, now).collect();
    if standing.iter().any(|s| s.reason.is_bounce()) {
        ContactStatus::Bounced
    } else if standing.is_empty() {
        ContactStatus::Active
    } else {
        ContactStatus::Unsubscribed
    }
}

/// Suppressions in force for this mail: right channel, covering scope, not expired, and for the
/// owner's opt-outs, not followed by their confirmed opt-in.
fn standing<'r>(
    records: &'r AddressRecords,
    company: &'r str,
    brand: Option<&'r str>,
    channel: Channel,
    now: Timestamp,
) -> impl Iterator<Item = &'r SuppressionRecord> + 'r {
    records.suppressions.iter().filter(move |s| {
        s.channel == channel
            && s.is_in_force(now)
            && s.scope.covers(company, brand)
            && !(s.reason.is_owner_opt_out()
                && consented_after(records, company, brand, channel, s.created_at))
    })
}

fn erased_and_not_reconsented(
    records: &AddressRecords,
    company: &str,
    brand: Option<&str>,
    channel: Channel,
) -> Option<Timestamp> {
    records
        .erased_at
        .filter(|&erased_at| !consented_after(records, company, brand, channel, erased_at))
}

fn consented_after(
    records: &AddressRecords,
    company: &str,
    brand: Option<&str>,
    channel: Channel,
    after: Timestamp,
) -> bool {
    records
        .consents
        .iter()
        .any(|c| c.channel == channel && c.scope.covers(company, brand) && c.confirmed_at > after)
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone, Utc};

    use super::*;
    use crate::model::{ConsentRecord, Source};

    fn at(day: u32) -> Timestamp {
        Utc.with_ymd_and_hms(2026, 1, day, 12, 0, 0).unwrap()
    }

    fn suppression(reason: Reason, scope: Scope, day: u32) -> SuppressionRecord {
        SuppressionRecord {
            id: i64::from(day),
            address: Some("jane@example.org".into()),
            channel: Channel::Email,
            scope,
            reason,
            source: Source::Cli,
            note: None,
            created_at: at(day),
            expires_at: None,
            evidence_id: None,
        }
    }

    fn company(c: &str) -> Scope {
        Scope::Company(c.into())
    }

    fn brand(c: &str, b: &str) -> Scope {
        Scope::Brand {
            company: c.into(),
            brand: b.into(),
        }
    }

    fn query<'a>(company: &'a str, brand: Option<&'a str>, class: MailClass) -> SendQuery<'a> {
        SendQuery {
            company,
            brand,
            class,
            channel: Channel::Email,
        }
    }

    #[test]
    fn decides_by_reason_scope_and_class() {
        use MailClass::{Promotional as P, Service as S};
        use Reason::*;
        let now = at(20);
        let policy = Policy::default();
        for (suppression, q, allowed, status) in [
            (
                suppression(HardBounce, Scope::Global, 1),
                query("acme", Some("news"), P),
                false,
                ContactStatus::Bounced,
            ),
            (
                suppression(HardBounce, Scope::Global, 1),
                query("globex", None, P),
                false,
                ContactStatus::Bounced,
            ),
            (
                suppression(SoftBounce, Scope::Global, 1),
                query("acme", None, P),
                false,
                ContactStatus::Bounced,
            ),
            (
                suppression(HardBounce, Scope::Global, 1),
                query("acme", None, S),
                true,
                ContactStatus::Bounced,
            ),
            (
                suppression(Complaint, company("acme"), 1),
                query("acme", Some("shop"), P),
                false,
                ContactStatus::Unsubscribed,
            ),
            (
                suppression(Complaint, company("acme"), 1),
                query("globex", Some("weekly"), P),
                true,
                ContactStatus::Active,
            ),
            (
                suppression(Unsubscribe, company("acme"), 1),
                query("acme", Some("news"), P),
                false,
                ContactStatus::Unsubscribed,
            ),
            (
                suppression(Unsubscribe, brand("acme", "news"), 1),
                query("acme", Some("news"), P),
                false,
                ContactStatus::Unsubscribed,
            ),
            (
                suppression(Unsubscribe, brand("acme", "news"), 1),
                query("acme", Some("shop"), P),
                true,
                ContactStatus::Active,
            ),
            (
                suppression(Unsubscribe, brand("acme", "news"), 1),
                query("acme", Some("news"), S),
                true,
                ContactStatus::Unsubscribed,
            ),
            (
                suppression(Manual, Scope::Global, 1),
                query("acme", None, P),
                false,
                ContactStatus::Unsubscribed,
            ),
        ] {
            let records = AddressRecords {
                suppressions: vec![suppression.clone()],
                ..Default::default()
            };
            let verdict = policy.check(&records, q, now);
            assert_eq!(verdict.allowed, allowed, "{suppression:?} {q:?}");
            assert_eq!(verdict.status, status, "{suppression:?} {q:?}");
            assert_eq!(verdict.blocking.is_empty(), allowed);
        }
    }

    #[test]
    fn service_mail_is_blocked_only_by_the_configured_reasons() {
        let policy = Policy::new(&PolicyConfig {
            service_blocked_by: vec![Reason::HardBounce],
        });
        let records = AddressRecords {
            suppressions: vec![
                suppression(Reason::HardBounce, Scope::Global, 1),
                suppression(Reason::Unsubscribe, company("acme"), 2),
            ],
            ..Default::default()
        };
        let verdict = policy.check(&records, query("acme", None, MailClass::Service), at(3));
        assert!(!verdict.allowed);
        assert_eq!(verdict.blocking.len(), 1);
        assert_eq!(
            verdict.blocking[0].reason,
            BlockReason::Suppressed(Reason::HardBounce)
        );
    }

    #[test]
    fn expired_suppressions_do_not_block() {
        let mut soft = suppression(Reason::SoftBounce, Scope::Global, 1);
        soft.expires_at = Some(at(10));
        let records = AddressRecords {
            suppressions: vec![soft],
            ..Default::default()
        };
        let policy = Policy::default();
        assert!(
            !policy
                .check(&records, query("acme", None, MailClass::Promotional), at(9))
                .allowed
        );
        let later = policy.check(
            &records,
            query("acme", None, MailClass::Promotional),
            at(10),
        );
        assert!(later.allowed);
        assert_eq!(later.status, ContactStatus::Active);
    }

    #[test]
    fn a_newer_consent_lifts_the_opt_out_for_its_scope_only() {
        let records = AddressRecords {
            suppressions: vec![
                suppression(Reason::Unsubscribe, company("acme"), 1),
                suppression(Reason::HardBounce, Scope::Global, 1),
            ],
            consents: vec![ConsentRecord {
                id: 1,
                channel: Channel::Email,
                scope: brand("acme", "news"),
                confirmed_at: at(5),
            }],
            erased_at: None,
        };
        let policy = Policy::default();
        let news = policy.check(
            &records,
            query("acme", Some("news"), MailClass::Promotional),
            at(6),
        );
        assert_eq!(news.blocking.len(), 1, "the bounce still blocks: {news:?}");
        assert_eq!(
            news.blocking[0].reason,
            BlockReason::Suppressed(Reason::HardBounce)
        );
        let shop = policy.check(
            &records,
            query("acme", Some("shop"), MailClass::Promotional),
            at(6),
        );
        assert_eq!(
            shop.blocking.len(),
            2,
            "the company-wide opt-out still stands for other brands"
        );

        let mut older_consent = records.clone();
        older_consent.consents[0].confirmed_at = at(1) - Duration::hours(1);
        let news = policy.check(
            &older_consent,
            query("acme", Some("news"), MailClass::Promotional),
            at(6),
        );
        assert_eq!(
            news.blocking.len(),
            2,
            "a consent older than the opt-out lifts nothing"
        );
    }

    #[test]
    fn erased_addresses_are_deleted_and_blocked_until_a_fresh_opt_in() {
        let mut records = AddressRecords {
            erased_at: Some(at(3)),
            ..Default::default()
        };
        let policy = Policy::default();
        let verdict = policy.check(&records, query("acme", None, MailClass::Promotional), at(4));
        assert!(!verdict.allowed);
        assert_eq!(verdict.status, ContactStatus::Deleted);
        assert_eq!(verdict.blocking[0].reason.as_str(), "erased");
        assert!(
            policy
                .check(&records, query("acme", None, MailClass::Service), at(4))
                .allowed
        );

        records.consents.push(ConsentRecord {
            id: 1,
            channel: Channel::Email,
            scope: company("acme"),
            confirmed_at: at(5),
        });
        let verdict = policy.check(&records, query("acme", None, MailClass::Promotional), at(6));
        assert!(verdict.allowed);
        assert_eq!(verdict.status, ContactStatus::Active);
        assert_eq!(
            status(&records, "globex", None, at(6)),
            ContactStatus::Deleted
        );
    }

    #[test]
    fn channels_are_separate() {
        let mut postal = suppression(Reason::Manual, brand("acme", "news"), 1);
        postal.channel = Channel::Postal;
        let records = AddressRecords {
            suppressions: vec![postal],
            ..Default::default()
        };
        let policy = Policy::default();
        assert!(
            policy
                .check(
                    &records,
                    query("acme", Some("news"), MailClass::Promotional),
                    at(2)
                )
                .allowed
        );
        let by_post = SendQuery {
            channel: Channel::Postal,
            ..query("acme", Some("news"), MailClass::Promotional)
        };
        assert!(!policy.check(&records, by_post, at(2)).allowed);
    }
}
