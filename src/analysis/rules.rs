//! Bounce rules as data: status-code tables and ordered text rules (`config/bounce-rules.toml`),
//! compiled once into one `RegexSet`, validated at start, extendable by the operator.

use std::collections::HashMap;

use regex::bytes::{RegexSet, RegexSetBuilder};
use serde::Deserialize;

use super::report::BounceReason;
use super::status::StatusCode;

/// The rules shipped with bouncegate.
pub const BUILTIN_RULES: &str = include_str!("../../config/bounce-rules.toml");

/// A rules file is unusable.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("bounce rules {origin}: {source}")]
    Parse {
        origin: String,
        source: Box<toml::de::Error>,
    },
    #[error("bounce rules {origin}: status key {key:?} is not of the form X.N.N")]
    StatusKey { origin: String, key: String },
    #[error("bounce rules {origin}: pseudo status of {reason} is {value:?}, not three digits")]
    PseudoStatus {
        origin: String,
        reason: String,
        value: String,
    },
    #[error("bounce rules {origin}: rule {index} ({reason}): {source}")]
    Pattern {
        origin: String,
        index: usize,
        reason: String,
        source: Box<regex::Error>,
    },
    #[error("bounce rules: the patterns are too large to compile together: {0}")]
    TooLarge(Box<regex::Error>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default)]
    status: StatusTables,
    #[serde(default)]
    pseudo_status: HashMap<BounceReason, String>,
    #[serde(default, rename = "rule")]
    rules: Vec<TextRule>,
    #[serde(default)]
    commands: HashMap<SmtpCommand, Vec<String>>,
    #[serde(default, rename = "command_override")]
    command_overrides: Vec<CommandOverride>,
    #[serde(default)]
    phrases: Phrases,
}

/// What a bounce says of the delivery as a whole, beside the reason.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Phrases {
    /// A bounce in prose that says any of these is a delay warning: delivery goes on.
    #[serde(default)]
    still_trying: Vec<String>,
    /// A diagnostic without a status or reply code that says any of these reports a temporary
    /// failure (its pseudo-code's class is 4).
    #[serde(default)]
    temporary: Vec<String>,
}

/// The SMTP stage a failure answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpCommand {
    Connect,
    Mail,
    Rcpt,
    Data,
    /// A remote server's reply (it carries a reply code) whose command the bounce does not name.
    Unknown,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandOverride {
    command: SmtpCommand,
    reasons: Vec<BounceReason>,
    becomes: BounceReason,
    /// Status codes (`X.N.N`, or `X.N.*` for every detail) for which the override does not apply.
    #[serde(default)]
    unless_status: Vec<String>,
    /// Phrases (patterns, as in text rules) so specific that the stage does not change them.
    #[serde(default)]
    unless_text: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusTables {
    #[serde(default)]
    decisive: HashMap<String, BounceReason>,
    #[serde(default)]
    fallback: HashMap<String, BounceReason>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TextRule {
    reason: BounceReason,
    patterns: Vec<String>,
}

/// Compiled rules.
#[derive(Debug, Clone)]
pub struct BounceRules {
    decisive: HashMap<(u16, u16), BounceReason>,
    fallback: HashMap<(u16, u16), BounceReason>,
    pseudo: HashMap<BounceReason, u16>,
    set: RegexSet,
    /// The reason of each pattern in `set`, in priority order.
    pattern_reasons: Vec<BounceReason>,
    commands: Vec<(SmtpCommand, regex::Regex)>,
    /// Every command phrase in one pattern: one scan finds the phrase named last.
    any_command: Option<regex::bytes::Regex>,
    command_overrides: HashMap<(SmtpCommand, BounceReason), StageOverride>,
    /// [`Phrases::still_trying`] of every file, in one pattern.
    still_trying: Option<regex::bytes::Regex>,
    /// [`Phrases::temporary`] of every file, in one pattern.
    temporary: Option<regex::bytes::Regex>,
}

/// What a reason becomes at one SMTP stage, except for some status codes.
#[derive(Debug, Clone)]
struct StageOverride {
    becomes: BounceReason,
    /// `(subject, detail)`; a detail of `None` stands for every detail.
    unless: Vec<(u16, Option<u16>)>,
    /// Text (lower-cased) for which the override does not apply.
    unless_text: Option<regex::Regex>,
}

impl BounceRules {
    /// The shipped rules.
    pub fn builtin() -> Self {
        Self::load(&[]).expect("the shipped bounce rules are valid")
    }

    /// The shipped rules extended by operator files (`(origin, text)`): their text rules are
    /// tried first, their status entries replace the shipped ones.
    ///
    /// # Errors
    /// A file is not valid TOML, names an unknown reason, has a bad status key or pattern.
    pub fn load(extensions: &[(String, String)]) -> Result<Self, RulesError> {
        let mut files = Vec::new();
        for (origin, text) in extensions {
            files.push((origin.clone(), parse(origin, text)?));
        }
        files.push((
            "(built in)".to_string(),
            parse("(built in)", BUILTIN_RULES)?,
        ));

        let mut rules = BounceRules {
            decisive: HashMap::new(),
            fallback: HashMap::new(),
            pseudo: HashMap::new(),
            set: RegexSet::empty(),
            pattern_reasons: Vec::new(),
            commands: Vec::new(),
            any_command: None,
            command_overrides: HashMap::new(),
            still_trying: None,
            temporary: None,
        };
        let mut patterns = Vec::new();
        let (mut still_trying, mut temporary) = (Vec::new(), Vec::new());
        // Later (built-in) tables only fill what earlier (operator) tables left open.
        for (origin, file) in &files {
            for (key, reason) in &file.status.decisive {
                rules
                    .decisive
                    .entry(status_key(origin, key)?)
                    .or_insert(*reason);
            }
            for (key, reason) in &file.status.fallback {
                rules
                    .fallback
                    .entry(status_key(origin, key)?)
                    .or_insert(*reason);
            }
            for (reason, value) in &file.pseudo_status {
                let detail = value
                    .parse::<u16>()
                    .ok()
                    .filter(|_| value.len() == 3)
                    .ok_or_else(|| RulesError::PseudoStatus {
                        origin: origin.clone(),
                        reason: reason.to_string(),
                        value: value.clone(),
                    })?;
                rules.pseudo.entry(*reason).or_insert(detail);
            }
            for (command, phrases) in &file.commands {
                for (index, phrase) in phrases.iter().enumerate() {
                    let regex = regex::RegexBuilder::new(phrase)
                        .case_insensitive(true)
                        .build()
                        .map_err(|e| RulesError::Pattern {
                            origin: origin.clone(),
                            index,
                            reason: format!("commands.{command:?}").to_lowercase(),
                            source: Box::new(e),
                        })?;
                    rules.commands.push((*command, regex));
                }
            }
            for o in &file.command_overrides {
                let unless = o
                    .unless_status
                    .iter()
                    .map(|key| match key.strip_suffix(".*") {
                        Some(subject) => status_key(origin, &format!("{subject}.0"))
                            .map(|(subject, _)| (subject, None)),
                        None => status_key(origin, key).map(|(s, d)| (s, Some(d))),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let unless_text = (!o.unless_text.is_empty())
                    .then(|| regex::Regex::new(&o.unless_text.join("|")))
                    .transpose()
                    .map_err(|e| RulesError::Pattern {
                        origin: origin.clone(),
                        index: 0,
                        reason: format!("command_override {:?}", o.command).to_lowercase(),
                        source: Box::new(e),
                    })?;
                for reason in &o.reasons {
                    rules
                        .command_overrides
                        .entry((o.command, *reason))
                        .or_insert_with(|| StageOverride {
                            becomes: o.becomes,
                            unless: unless.clone(),
                            unless_text: unless_text.clone(),
                        });
                }
            }
            for (list, phrases, name) in [
                (
                    &mut still_trying,
                    &file.phrases.still_trying,
                    "phrases.still_trying",
                ),
                (&mut temporary, &file.phrases.temporary, "phrases.temporary"),
            ] {
                for (index, phrase) in phrases.iter().enumerate() {
                    list.push(phrase_pattern(origin, index, name, phrase)?);
                }
            }
            for (index, rule) in file.rules.iter().enumerate() {
                for pattern in &rule.patterns {
                    regex::Regex::new(pattern).map_err(|e| RulesError::Pattern {
                        origin: origin.clone(),
                        index,
                        reason: rule.reason.to_string(),
                        source: Box::new(e),
                    })?;
                    patterns.push(pattern.clone());
                    rules.pattern_reasons.push(rule.reason);
                }
            }
        }
        let command_phrases: Vec<String> = rules
            .commands
            .iter()
            .map(|(_, regex)| format!("(?:{})", regex.as_str()))
            .collect();
        rules.any_command = any_of(&command_phrases)?;
        rules.still_trying = any_of(&still_trying)?;
        rules.temporary = any_of(&temporary)?;
        // ASCII word boundaries and case folding keep the whole set on the lazy DFA (Unicode
        // `\b` makes it fall back to the much slower PikeVM on any non-ASCII text); the text is
        // lower-cased before matching, and non-ASCII literals still match their UTF-8 bytes.
        rules.set = RegexSetBuilder::new(&patterns)
            .case_insensitive(patterns.iter().any(|p| has_upper_case_literal(p)))
            .unicode(false)
            .size_limit(64 << 20)
            .dfa_size_limit(64 << 20)
            .build()
            .map_err(|e| RulesError::TooLarge(Box::new(e)))?;
        Ok(rules)
    }

    /// The reason the first matching text rule gives, if any.
    pub fn match_text(&self, text: &str) -> Option<BounceReason> {
        if text.is_empty() {
            return None;
        }
        self.set
            .matches(text.as_bytes())
            .iter()
            .next()
            .map(|i| self.pattern_reasons[i])
    }

    /// Whether a bounce's own words say delivery goes on (a delay warning, not a failure).
    pub fn says_still_trying(&self, text: &str) -> bool {
        self.still_trying
            .as_ref()
            .is_some_and(|r| r.is_match(text.as_bytes()))
    }

    /// Whether a diagnostic calls the failure temporary (or gives up retrying a temporary one).
    pub fn says_temporary(&self, text: &str) -> bool {
        self.temporary
            .as_ref()
            .is_some_and(|r| r.is_match(text.as_bytes()))
    }

    /// The command a diagnostic says the failure answered: the one named last.
    pub fn command_in(&self, text: &str) -> Option<SmtpCommand> {
        // One scan for the last phrase, then which command's phrase it is.
        let last = self
            .any_command
            .as_ref()?
            .find_iter(text.as_bytes())
            .last()?;
        let named = String::from_utf8_lossy(last.as_bytes());
        self.commands
            .iter()
            .find(|(_, regex)| regex.is_match(&named))
            .map(|(command, _)| *command)
    }

    /// Whether some SMTP stage changes `reason` (so the stage is worth looking for).
    pub fn depends_on_stage(&self, reason: BounceReason) -> bool {
        self.command_overrides.keys().any(|(_, r)| *r == reason)
    }

    /// What `reason` (with this status, said in this lower-cased `text`) becomes when the
    /// failure answered `command`.
    pub fn at_command(
        &self,
        command: SmtpCommand,
        reason: BounceReason,
        status: Option<StatusCode>,
        text: &str,
    ) -> BounceReason {
        match self.command_overrides.get(&(command, reason)) {
            Some(o)
                if !status.is_some_and(|s| {
                    o.unless.iter().any(|&(subject, detail)| {
                        subject == s.subject && detail.is_none_or(|d| d == s.detail)
                    })
                }) && !o.unless_text.as_ref().is_some_and(|t| t.is_match(text)) =>
            {
                o.becomes
            }
            _ => reason,
        }
    }

    /// The reason a status code settles by itself.
    pub fn decisive(&self, status: StatusCode) -> Option<BounceReason> {
        self.decisive.get(&(status.subject, status.detail)).copied()
    }

    /// The reason a status code suggests when the text said nothing.
    pub fn fallback(&self, status: StatusCode) -> Option<BounceReason> {
        self.fallback.get(&(status.subject, status.detail)).copied()
    }

    /// The pseudo-code for a reason found without any status code.
    pub fn pseudo_status(&self, reason: BounceReason, permanent: bool) -> StatusCode {
        let detail = self.pseudo.get(&reason).copied().unwrap_or(900);
        StatusCode {
            class: if permanent { 5 } else { 4 },
            subject: 0,
            detail,
        }
    }
}

/// Whether a pattern has an upper-case letter that is not part of an escape (`\\D`, `\\S`, …).
/// The text is lower-cased before matching, so all-lower-case patterns need no case folding,
/// which would double the byte classes the DFA tracks; an operator's pattern written with
/// capitals still matches, with folding on.
fn has_upper_case_literal(pattern: &str) -> bool {
    let mut escaped = false;
    for c in pattern.chars() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c.is_uppercase() {
            return true;
        }
    }
    false
}

fn parse(origin: &str, text: &str) -> Result<RulesFile, RulesError> {
    toml::from_str(text).map_err(|source| RulesError::Parse {
        origin: origin.to_string(),
        source: Box::new(source),
    })
}

/// One phrase of a `[phrases]` list, checked on its own so that an error names it.
fn phrase_pattern(
    origin: &str,
    index: usize,
    list: &str,
    phrase: &str,
) -> Result<String, RulesError> {
    regex::Regex::new(phrase).map_err(|e| RulesError::Pattern {
        origin: origin.to_string(),
        index,
        reason: list.to_string(),
        source: Box::new(e),
    })?;
    Ok(format!("(?:{phrase})"))
}

/// All of `patterns` as one case-insensitive pattern; `None` for none. ASCII mode (faster) unless
/// a phrase needs Unicode, such as a class of non-ASCII letters (`vor[üu]bergehend`).
fn any_of(patterns: &[String]) -> Result<Option<regex::bytes::Regex>, RulesError> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let joined = patterns.join("|");
    let build = |unicode| {
        regex::bytes::RegexBuilder::new(&joined)
            .case_insensitive(true)
            .unicode(unicode)
            .build()
    };
    build(false)
        .or_else(|_| build(true))
        .map(Some)
        .map_err(|e| RulesError::TooLarge(Box::new(e)))
}

fn status_key(origin: &str, key: &str) -> Result<(u16, u16), RulesError> {
    let bad = || RulesError::StatusKey {
        origin: origin.to_string(),
        key: key.to_string(),
    };
    let rest = key.strip_prefix("X.").ok_or_else(bad)?;
    let (subject, detail) = rest.split_once('.').ok_or_else(bad)?;
    Ok((
        subject.parse().map_err(|_| bad())?,
        detail.parse().map_err(|_| bad())?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_phrases_are_data_an_operator_extends() {
        let shipped = BounceRules::builtin();
        assert!(shipped.says_still_trying("Delivery attempts will continue for 5 days."));
        assert!(shipped.says_temporary("Temporary local problem - please try later"));
        assert!(!shipped.says_still_trying("Your message could not be delivered."));
        assert!(!shipped.says_temporary("mailbox unavailable"));

        let extension = (
            "local.toml".to_string(),
            "[phrases]\nstill_trying = [\"wird erneut versucht\"]\ntemporary = [\"vor[üu]bergehend\"]\n"
                .to_string(),
        );
        let rules = BounceRules::load(&[extension]).unwrap();
        assert!(rules.says_still_trying("Die Zustellung WIRD ERNEUT VERSUCHT."));
        assert!(rules.says_temporary("Postfach VORÜBERGEHEND nicht erreichbar"));
        // The shipped phrases still count.
        assert!(rules.says_still_trying("Delivery attempts will continue for 5 days."));
    }

    #[test]
    fn the_shipped_rules_compile_and_match_in_order() {
        let rules = BounceRules::builtin();
        for (text, expected) in [
            (
                "550 5.1.1 <a@example.org>: Recipient address rejected: User unknown",
                Some(BounceReason::UserUnknown),
            ),
            ("552 5.2.2 Mailbox full", Some(BounceReason::MailboxFull)),
            (
                "554 5.7.1 Message rejected as spam by Content Filtering",
                Some(BounceReason::SpamDetected),
            ),
            (
                "554 5.7.1 Service unavailable; Client host [192.0.2.7] blocked using AUP#CDRBL",
                Some(BounceReason::Blocked),
            ),
            (
                "550 5.7.1 Message rejected: a link in it is listed in multi.surbl.org",
                Some(BounceReason::SpamDetected),
            ),
            (
                "421 IP frequency limited, please try again later",
                Some(BounceReason::TooManyConn),
            ),
            (
                "451 TLS/SSLv3 Connection required. (#4.7.1)",
                Some(BounceReason::FailedStartTls),
            ),
            (
                "553 Stray linefeeds in message (#5.6.2)",
                Some(BounceReason::ContentError),
            ),
            (
                "You are trying to use me as a relay, but I have not been configured to let you do this",
                Some(BounceReason::NoRelaying),
            ),
            ("nothing to see", None),
        ] {
            assert_eq!(rules.match_text(&text.to_lowercase()), expected, "{text}");
        }
    }

    #[test]
    fn operator_rules_come_first_and_bad_ones_are_refused() {
        let extension = (
            "local.toml".to_string(),
            "[[rule]]\nreason = \"suspend\"\npatterns = [\"user unknown\"]\n".to_string(),
        );
        let rules = BounceRules::load(&[extension]).unwrap();
        assert_eq!(
            rules.match_text("user unknown"),
            Some(BounceReason::Suspend)
        );

        for (text, expected) in [
            (
                "[[rule]]\nreason = \"nonsense\"\npatterns = []\n",
                "nonsense",
            ),
            (
                "[[rule]]\nreason = \"blocked\"\npatterns = [\"(unclosed\"]\n",
                "rule 0 (blocked)",
            ),
            (
                "[status.decisive]\n\"5.1.1\" = \"userunknown\"\n",
                "not of the form X.N.N",
            ),
            (
                "[phrases]\ntemporary = [\"fine\", \"[unclosed\"]\n",
                "rule 1 (phrases.temporary)",
            ),
        ] {
            let err = BounceRules::load(&[("local.toml".to_string(), text.to_string())])
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(expected) && err.contains("local.toml"),
                "{err}"
            );
        }
    }
}
