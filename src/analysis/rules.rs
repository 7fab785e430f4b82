//! Bounce rules as data: status-code tables and ordered text rules (`config/bounce-rules.toml`),
//! compiled once into one `RegexSet`, validated at start, extendable by the operator.

use std::collections::HashMap;

use super::textset::{BadPattern, FirstMatch, PatternOptions};
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
    #[error(
        "bounce rules {origin}: rule {index} is named {name:?}: names are unique within a file and use only letters, digits, '-', '_' and '.'"
    )]
    RuleName {
        origin: String,
        index: usize,
        name: String,
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
    /// Per-recipient DSN fields in which the reporting MTA classifies the failure itself: field
    /// name → its value → the reason.
    #[serde(default)]
    dsn_fields: HashMap<String, HashMap<String, BounceReason>>,
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

impl SmtpCommand {
    /// The command as rules files name it.
    pub fn as_str(self) -> &'static str {
        match self {
            SmtpCommand::Connect => "connect",
            SmtpCommand::Mail => "mail",
            SmtpCommand::Rcpt => "rcpt",
            SmtpCommand::Data => "data",
            SmtpCommand::Unknown => "unknown",
        }
    }
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
    /// The rule's id within its file (`user-unknown`); without one, `rule.N`.
    #[serde(default)]
    name: Option<String>,
    reason: BounceReason,
    patterns: Vec<String>,
    /// Status codes (`X.N.N`, or `X.N.*`) for which the rule is passed over: the same words
    /// mean something else with such a code, and a later rule decides.
    #[serde(default)]
    unless_status: Vec<String>,
}

/// Compiled rules.
#[derive(Debug, Clone)]
pub struct BounceRules {
    /// Where each rules file came from, as rule ids name it: `builtin`, or the operator's path.
    origins: Vec<String>,
    /// Reason and origin of each `[status.decisive]` entry.
    decisive: HashMap<(u16, u16), (BounceReason, u16)>,
    /// Reason and origin of each `[status.fallback]` entry.
    fallback: HashMap<(u16, u16), (BounceReason, u16)>,
    pseudo: HashMap<BounceReason, u16>,
    /// Every text-rule pattern, in priority order: the first that matches decides.
    texts: FirstMatch,
    /// The reason of each pattern in `texts`, in priority order.
    pattern_reasons: Vec<BounceReason>,
    /// For each pattern in `texts`, the index in `conditions` of the status codes its rule is
    /// passed over for (0: none).
    pattern_unless: Vec<u16>,
    /// The rules' `unless_status` lists; the first is empty.
    conditions: Vec<Vec<StatusPattern>>,
    /// Where each pattern in `texts` is written: origin, `[[rule]]` number and pattern number
    /// (both from 1), and the pattern itself (compiled alone only to explain a match).
    pattern_sources: Vec<PatternSource>,
    commands: Vec<(SmtpCommand, regex::Regex)>,
    /// Every command phrase in one pattern: one scan finds the phrase named last.
    any_command: Option<regex::bytes::Regex>,
    command_overrides: HashMap<(SmtpCommand, BounceReason), StageOverride>,
    /// `(field, value)`, both lower case → reason and origin of each `[dsn_fields]` entry.
    dsn_fields: HashMap<(String, String), (BounceReason, u16)>,
    /// [`Phrases::still_trying`] of every file, in one pattern.
    still_trying: Option<regex::bytes::Regex>,
    /// [`Phrases::temporary`] of every file, in one pattern.
    temporary: Option<regex::bytes::Regex>,
}

/// Where a text rule's pattern is written.
#[derive(Debug, Clone)]
struct PatternSource {
    origin: u16,
    rule: u16,
    /// The rule's name, if it has one.
    name: Option<String>,
    pattern: u16,
}

/// A text rule that matched: its reason, and which pattern (for [`BounceRules::text_rule_id`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextMatch {
    pub reason: BounceReason,
    pub pattern: usize,
}

/// The two status-code tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusTable {
    Decisive,
    Fallback,
}

/// What a reason became at an SMTP stage, and the `[[command_override]]` that said so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageChange {
    pub reason: BounceReason,
    /// `ORIGIN:command_override.N`.
    pub rule: String,
}

/// A status code in a rule's condition: `(subject, detail)`; a detail of `None` stands for every
/// detail (`X.7.*`).
type StatusPattern = (u16, Option<u16>);

fn any_status_matches(patterns: &[StatusPattern], status: StatusCode) -> bool {
    patterns.iter().any(|&(subject, detail)| {
        subject == status.subject && detail.is_none_or(|d| d == status.detail)
    })
}

/// What a reason becomes at one SMTP stage, except for some status codes.
#[derive(Debug, Clone)]
struct StageOverride {
    /// Origin and number (from 1) of the `[[command_override]]` in its file.
    origin: u16,
    index: u16,
    becomes: BounceReason,
    unless: Vec<StatusPattern>,
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
            origins: files
                .iter()
                .map(|(origin, _)| {
                    if origin == "(built in)" {
                        "builtin".to_string()
                    } else {
                        origin.clone()
                    }
                })
                .collect(),
            decisive: HashMap::new(),
            fallback: HashMap::new(),
            pseudo: HashMap::new(),
            texts: FirstMatch::new(Vec::new(), TEXT_OPTIONS).expect("no patterns"),
            pattern_reasons: Vec::new(),
            pattern_unless: Vec::new(),
            conditions: vec![Vec::new()],
            pattern_sources: Vec::new(),
            commands: Vec::new(),
            any_command: None,
            command_overrides: HashMap::new(),
            dsn_fields: HashMap::new(),
            still_trying: None,
            temporary: None,
        };
        let mut patterns = Vec::new();
        let (mut still_trying, mut temporary) = (Vec::new(), Vec::new());
        // Later (built-in) tables only fill what earlier (operator) tables left open.
        for (number, (origin, file)) in files.iter().enumerate() {
            let number = u16::try_from(number).unwrap_or(u16::MAX);
            for (key, reason) in &file.status.decisive {
                rules
                    .decisive
                    .entry(status_key(origin, key)?)
                    .or_insert((*reason, number));
            }
            for (key, reason) in &file.status.fallback {
                rules
                    .fallback
                    .entry(status_key(origin, key)?)
                    .or_insert((*reason, number));
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
            for (field, values) in &file.dsn_fields {
                for (value, reason) in values {
                    rules
                        .dsn_fields
                        .entry((field.to_ascii_lowercase(), value.to_ascii_lowercase()))
                        .or_insert((*reason, number));
                }
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
            for (index, o) in file.command_overrides.iter().enumerate() {
                let unless = status_patterns(origin, &o.unless_status)?;
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
                            origin: number,
                            index: u16::try_from(index + 1).unwrap_or(u16::MAX),
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
            let mut names = std::collections::HashSet::new();
            for (index, rule) in file.rules.iter().enumerate() {
                if let Some(name) = &rule.name
                    && (!names.insert(name.as_str())
                        || name.is_empty()
                        || !name
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
                {
                    return Err(RulesError::RuleName {
                        origin: origin.clone(),
                        index: index + 1,
                        name: name.clone(),
                    });
                }
                let condition = if rule.unless_status.is_empty() {
                    0
                } else {
                    rules
                        .conditions
                        .push(status_patterns(origin, &rule.unless_status)?);
                    u16::try_from(rules.conditions.len() - 1).unwrap_or(u16::MAX)
                };
                for (pattern_number, pattern) in rule.patterns.iter().enumerate() {
                    // Parsed with the others below, compiled on first use.
                    patterns.push(pattern.clone());
                    rules.pattern_reasons.push(rule.reason);
                    rules.pattern_unless.push(condition);
                    rules.pattern_sources.push(PatternSource {
                        origin: number,
                        rule: u16::try_from(index + 1).unwrap_or(u16::MAX),
                        name: rule.name.clone(),
                        pattern: u16::try_from(pattern_number + 1).unwrap_or(u16::MAX),
                    });
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
        // ASCII word boundaries and case folding keep each pattern on the lazy DFA (Unicode `\b`
        // makes it fall back to the much slower PikeVM on any non-ASCII text); the text is
        // lower-cased before matching, and non-ASCII literals still match their UTF-8 bytes.
        let options = PatternOptions {
            case_insensitive: patterns.iter().any(|p| has_upper_case_literal(p)),
            ..TEXT_OPTIONS
        };
        rules.texts = FirstMatch::new(patterns, options).map_err(|bad| rules.pattern_error(bad))?;
        Ok(rules)
    }

    /// A text-rule pattern that does not parse or compile, as an error naming its rule.
    fn pattern_error(&self, bad: BadPattern) -> RulesError {
        let source = &self.pattern_sources[bad.index];
        RulesError::Pattern {
            origin: self.origin(source.origin).to_string(),
            index: usize::from(source.rule) - 1,
            reason: self.pattern_reasons[bad.index].to_string(),
            source: Box::new(bad.error),
        }
    }

    /// Compiles every text-rule pattern now (they are otherwise compiled on first use): for a
    /// check at start that none is too large, where the cost of compiling them all is welcome.
    pub fn compile_all(&self) -> Result<(), RulesError> {
        self.texts
            .compile_all()
            .map_err(|bad| self.pattern_error(bad))
    }

    /// The reason the first matching text rule gives, if any, for a text without a status code.
    pub fn match_text(&self, text: &str) -> Option<BounceReason> {
        self.match_text_rule(text, None).map(|m| m.reason)
    }

    /// The first matching text rule, if any, passing over the rules whose `unless_status` names
    /// `status`.
    pub fn match_text_rule(&self, text: &str, status: Option<StatusCode>) -> Option<TextMatch> {
        if text.is_empty() {
            return None;
        }
        let applies = |pattern: usize| match (self.pattern_unless[pattern], status) {
            (0, _) | (_, None) => true,
            (condition, Some(status)) => {
                !any_status_matches(&self.conditions[usize::from(condition)], status)
            }
        };
        self.texts
            .first_where(text.as_bytes(), applies)
            .map(|pattern| TextMatch {
                reason: self.pattern_reasons[pattern],
                pattern,
            })
    }

    /// A text rule's id: `ORIGIN:NAME`, or `ORIGIN:rule.N` for a rule without a name (N counts
    /// the file's `[[rule]]` entries from 1).
    pub fn text_rule_id(&self, pattern: usize) -> String {
        let source = &self.pattern_sources[pattern];
        match &source.name {
            Some(name) => format!("{}:{name}", self.origin(source.origin)),
            None => format!("{}:rule.{}", self.origin(source.origin), source.rule),
        }
    }

    /// What a text rule matched in `text` (lower-cased, as the rules read it), in words: the
    /// rule, its pattern, and the matched words with a little of the text around them.
    pub fn explain_text_match(&self, pattern: usize, text: &str) -> String {
        let source = &self.pattern_sources[pattern];
        let written = self.texts.source(pattern);
        let found = regex::RegexBuilder::new(written)
            .case_insensitive(has_upper_case_literal(written))
            .build()
            .ok()
            .and_then(|regex| regex.find(text).map(|m| excerpt(text, m.start(), m.end())));
        let origin = self.origin(source.origin);
        format!(
            "{} [[rule]] {}{} ({}), pattern {} /{}/ matched {}",
            if origin == "builtin" {
                "config/bounce-rules.toml (built in)"
            } else {
                origin
            },
            source.rule,
            source
                .name
                .as_ref()
                .map(|n| format!(" \"{n}\""))
                .unwrap_or_default(),
            self.pattern_reasons[pattern],
            source.pattern,
            written,
            found.unwrap_or_else(|| "(no longer found)".into())
        )
    }

    /// A status table entry's id: `ORIGIN:status.decisive.X.1.2`.
    pub fn status_rule_id(&self, table: StatusTable, status: StatusCode) -> String {
        let (map, name) = match table {
            StatusTable::Decisive => (&self.decisive, "decisive"),
            StatusTable::Fallback => (&self.fallback, "fallback"),
        };
        let origin = map
            .get(&(status.subject, status.detail))
            .map_or("builtin", |(_, origin)| self.origin(*origin));
        format!(
            "{origin}:status.{name}.X.{}.{}",
            status.subject, status.detail
        )
    }

    fn origin(&self, number: u16) -> &str {
        self.origins
            .get(usize::from(number))
            .map_or("builtin", String::as_str)
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
        self.command_phrase_in(text).map(|(command, _)| command)
    }

    /// The command a diagnostic says the failure answered, with the words that named it.
    pub fn command_phrase_in(&self, text: &str) -> Option<(SmtpCommand, String)> {
        // MTAs wrap long replies ("(in reply to\n    RCPT TO command)"): phrases match across
        // line breaks and indentation.
        let folded;
        let text = if text
            .as_bytes()
            .windows(2)
            .any(|w| w[0].is_ascii_whitespace() && w[1].is_ascii_whitespace())
            || text.contains(['\n', '\t', '\r'])
        {
            folded = text.split_ascii_whitespace().collect::<Vec<_>>().join(" ");
            folded.as_str()
        } else {
            text
        };
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
            .map(|(command, _)| (*command, named.trim().to_string()))
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
        self.stage_change(command, reason, status, text)
            .map_or(reason, |change| change.reason)
    }

    /// What `reason` becomes when the failure answered `command`, and the override that says
    /// so; `None` when the stage leaves it as it is.
    pub fn stage_change(
        &self,
        command: SmtpCommand,
        reason: BounceReason,
        status: Option<StatusCode>,
        text: &str,
    ) -> Option<StageChange> {
        match self.command_overrides.get(&(command, reason)) {
            Some(o)
                if o.becomes != reason
                    && !status.is_some_and(|s| any_status_matches(&o.unless, s))
                    && !o.unless_text.as_ref().is_some_and(|t| t.is_match(text)) =>
            {
                Some(StageChange {
                    reason: o.becomes,
                    rule: format!("{}:command_override.{}", self.origin(o.origin), o.index),
                })
            }
            _ => None,
        }
    }

    /// The reason a reporting MTA's own class of the failure gives (`fields`: a DSN recipient
    /// block's fields, names lower case), and the entry's id: `ORIGIN:dsn_fields.FIELD.VALUE`.
    pub fn dsn_field(&self, fields: &[(String, String)]) -> Option<(BounceReason, String)> {
        if self.dsn_fields.is_empty() {
            return None;
        }
        fields.iter().find_map(|(name, value)| {
            let value = value.trim().to_ascii_lowercase();
            let (reason, origin) = self.dsn_fields.get(&(name.clone(), value.clone()))?;
            Some((
                *reason,
                format!("{}:dsn_fields.{name}.{value}", self.origin(*origin)),
            ))
        })
    }

    /// The reason a status code settles by itself.
    pub fn decisive(&self, status: StatusCode) -> Option<BounceReason> {
        self.decisive
            .get(&(status.subject, status.detail))
            .map(|(reason, _)| *reason)
    }

    /// The reason a status code suggests when the text said nothing.
    pub fn fallback(&self, status: StatusCode) -> Option<BounceReason> {
        self.fallback
            .get(&(status.subject, status.detail))
            .map(|(reason, _)| *reason)
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

/// The words from `start` to `end` in `text`, with up to 40 bytes either side, quoted.
fn excerpt(text: &str, start: usize, end: usize) -> String {
    let mut from = start.saturating_sub(40);
    while !text.is_char_boundary(from) {
        from -= 1;
    }
    let mut to = (end + 40).min(text.len());
    while !text.is_char_boundary(to) {
        to += 1;
    }
    format!(
        "\"{}{}[{}]{}{}\"",
        if from > 0 { "…" } else { "" },
        &text[from..start],
        &text[start..end],
        &text[end..to],
        if to < text.len() { "…" } else { "" }
    )
}

/// Whether a pattern has an upper-case letter that is not part of an escape (`\\D`, `\\S`, …).
/// The text is lower-cased before matching, so all-lower-case patterns need no case folding,
/// which would double the byte classes the DFA tracks; an operator's pattern written with
/// capitals still matches, with folding on.
/// How text-rule patterns are compiled (case folding is set from the patterns themselves).
const TEXT_OPTIONS: PatternOptions = PatternOptions {
    case_insensitive: false,
    size_limit: 64 << 20,
};

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

/// `unless_status` entries: `X.N.N`, or `X.N.*` for every detail.
fn status_patterns(origin: &str, keys: &[String]) -> Result<Vec<StatusPattern>, RulesError> {
    keys.iter()
        .map(|key| match key.strip_suffix(".*") {
            Some(subject) => {
                status_key(origin, &format!("{subject}.0")).map(|(subject, _)| (subject, None))
            }
            None => status_key(origin, key).map(|(s, d)| (s, Some(d))),
        })
        .collect()
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
        // The operator's unnamed rule is named by its file and number; the shipped ones by name.
        let found = rules.match_text_rule("550 user unknown", None).unwrap();
        assert_eq!(rules.text_rule_id(found.pattern), "local.toml:rule.1");
        let found = rules.match_text_rule("mailbox is full", None).unwrap();
        assert_eq!(rules.text_rule_id(found.pattern), "builtin:mailbox-full");
        let words = rules.explain_text_match(found.pattern, "552 sorry, mailbox is full (quota)");
        assert!(
            words.contains("config/bounce-rules.toml (built in)")
                && words.contains("\"mailbox-full\" (mailboxfull)")
                && words.contains("\"552 sorry, [mailbox is full] (quota)\""),
            "{words}"
        );

        // A rule passed over for the status codes it names: the next that matches decides.
        let conditional = (
            "local.toml".to_string(),
            "[[rule]]\nname = \"quota-is-policy\"\nreason = \"policyviolation\"\n\
             patterns = [\"over quota\"]\nunless_status = [\"X.2.2\", \"X.4.*\"]\n"
                .to_string(),
        );
        let rules = BounceRules::load(&[conditional]).unwrap();
        let code = |text: &str| StatusCode::parse(text);
        for (status, expected) in [
            (None, "local.toml:quota-is-policy"),
            (code("5.7.1"), "local.toml:quota-is-policy"),
            (code("5.2.2"), "builtin:mailbox-full"),
            (code("4.4.7"), "builtin:mailbox-full"),
        ] {
            let found = rules.match_text_rule("552 over quota", status).unwrap();
            assert_eq!(rules.text_rule_id(found.pattern), expected, "{status:?}");
        }

        // A pattern that parses but is too large to compile: found when the gateway compiles
        // every pattern at start (classify compiles each on first use).
        let huge = (
            "huge.toml".to_string(),
            "[[rule]]\nreason = \"blocked\"\npatterns = [\"fine\", \"(?:(?:[a-z]{1000}){100}){10}\"]\n"
                .to_string(),
        );
        let rules = BounceRules::load(&[huge]).unwrap();
        let error = rules.compile_all().unwrap_err().to_string();
        assert!(error.contains("huge.toml: rule 0 (blocked)"), "{error}");

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
            (
                "[[rule]]\nname = \"a\"\nreason = \"blocked\"\npatterns = [\"x\"]\n\
                 [[rule]]\nname = \"a\"\nreason = \"blocked\"\npatterns = [\"y\"]\n",
                "rule 2 is named \"a\"",
            ),
            (
                "[[rule]]\nreason = \"blocked\"\npatterns = [\"x\"]\nunless_status = [\"5.7.1\"]\n",
                "not of the form X.N.N",
            ),
            (
                "[[rule]]\nname = \"has space\"\nreason = \"blocked\"\npatterns = [\"x\"]\n",
                "rule 1 is named \"has space\"",
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
