//! The shared vocabulary: suppression reasons and sources, channels, scopes, mail classes and the
//! contact statuses users know (A, U, B, D).
//!
//! A leaf: plain types with their text forms, as stored in the database and printed by the CLI.
//! No I/O, no rules (those live in `policy`).

use std::fmt;

use serde::{Deserialize, Serialize};

/// A text form was not one of a vocabulary's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a valid {what}; expected one of: {expected}")]
pub struct UnknownWord {
    pub what: &'static str,
    pub value: String,
    pub expected: &'static str,
}

/// Declares a closed vocabulary with its text forms, `FromStr`, `Display` and serde as text.
macro_rules! vocabulary {
    ($(#[$meta:meta])* $name:ident, $what:literal { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "String", into = "&'static str")]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            /// Every word of this vocabulary.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The text form, as stored and printed.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::model::UnknownWord;
            fn from_str(s: &str) -> Result<Self, $crate::model::UnknownWord> {
                match s.trim() {
                    $($text => Ok($name::$variant),)+
                    other => Err($crate::model::UnknownWord {
                        what: $what,
                        value: other.to_string(),
                        expected: concat!($($text, " "),+),
                    }),
                }
            }
        }

        impl TryFrom<String> for $name {
            type Error = $crate::model::UnknownWord;
            fn try_from(s: String) -> Result<Self, $crate::model::UnknownWord> { s.parse() }
        }

        impl From<$name> for &'static str {
            fn from(v: $name) -> &'static str { v.as_str() }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str(self.as_str()) }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .enum_values(Some([$($text),+]))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

pub(crate) use vocabulary;

vocabulary! {
    /// Why an address is suppressed.
    Reason, "reason" {
        HardBounce => "hard_bounce",
        SoftBounce => "soft_bounce",
        Complaint => "complaint",
        Unsubscribe => "unsubscribe",
        Manual => "manual",
    }
}

impl Reason {
    /// Bounces say the mailbox is dead: they are global, whoever sends.
    pub fn is_bounce(self) -> bool {
        matches!(self, Reason::HardBounce | Reason::SoftBounce)
    }

    /// Opt-outs belong to the address owner: only their confirmed opt-in lifts them.
    pub fn is_owner_opt_out(self) -> bool {
        matches!(self, Reason::Complaint | Reason::Unsubscribe)
    }
}

vocabulary! {
    /// Where a suppression came from.
    Source, "source" {
        Dsn => "dsn",
        Arf => "arf",
        UnsubscribeMail => "unsubscribe_mail",
        /// An unsubscribe mail whose From could not be authenticated (no aligned DKIM or SPF
        /// pass): honoured, but staff may lift it with a note.
        UnverifiedMail => "unverified_mail",
        OneClick => "one_click",
        Api => "api",
        Cli => "cli",
        Import => "import",
        /// Recorded by a staff member on the staff web page (`created_by` names who).
        Staff => "staff",
    }
}

vocabulary! {
    /// The way mail reaches a person: e-mail, or letter post (blocks staff record for letter shops).
    Channel, "channel" {
        Email => "email",
        Postal => "postal",
    }
}

vocabulary! {
    /// What a mail is: promotional mail respects opt-outs, service mail (order confirmations,
    /// cancellations) passes them. Unknown means promotional.
    MailClass, "mail class" {
        Promotional => "promotional",
        Service => "service",
    }
}

// Spelled out rather than derived: the safe default is a decision, not an accident of order.
#[allow(clippy::derivable_impls)]
impl Default for MailClass {
    fn default() -> Self {
        MailClass::Promotional
    }
}

#[allow(clippy::derivable_impls)]
impl Default for Channel {
    fn default() -> Self {
        Channel::Email
    }
}

/// A Message-ID in the one form it is stored and compared in: without surrounding white space and
/// angle brackets (`<a@b>` and `a@b` are the same message).
pub fn normalize_message_id(id: &str) -> &str {
    let id = id.trim();
    id.strip_prefix('<')
        .and_then(|inner| inner.strip_suffix('>'))
        .unwrap_or(id)
        .trim()
}

/// A contact's status as users know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum ContactStatus {
    /// Active: promotional mail may go out.
    #[serde(rename = "A")]
    Active,
    /// Unsubscribed (an opt-out, complaint or manual block applies).
    #[serde(rename = "U")]
    Unsubscribed,
    /// Bounced: the mailbox is dead or keeps failing.
    #[serde(rename = "B")]
    Bounced,
    /// Deleted: erased on a data-protection request; only a keyed hash is left.
    #[serde(rename = "D")]
    Deleted,
}

impl ContactStatus {
    /// The one-letter code.
    pub fn code(self) -> &'static str {
        match self {
            ContactStatus::Active => "A",
            ContactStatus::Unsubscribed => "U",
            ContactStatus::Bounced => "B",
            ContactStatus::Deleted => "D",
        }
    }
}

impl fmt::Display for ContactStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// Whom a suppression or consent covers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Every company and brand.
    Global,
    /// Every brand of one company.
    Company(String),
    /// One brand of one company.
    Brand { company: String, brand: String },
}

impl Scope {
    /// Builds a scope from optional company and brand (a brand without company is not a scope).
    pub fn from_parts(company: Option<&str>, brand: Option<&str>) -> Option<Scope> {
        let company = company.filter(|c| !c.is_empty());
        let brand = brand.filter(|b| !b.is_empty());
        match (company, brand) {
            (None, None) => Some(Scope::Global),
            (Some(c), None) => Some(Scope::Company(c.to_string())),
            (Some(c), Some(b)) => Some(Scope::Brand {
                company: c.to_string(),
                brand: b.to_string(),
            }),
            (None, Some(_)) => None,
        }
    }

    /// The company and brand columns as stored ('' for "any").
    pub fn columns(&self) -> (&str, &str) {
        match self {
            Scope::Global => ("", ""),
            Scope::Company(c) => (c, ""),
            Scope::Brand { company, brand } => (company, brand),
        }
    }

    /// The company, if the scope names one.
    pub fn company(&self) -> Option<&str> {
        match self {
            Scope::Global => None,
            Scope::Company(c) | Scope::Brand { company: c, .. } => Some(c),
        }
    }

    /// The brand, if the scope names one.
    pub fn brand(&self) -> Option<&str> {
        match self {
            Scope::Brand { brand, .. } => Some(brand),
            _ => None,
        }
    }

    /// Whether mail of `company` (and `brand`, when known) falls under this scope.
    pub fn covers(&self, company: &str, brand: Option<&str>) -> bool {
        match self {
            Scope::Global => true,
            Scope::Company(c) => c == company,
            Scope::Brand {
                company: c,
                brand: b,
            } => c == company && brand == Some(b.as_str()),
        }
    }
}

impl fmt::Display for Scope {
    /// `global`, `company:acme` or `brand:acme/news`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Global => f.write_str("global"),
            Scope::Company(c) => write!(f, "company:{c}"),
            Scope::Brand { company, brand } => write!(f, "brand:{company}/{brand}"),
        }
    }
}

impl utoipa::PartialSchema for Scope {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some("`global`, `company:ID` or `brand:COMPANY/BRAND`"))
            .pattern(Some("^(global|company:[^/]+|brand:[^/]+/.+)$"))
            .into()
    }
}

impl utoipa::ToSchema for Scope {}

impl Serialize for Scope {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Timestamps are UTC throughout.
pub type Timestamp = chrono::DateTime<chrono::Utc>;

/// The one text form of timestamps, stored and printed: RFC 3339, UTC, microseconds (so they sort).
pub fn format_time(t: &Timestamp) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// Reads a timestamp: RFC 3339 (any offset), `YYYY-MM-DD HH:MM:SS` (UTC) or `YYYY-MM-DD` (midnight UTC).
pub fn parse_time(text: &str) -> Option<Timestamp> {
    let text = text.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&chrono::Utc));
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(text, format) {
            return Some(t.and_utc());
        }
    }
    let date = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    Some(date.and_hms_opt(0, 0, 0)?.and_utc())
}

/// Serde helper: reads an optional timestamp in any form [`parse_time`] accepts.
pub fn deserialize_opt_time<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Timestamp>, D::Error> {
    let text: Option<String> = Option::deserialize(d)?;
    match text.as_deref().map(str::trim) {
        None => Ok(None),
        Some(text) => parse_time(text).map(Some).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "{text:?} is not a time (use 2026-01-31T12:00:00Z or 2026-01-31)"
            ))
        }),
    }
}

/// Serde helper: a timestamp in its one text form.
pub fn serialize_time<S: serde::Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_time(t))
}

/// Serde helper: an optional timestamp in its one text form, or null.
pub fn serialize_opt_time<S: serde::Serializer>(
    t: &Option<Timestamp>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => serialize_time(t, s),
        None => s.serialize_none(),
    }
}

/// An active (not lifted) suppression as the decision needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SuppressionRecord {
    pub id: i64,
    /// The address as given; `None` once erased.
    pub address: Option<String>,
    pub channel: Channel,
    pub scope: Scope,
    pub reason: Reason,
    pub source: Source,
    pub note: Option<String>,
    #[serde(serialize_with = "serialize_time")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[serde(serialize_with = "serialize_opt_time")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<Timestamp>,
    pub evidence_id: Option<i64>,
}

impl SuppressionRecord {
    /// Whether the suppression still counts at `now`.
    pub fn is_in_force(&self, now: Timestamp) -> bool {
        self.expires_at.is_none_or(|t| t > now)
    }

    /// An opt-out its owner proved they made: only their confirmed opt-in lifts it. An
    /// unsubscribe mail whose sender could not be authenticated is not one (staff may lift it).
    pub fn is_owners_opt_out(&self) -> bool {
        self.reason.is_owner_opt_out() && self.source != Source::UnverifiedMail
    }
}

/// A confirmed opt-in: the only thing that lifts the owner's opt-out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentRecord {
    pub id: i64,
    pub channel: Channel,
    pub scope: Scope,
    pub confirmed_at: Timestamp,
}

/// Everything the store knows about one address that bears on a decision.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressRecords {
    pub suppressions: Vec<SuppressionRecord>,
    pub consents: Vec<ConsentRecord>,
    /// When the address was erased, if it was.
    pub erased_at: Option<Timestamp>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocabularies_round_trip_their_text_forms() {
        for reason in Reason::ALL {
            assert_eq!(reason.as_str().parse::<Reason>().unwrap(), *reason);
        }
        for source in Source::ALL {
            assert_eq!(source.as_str().parse::<Source>().unwrap(), *source);
        }
        let err = "bounced".parse::<Reason>().unwrap_err();
        assert!(err.to_string().contains("hard_bounce"), "{err}");
    }

    #[test]
    fn scopes_cover_their_mail() {
        let brand = Scope::from_parts(Some("acme"), Some("news")).unwrap();
        let company = Scope::from_parts(Some("acme"), None).unwrap();
        for (scope, company_id, brand_id, expected) in [
            (&Scope::Global, "other", None, true),
            (&company, "acme", Some("shop"), true),
            (&company, "acme", None, true),
            (&company, "other", Some("news"), false),
            (&brand, "acme", Some("news"), true),
            (&brand, "acme", Some("shop"), false),
            (&brand, "acme", None, false),
        ] {
            assert_eq!(
                scope.covers(company_id, brand_id),
                expected,
                "{scope} vs {company_id}/{brand_id:?}"
            );
        }
        assert_eq!(Scope::from_parts(None, Some("news")), None);
        assert_eq!(brand.to_string(), "brand:acme/news");
    }
}
