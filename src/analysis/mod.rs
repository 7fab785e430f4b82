//! Bounce analysis: raw bytes of a received mail → what it is, and per recipient what happened and
//! whether the address is dead (hard) or may recover (soft).
//!
//! Pure: no I/O, no clock, no database. Reads RFC 3464/6522/6533 delivery-status notifications
//! (also mislabelled or forwarded), the prose of non-standard bounces, ARF feedback reports (RFC
//! 5965) and auto-replies (RFC 3834 and the usual headers and subjects). Decides reasons from the
//! status code and the diagnostic text with rules that are data (`rules`). Never panics; a mail it
//! cannot understand is `other` with the reason it gave up. Input is bounded: only the first
//! [`MAX_ANALYZED`] bytes are read.

mod autoreply;
mod dsn;
mod mbox;
mod mime;
mod prose;
mod report;
mod rules;
mod ses;
mod status;
mod textset;

use mail_parser::Message;
use std::borrow::Cow;

pub use mime::parse_mail;
pub use report::{BounceClass, BounceReason, OriginalMessage, RecipientReport, Report, ReportKind};
pub use rules::{BUILTIN_RULES, BounceRules, RulesError, SmtpCommand, StatusTable};
pub use status::StatusCode;

use mime::MailParts;

/// Bytes of a mail that are analysed; bounce information sits at the start, and a multi-megabyte
/// tail is the returned original.
pub const MAX_ANALYZED: usize = 4 << 20;
/// Bytes of a bounce's own text that the rules read when a recipient's lines say nothing.
const MAX_CONTEXT_RULE_TEXT: usize = 8 * 1024;
/// How deep a forwarded report is unwrapped.
const MAX_FORWARD_DEPTH: usize = 3;

/// The analyser, with its compiled rules. Cheap to share between threads.
#[derive(Debug, Clone)]
pub struct Analyzer {
    rules: BounceRules,
    /// Whether each recipient's report says in words what decided it (`classify --explain`).
    explain: bool,
}

impl Default for Analyzer {
    fn default() -> Self {
        Self::new(BounceRules::builtin())
    }
}

impl Analyzer {
    /// An analyser with these rules.
    pub fn new(rules: BounceRules) -> Self {
        Self {
            rules,
            explain: false,
        }
    }

    /// The same analyser, filling [`RecipientReport::explanation`]: every deciding step in
    /// words, with the words of the bounce it matched. Slower; for people reading a verdict.
    pub fn explaining(mut self) -> Self {
        self.explain = true;
        self
    }

    /// Analyses one mail. A mail that forwards several reports (a digest of complaint reports)
    /// gives one report with the recipients of all those of the first one's kind, and the first
    /// one's original; [`Analyzer::analyze_all`] keeps them apart.
    pub fn analyze(&self, raw: &[u8]) -> Report {
        merge(self.analyze_all(raw))
    }

    /// Analyses one mail into its reports: one, or one per forwarded report it carries, each
    /// with its own returned original (so each is attributed to its own send).
    pub fn analyze_all(&self, raw: &[u8]) -> Vec<Report> {
        let raw = mime::with_line_feeds(&raw[..raw.len().min(MAX_ANALYZED)]);
        self.analyze_at_depth(&raw, 0)
    }

    /// Analyses each mail of a file that may be a mailbox (several mails, each after a `From `
    /// separator line): one report per mail, one for an ordinary mail file.
    pub fn analyze_each(&self, raw: &[u8]) -> Vec<Report> {
        let raw = mime::with_line_feeds(raw);
        mbox::mails(&raw)
            .into_iter()
            .map(|mail| self.analyze(mail))
            .collect()
    }

    fn analyze_at_depth(&self, raw: &[u8], depth: usize) -> Vec<Report> {
        if raw.iter().all(|b| b.is_ascii_whitespace()) {
            return vec![Report::other("the mail is empty")];
        }
        let Some(message) = mime::parse_mail(raw) else {
            return vec![Report::other(
                "no mail headers found, or a MIME structure the parser cannot read",
            )];
        };
        let parts = mime::collect(&message);
        let mut report = if !parts.feedback.is_empty() {
            self.complaint(&parts.feedback, &parts)
        } else if let Some(report) = self.delivery_status(&parts) {
            report
        } else if let Some(report) =
            ses::notification(&parts.human_text).map(|n| self.notification_report(n))
        {
            report
        } else if is_complaint_without_arf(&message, &parts) {
            self.complaint(&[], &parts)
        } else if autoreply::is_auto_reply(&message) && !looks_like_bounce(&message, &parts, false)
        {
            self.auto_reply(&message, &parts)
        } else if !parts.forwarded_reports.is_empty() && depth < MAX_FORWARD_DEPTH {
            return self.forwarded(&parts.forwarded_reports, depth + 1);
        } else if looks_like_bounce(&message, &parts, true) {
            self.prose_bounce(&message, &parts)
        } else {
            Report::other("not a bounce, complaint or auto-reply")
        };
        if let Some(original) = parts.original {
            report.original = original;
        }
        vec![report]
    }

    /// Reports forwarded inside one mail (a forwarded bounce, a digest of complaint reports):
    /// each read on its own; those that could not be read are left out unless none could.
    fn forwarded(&self, forwarded: &[Vec<u8>], depth: usize) -> Vec<Report> {
        let reports: Vec<Report> = forwarded
            .iter()
            .flat_map(|raw| self.analyze_at_depth(raw, depth))
            .filter(|r| r.kind != ReportKind::Other)
            .collect();
        if reports.is_empty() {
            // None could be read: say why the first could not.
            return self.analyze_at_depth(&forwarded[0], depth);
        }
        reports
    }

    /// ARF reports (RFC 5965; usually one, some feedback loops put several feedback parts in
    /// one report): a recipient per report, the complained-about address, each address once.
    /// Without a feedback part (a complaint in prose), the original's first recipient.
    fn complaint(&self, feedbacks: &[String], parts: &MailParts) -> Report {
        let fallback = || parts.original.as_ref().and_then(|o| o.to.first().cloned());
        let mut recipients: Vec<RecipientReport> = Vec::new();
        for feedback in feedbacks.iter().map(String::as_str).chain(
            // A complaint in prose: one recipient from the original.
            feedbacks.is_empty().then_some(""),
        ) {
            let mut feedback_type = None;
            let mut recipient = None;
            for line in feedback.lines() {
                let Some((name, value)) = line.split_once(':') else {
                    continue;
                };
                let value = value.trim();
                match name.trim().to_ascii_lowercase().as_str() {
                    "feedback-type" => feedback_type = Some(value.to_ascii_lowercase()),
                    "original-rcpt-to" | "removal-recipient" if recipient.is_none() => {
                        recipient = Some(value.trim_matches(|c| c == '<' || c == '>').to_string())
                    }
                    _ => {}
                }
            }
            let address = recipient.or_else(fallback).unwrap_or_default();
            if !recipients
                .iter()
                .any(|r| r.address.eq_ignore_ascii_case(&address))
            {
                recipients.push(RecipientReport::feedback(address, feedback_type));
            }
        }
        Report {
            kind: ReportKind::Complaint,
            recipients,
            original: OriginalMessage::default(),
            error: None,
        }
    }

    /// A standard DSN: its recipient blocks, classified.
    fn delivery_status(&self, parts: &MailParts) -> Option<Report> {
        let blocks: Vec<(Option<String>, dsn::DsnRecipient)> = parts
            .dsn_texts
            .iter()
            .flat_map(|text| {
                let report = dsn::parse(text);
                let reporting_mta = report.reporting_mta;
                report
                    .recipients
                    .into_iter()
                    .map(move |r| (reporting_mta.clone(), r))
            })
            .collect();
        let addresses: Vec<String> = blocks
            .iter()
            .map(|(_, r)| r.address().unwrap_or_default().to_string())
            .collect();
        let recipients: Vec<RecipientReport> = blocks
            .into_iter()
            .zip(&addresses)
            .map(|((reporting_mta, r), address)| {
                let address = address.clone();
                let mut diagnostic = r.diagnostic.clone().unwrap_or_default();
                // A multi-line reply's first line states the refusal; the lines after it (only
                // in the transcript, for Sendmail) are read when it says nothing specific.
                if let Some(whole) = prose::whole_reply(&diagnostic, &parts.human_text) {
                    let status =
                        choose_status(r.status.as_deref().and_then(StatusCode::parse), &diagnostic);
                    let first = self
                        .rules
                        .match_text_rule(&rule_text(&prose::clean(&diagnostic)), status);
                    if first.is_none_or(|m| {
                        matches!(
                            m.reason,
                            BounceReason::SystemError
                                | BounceReason::OnHold
                                | BounceReason::Undefined
                        )
                    }) {
                        diagnostic = whole;
                    }
                }
                if diagnostic.is_empty() || StatusCode::find(&diagnostic).is_none() {
                    let from_text = prose_diagnostic(&parts.human_text, &address);
                    // Sendmail's prose repeats the Diagnostic-Code as "(reason: …)".
                    let repeated = from_text
                        .strip_prefix("(reason: ")
                        .and_then(|t| t.strip_suffix(')'))
                        .is_some_and(|t| diagnostic.contains(t.trim()));
                    if !from_text.is_empty() && !repeated && !diagnostic.contains(&from_text) {
                        diagnostic = if diagnostic.is_empty() {
                            from_text
                        } else {
                            format!("{diagnostic} {from_text}")
                        };
                    }
                }
                self.classify(
                    Finding {
                        address,
                        action: r.action.as_deref(),
                        status: r.status.as_deref(),
                        diagnostic: &diagnostic,
                        remote_mta: r.remote_mta.as_deref().unwrap_or(""),
                        reporting_mta: reporting_mta.as_deref().unwrap_or(""),
                        local_mailer: r.fields.iter().any(|(name, value)| {
                            name == "diagnostic-code"
                                && value
                                    .trim_start()
                                    .to_ascii_lowercase()
                                    .starts_with("x-unix")
                        }),
                        fields: &r.fields,
                        recipients: &addresses,
                    },
                    &parts.human_text,
                )
            })
            .collect();
        if recipients.is_empty() {
            return None;
        }
        Some(Report {
            kind: kind_of(&recipients),
            recipients,
            original: OriginalMessage::default(),
            error: None,
        })
    }

    fn prose_bounce(&self, message: &Message<'_>, parts: &MailParts) -> Report {
        let senders = sender_addresses(message, parts);
        let exclude = |address: &str| {
            let lower = address.to_ascii_lowercase();
            senders.contains(&lower) || is_system_address(&lower)
        };
        let mut found = prose::recipients(&parts.human_text, &exclude);
        if let Some(failed) = message.header_raw("X-Failed-Recipients") {
            let listed: Vec<&str> = prose::addresses(failed).collect();
            if !listed.is_empty() {
                found.retain(|f| listed.iter().any(|l| l.eq_ignore_ascii_case(&f.address)));
                for address in listed {
                    if !found
                        .iter()
                        .any(|f| f.address.eq_ignore_ascii_case(address))
                    {
                        found.push(prose::ProseRecipient {
                            address: address.to_string(),
                            diagnostic: prose_diagnostic(&parts.human_text, address),
                        });
                    }
                }
            }
        }
        if found.is_empty() {
            // No address in the prose: the returned original names whom it was for; without
            // one, some gateways name the recipient only in the subject ("Undeliverable mail:
            // Failed to deliver to <a@b>"). Either way the prose as a whole explains.
            let mut named: Vec<String> = parts
                .original
                .iter()
                .flat_map(|o| o.to.iter())
                .filter(|a| !exclude(a))
                .cloned()
                .collect();
            if named.is_empty() {
                for address in prose::addresses(message.subject().unwrap_or_default()) {
                    if !exclude(address) && !named.iter().any(|n| n.eq_ignore_ascii_case(address)) {
                        named.push(address.to_string());
                    }
                }
            }
            let text = prose::clean(&parts.human_text);
            found = named
                .into_iter()
                .map(|address| prose::ProseRecipient {
                    address,
                    diagnostic: text.clone(),
                })
                .collect();
        }
        if found.is_empty() {
            // A mail to oneself bounces to its own sender: look again, passing over only the
            // bounce's own author and system addresses.
            let author: Vec<String> = message
                .from()
                .into_iter()
                .flat_map(|list| list.iter().filter_map(|a| a.address()))
                .map(str::to_ascii_lowercase)
                .collect();
            found = prose::recipients(&parts.human_text, &|address: &str| {
                let lower = address.to_ascii_lowercase();
                author.contains(&lower) || is_system_address(&lower)
            });
        }
        if found.is_empty() {
            return Report::other("a bounce, but no failed recipient could be found");
        }
        // Prose has no Action field: a bounce that returns the mail has given up, whatever the
        // class of the last reply; only one that says delivery goes on is a delay warning.
        let action = if self.rules.says_still_trying(&parts.human_text) {
            "delayed"
        } else {
            "failed"
        };
        let addresses: Vec<String> = found.iter().map(|f| f.address.clone()).collect();
        let recipients: Vec<RecipientReport> = found
            .into_iter()
            .map(|f| {
                let mut diagnostic = f.diagnostic;
                if StatusCode::find(&diagnostic).is_none()
                    && status::find_reply_code(&diagnostic).is_none()
                {
                    let transcript = prose::transcript_lines(&parts.human_text, &f.address);
                    if !transcript.is_empty() {
                        diagnostic = format!("{diagnostic} {transcript}").trim().to_string();
                    }
                }
                self.classify(
                    Finding {
                        address: f.address,
                        action: Some(action),
                        status: None,
                        diagnostic: &diagnostic,
                        remote_mta: "",
                        reporting_mta: "",
                        local_mailer: false,
                        fields: &[],
                        recipients: &addresses,
                    },
                    &parts.human_text,
                )
            })
            .collect();
        Report {
            kind: kind_of(&recipients),
            recipients,
            original: OriginalMessage::default(),
            error: None,
        }
    }

    /// Reason, status and class for one recipient; `context` is the bounce's readable text, its
    /// own words only (`collect` already cut the quoted original off).
    fn classify(&self, finding: Finding<'_>, context: &str) -> RecipientReport {
        let mut diagnostic = prose::clean(finding.diagnostic);
        let mut status = choose_status(finding.status.and_then(StatusCode::parse), &diagnostic);
        let mut reply_code = status::find_reply_code(&diagnostic);
        let mut from_overall = false;
        let action = finding.action.map(str::to_string).unwrap_or_else(|| {
            if status.is_some_and(|s| s.class == 4) || reply_code.is_some_and(|c| c < 500) {
                "delayed".into()
            } else {
                "failed".into()
            }
        });
        let delivered = matches!(
            action.as_str(),
            "delivered" | "relayed" | "expanded" | "deliverable"
        );
        let permanent = status
            .map(StatusCode::is_permanent)
            .or(reply_code.map(|c| c >= 500))
            .unwrap_or(action != "delayed");
        let stage = std::cell::OnceCell::new();
        // The rule that decided, the ones that changed it after, and (explaining) why in words.
        let mut rule = String::new();
        let mut explanation = Vec::new();
        let reason = if delivered {
            rule.push_str("analyser:delivered");
            BounceReason::Delivered
        } else {
            // A text rule's match, and (explaining) its words.
            let text_match = |text: &str,
                              status: Option<StatusCode>,
                              source: &str,
                              explanation: &mut Vec<String>| {
                let text = rule_text(text);
                let found = self.rules.match_text_rule(&text, status);
                if let Some(m) = found
                    && self.explain
                {
                    explanation.push(format!(
                        "{source}: {}",
                        self.rules.explain_text_match(m.pattern, &text)
                    ));
                }
                found
            };
            let mut text_rule = Vec::new();
            // Postfix's address verification wraps the probe's own result, which decides.
            let (own_words, source) = match probe_result(&diagnostic) {
                Some(result) => (result, "the address probe's result"),
                None => (diagnostic.as_str(), "the recipient's diagnostic"),
            };
            let mut from_text = text_match(own_words, status, source, &mut text_rule);
            // Codes like X.N.0 say little: when the recipient's own lines match no rule, the
            // bounce's overall text may.
            let vague = status.is_none_or(|s| s.detail == 0 && self.rules.decisive(s).is_none());
            // A local program's exit status (`X-Unix`) that no rule explains: the mailer failed.
            let mailer_failed = finding.local_mailer && from_text.is_none() && vague;
            // The reporting MTA's own class of this recipient's failure (a DSN field), for when
            // no rule reads its words: before the bounce's general words.
            let field_class = if from_text.is_none() {
                self.rules.dsn_field(finding.fields)
            } else {
                None
            };
            if from_text.is_none()
                && field_class.is_none()
                && !mailer_failed
                && (diagnostic.is_empty() || vague)
            {
                // The bounce's own words: their start, then (prose in scripts of several bytes a
                // character fills that quickly) more of them.
                // Codes the recipient's lines lack, the bounce's words may give. Not the words
                // about its other recipients: another's "user unknown" is not this one's.
                let own = context_of(context, &finding.address, finding.recipients);
                let mut overall = prose::clean(&own);
                let code = status.or_else(|| choose_status(None, &overall));
                from_text = text_match(&overall, code, "the bounce's own text", &mut text_rule);
                if from_text.is_none() && own.len() > overall.len() {
                    overall = prose::clean_within(&own, MAX_CONTEXT_RULE_TEXT);
                    let code = status.or_else(|| choose_status(None, &overall));
                    from_text = text_match(&overall, code, "the bounce's own text", &mut text_rule);
                }
                if from_text.is_some() && diagnostic.is_empty() {
                    // Kept as a diagnostic: within the diagnostic's bound.
                    diagnostic = prose::clean(&overall);
                    from_overall = true;
                } else if from_text.is_some() && status.is_none() && reply_code.is_none() {
                    // The recipient's lines gave neither reason nor code: the bounce's words
                    // that gave the reason give the codes and the diagnostic too.
                    diagnostic = prose::clean(&overall);
                    status = choose_status(None, &diagnostic);
                    reply_code = status::find_reply_code(&diagnostic);
                }
            }
            // The decision order: a decisive status code, a text rule, a delay that names no
            // cause, the status code's usual meaning, and last what is left.
            let decisive = status.and_then(|s| self.rules.decisive(s).map(|r| (s, r)));
            let fallback = status.and_then(|s| self.rules.fallback(s).map(|r| (s, r)));
            let mut reason = if let Some((code, reason)) = decisive {
                rule = self.rules.status_rule_id(StatusTable::Decisive, code);
                if self.explain {
                    explanation.push(format!(
                        "status {code} settles the reason by itself ({rule}: {reason})"
                    ));
                }
                reason
            } else if let Some(m) = from_text {
                rule = self.rules.text_rule_id(m.pattern);
                explanation.append(&mut text_rule);
                m.reason
            } else if let Some((reason, id)) = field_class {
                if self.explain {
                    explanation.push(format!(
                        "no text rule matched; the reporting MTA classed the failure itself ({id}: {reason})"
                    ));
                }
                rule = id;
                reason
            } else if mailer_failed {
                rule.push_str("analyser:local_mailer");
                if self.explain {
                    explanation.push(
                        "a local program's exit status (Diagnostic-Code: X-Unix) that no rule explains: mailererror"
                            .into(),
                    );
                }
                BounceReason::MailerError
            } else if action == "delayed"
                && !fallback.is_some_and(|(code, _)| code.subject != 4 && !code.is_generic())
            {
                // A delay that names no cause (no status, or only a generic or network one) is
                // running out of time; one whose status names a cause keeps it (below).
                rule.push_str("analyser:delay_without_cause");
                if self.explain {
                    explanation.push("a delay that names no cause: expired".into());
                }
                BounceReason::Expired
            } else if let Some((code, reason)) = fallback {
                rule = self.rules.status_rule_id(StatusTable::Fallback, code);
                if self.explain {
                    explanation.push(format!(
                        "no text rule matched; status {code} usually means {reason} ({rule})"
                    ));
                }
                reason
            } else {
                rule.push_str("analyser:no_cause");
                let reason = if permanent || action == "failed" {
                    BounceReason::OnHold
                } else {
                    BounceReason::Undefined
                };
                if self.explain {
                    explanation.push(format!(
                        "no status table entry or text rule applies: {reason}"
                    ));
                }
                reason
            };
            // The analyser's own corrections: each changes the reason, adds its id to the rule
            // and (explaining) says why.
            let mut correct = |reason: &mut BounceReason,
                               to: BounceReason,
                               id: &str,
                               why: &dyn Fn() -> String| {
                *reason = to;
                rule.push_str("+analyser:");
                rule.push_str(id);
                if self.explain {
                    explanation.push(why());
                }
            };
            // A name-service failure that will be retried is no proof the domain is gone.
            if reason == BounceReason::HostUnknown && !permanent {
                correct(
                    &mut reason,
                    BounceReason::NetworkError,
                    "dns_temporary",
                    &|| {
                        "a name-service failure that will be retried proves nothing of the domain: networkerror".into()
                    },
                );
            }
            // A null MX is the sending MTA's own finding in DNS (RFC 7505); a remote server that
            // answers it "does not accept mail" refuses this sender, unless it gives the
            // recipient's null-MX code (X.1.10, qmail's X.4.4) or names the null MX. X.7.27 is
            // the *sender's* null MX (RFC 7505): never the recipient's domain.
            if reason == BounceReason::NotAccept
                && reply_code.is_some()
                && !status.is_some_and(|s| matches!((s.subject, s.detail), (1, 10) | (4, 4)))
                && !names_null_mx(&diagnostic)
            {
                correct(
                    &mut reason,
                    BounceReason::Blocked,
                    "remote_refusal",
                    &|| {
                        "a remote server's refusal (a reply code, no null-MX code or words) is no null MX: blocked".into()
                    },
                );
            }
            // The reporting MTA's own verdict (no remote answered) that a domain it is itself
            // part of cannot be routed: the domain exists, the mailbox in it does not (Exim's
            // "Unrouteable address" for an unknown local user).
            if reason == BounceReason::HostUnknown
                && permanent
                && reply_code.is_none()
                && finding.remote_mta.is_empty()
                && is_own_domain(&finding.address, finding.reporting_mta)
            {
                correct(
                    &mut reason,
                    BounceReason::UserUnknown,
                    "own_domain",
                    &|| {
                        format!(
                            "the reporting MTA ({}) could not route an address in its own domain: userunknown",
                            finding.reporting_mta
                        )
                    },
                );
            }
            if self.rules.depends_on_stage(reason) {
                let command = stage.get_or_init(|| {
                    self.stage_of(&diagnostic, context, &finding.address, reply_code)
                });
                if let Some(command) = *command
                    && let Some(change) =
                        self.rules
                            .stage_change(command, reason, status, &rule_text(&diagnostic))
                {
                    if self.explain {
                        explanation.push(format!(
                            "the failure answered {} ({}): {reason} becomes {} ({})",
                            command.as_str(),
                            self.stage_words(&diagnostic, context, &finding.address),
                            change.reason,
                            change.rule
                        ));
                    }
                    reason = change.reason;
                    rule.push('+');
                    rule.push_str(&change.rule);
                } else if let Some(command) = *command
                    && self.explain
                {
                    explanation.push(format!(
                        "the failure answered {} ({}): {reason} stands",
                        command.as_str(),
                        self.stage_words(&diagnostic, context, &finding.address)
                    ));
                }
            }
            reason
        };
        // Without a status code, the pseudo-code's class follows the reply code, else what the
        // text says of itself ("temporary", "persistent"), else whether delivery goes on.
        // The bounce's own words stood in for the recipient's: what codes they give are its.
        if from_overall {
            status = status.or_else(|| choose_status(None, &diagnostic));
            reply_code = reply_code.or_else(|| status::find_reply_code(&diagnostic));
        }
        let status = status.unwrap_or_else(|| {
            let temporary = reply_code.map_or_else(
                || self.rules.says_temporary(&diagnostic) || action == "delayed",
                |c| c < 500,
            );
            // Refused at MAIL FROM, the recipient was never asked: its state is on hold,
            // whatever the text then says of the sender.
            let stage = *stage
                .get_or_init(|| self.stage_of(&diagnostic, context, &finding.address, reply_code));
            let reason = if stage == Some(SmtpCommand::Mail) {
                BounceReason::OnHold
            } else {
                reason
            };
            self.rules.pseudo_status(reason, !temporary)
        });
        RecipientReport {
            address: finding.address,
            action,
            status: status.to_string(),
            reply_code: reply_code.map(|c| c.to_string()).unwrap_or_default(),
            class: reason.class(permanent),
            reason,
            diagnostic,
            remote_mta: finding.remote_mta.to_string(),
            feedback_type: None,
            rule,
            explanation,
        }
    }

    /// Where the stage was read, in words (explaining only).
    fn stage_words(&self, diagnostic: &str, context: &str, address: &str) -> String {
        if let Some((_, phrase)) = self.rules.command_phrase_in(diagnostic) {
            return format!("the diagnostic says \"{phrase}\"");
        }
        if transcript_command(context, address).is_some() {
            return "the session transcript above the recipient".into();
        }
        if self.stage_near(context, address).is_some() {
            return "the lines beside the recipient name it".into();
        }
        "a remote reply code, the command not named".into()
    }

    /// The SMTP stage the failure answered: named in the diagnostic, a transcript or the lines
    /// beside the recipient; a reply code of unnamed stage is [`SmtpCommand::Unknown`].
    fn stage_of(
        &self,
        diagnostic: &str,
        context: &str,
        address: &str,
        reply_code: Option<u16>,
    ) -> Option<SmtpCommand> {
        self.rules
            .command_in(diagnostic)
            .or_else(|| transcript_command(context, address))
            // A DSN's own prose often names the stage ("in reply to RCPT TO command").
            .or_else(|| self.stage_near(context, address))
            .or(reply_code.map(|_| SmtpCommand::Unknown))
    }

    /// The SMTP stage named in the lines that report `address` in the bounce's own text (before
    /// the quoted original): the line naming it and those after it, up to a blank line.
    fn stage_near(&self, context: &str, address: &str) -> Option<SmtpCommand> {
        const WINDOW: usize = 4;
        let address = address.to_ascii_lowercase();
        let lines: Vec<&str> = context.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if !line.contains('@') || !line.to_ascii_lowercase().contains(&address) {
                continue;
            }
            let window: Vec<&str> = lines[i..lines.len().min(i + WINDOW)]
                .iter()
                .take_while(|l| !l.trim().is_empty())
                .copied()
                .collect();
            if let Some(command) = self.rules.command_in(&window.join(" ")) {
                return Some(command);
            }
        }
        None
    }

    /// An auto-reply; one that says the mailbox is gone is a (soft) bounce.
    fn auto_reply(&self, message: &Message<'_>, parts: &MailParts) -> Report {
        let address = message
            .from()
            .and_then(|a| a.first())
            .and_then(|a| a.address())
            .unwrap_or_default()
            .to_string();
        let text = prose::clean(&parts.human_text);
        if self.rules.match_text(&text.to_lowercase()) == Some(BounceReason::Suspend) {
            let recipient = self.classify(
                Finding {
                    address,
                    action: Some("failed"),
                    status: None,
                    diagnostic: &text,
                    remote_mta: "",
                    reporting_mta: "",
                    local_mailer: false,
                    fields: &[],
                    recipients: &[],
                },
                "",
            );
            return Report {
                kind: ReportKind::Bounce,
                recipients: vec![recipient],
                original: OriginalMessage::default(),
                error: None,
            };
        }
        Report {
            kind: ReportKind::AutoReply,
            recipients: vec![RecipientReport {
                address,
                action: String::new(),
                status: String::new(),
                reply_code: String::new(),
                reason: BounceReason::Vacation,
                class: BounceClass::None,
                diagnostic: message.subject().unwrap_or_default().to_string(),
                remote_mta: String::new(),
                feedback_type: None,
                rule: "analyser:auto_reply".into(),
                explanation: Vec::new(),
            }],
            original: OriginalMessage::default(),
            error: None,
        }
    }

    /// A JSON notification (Amazon SES through SNS) turned into a report.
    fn notification_report(&self, notification: ses::Notification) -> Report {
        let recipients: Vec<RecipientReport> = notification
            .recipients
            .into_iter()
            .map(|r| {
                if notification.kind == ReportKind::Complaint {
                    return RecipientReport::feedback(r.address, r.feedback_type);
                }
                self.classify(
                    Finding {
                        address: r.address,
                        action: r.action.as_deref(),
                        status: r.status.as_deref(),
                        diagnostic: &r.diagnostic,
                        remote_mta: "",
                        reporting_mta: "",
                        local_mailer: false,
                        fields: &[],
                        recipients: &[],
                    },
                    "",
                )
            })
            .collect();
        Report {
            kind: if notification.kind == ReportKind::Complaint {
                ReportKind::Complaint
            } else {
                kind_of(&recipients)
            },
            recipients,
            original: OriginalMessage::default(),
            error: None,
        }
    }
}

/// One report of several: the recipients of all those of the first one's kind (bounces and
/// delays count as one kind), the first one's original.
fn merge(reports: Vec<Report>) -> Report {
    let mut reports = reports.into_iter();
    let Some(mut first) = reports.next() else {
        return Report::other("no report");
    };
    for report in reports {
        let same = report.kind == first.kind
            || matches!(
                (first.kind, report.kind),
                (
                    ReportKind::Bounce | ReportKind::Delay,
                    ReportKind::Bounce | ReportKind::Delay
                )
            );
        if same {
            first.recipients.extend(report.recipients);
        }
    }
    if matches!(first.kind, ReportKind::Bounce | ReportKind::Delay) {
        first.kind = kind_of(&first.recipients);
    }
    first
}

/// The text the rules read: lower-cased, without the `550-5.7.1` prefixes that continuation lines
/// of multi-line replies put into the middle of sentences.
fn rule_text(diagnostic: &str) -> String {
    use std::sync::LazyLock;
    static CONTINUATION: LazyLock<regex::Regex> = LazyLock::new(|| {
        regex::Regex::new(r"\s[245]\d\d[ -](?:[245]\.\d{1,3}\.\d{1,3}\s)?").expect("valid")
    });
    let lower = diagnostic.to_lowercase();
    match lower.find(|c: char| c.is_ascii_alphabetic()) {
        // Keep the first code (it precedes the text), drop the ones inside it.
        Some(start) => format!(
            "{}{}",
            &lower[..start],
            CONTINUATION.replace_all(&lower[start..], " ")
        ),
        None => lower,
    }
}

/// The status code to report: one the remote server gave with its reply code, else the report's
/// Status field, else any code in the diagnostic.
fn choose_status(field: Option<StatusCode>, diagnostic: &str) -> Option<StatusCode> {
    use std::sync::LazyLock;
    static AFTER_REPLY: LazyLock<regex::Regex> = LazyLock::new(|| {
        regex::Regex::new(r"(?-u:\b)[245]\d\d[ -]'?\s?([245]\.\d{1,3}\.\d{1,3})(?-u:\b)")
            .expect("valid")
    });
    let replied: Vec<StatusCode> = AFTER_REPLY
        .captures_iter(diagnostic)
        .filter_map(|c| StatusCode::parse(&c[1]))
        .collect();
    let replied = replied
        .iter()
        .rev()
        .find(|s| !s.is_generic())
        .or(replied.first())
        .copied();
    match (replied, field) {
        (Some(r), Some(f)) if r.is_generic() && !f.is_generic() => Some(f),
        (Some(r), _) => Some(r),
        (None, Some(f)) if f.is_generic() => StatusCode::find(diagnostic)
            .filter(|s| !s.is_generic())
            .or(Some(f)),
        (None, Some(f)) => Some(f),
        (None, None) => StatusCode::find(diagnostic),
    }
}

/// Postfix's address verification (`reject_unverified_recipient`) refuses with "Recipient address
/// rejected: undeliverable address: <why>" (or "unverified address:" while the probe is pending):
/// the why is the probe's own result, a remote's reply or Postfix's own words, and says what the
/// outer 5.1.1 or 4.1.1 only wraps (a probe refused by a block list proves no unknown user).
fn probe_result(diagnostic: &str) -> Option<&str> {
    use std::sync::LazyLock;
    static PROBE: LazyLock<regex::Regex> = LazyLock::new(|| {
        regex::Regex::new(r"(?i)(?-u:\b)(?:undeliverable|unverified) address: ").expect("valid")
    });
    let rest = diagnostic[PROBE.find(diagnostic)?.end()..].trim();
    (rest.len() > 3).then_some(rest)
}

/// In a session transcript (`>>> DATA` / `<<< 550 … <address>…`), the command the recipient's
/// error answered; `Connect` when the server refused before any command was sent.
fn transcript_command(text: &str, address: &str) -> Option<SmtpCommand> {
    let address = address.to_ascii_lowercase();
    let local = address
        .split('@')
        .next()
        .filter(|l| !l.is_empty())
        .map(|l| format!("{l}@"));
    let mut last = None;
    let (mut seen_command, mut refused) = (false, false);
    for line in text.lines() {
        let trimmed = line.trim_start();
        if let Some(command) = trimmed.strip_prefix(">>>") {
            seen_command = true;
            let word = command
                .trim_start()
                .get(..4)
                .unwrap_or("")
                .to_ascii_uppercase();
            last = match word.as_str() {
                "MAIL" => Some(SmtpCommand::Mail),
                "RCPT" => Some(SmtpCommand::Rcpt),
                "DATA" => Some(SmtpCommand::Data),
                "HELO" | "EHLO" => Some(SmtpCommand::Connect),
                _ => last,
            };
        } else if let Some(reply) = trimmed.strip_prefix("<<<") {
            refused |= matches!(reply.trim_start().as_bytes().first(), Some(b'4' | b'5'));
            let lower = trimmed.to_ascii_lowercase();
            if lower.contains(&address) || local.as_deref().is_some_and(|l| lower.contains(l)) {
                return last;
            }
        }
    }
    // Refused, and no command was ever sent: the server's greeting refused the client.
    (refused && !seen_command).then_some(SmtpCommand::Connect)
}

/// Whether a diagnostic names a null MX ("nullMX", "null MX", the record "MX 0 .").
fn names_null_mx(diagnostic: &str) -> bool {
    let lower = diagnostic.to_ascii_lowercase();
    lower.contains("nullmx") || lower.contains("null mx") || lower.contains("mx 0 .")
}

/// Whether an address's domain is the reporting MTA's host name or a domain that name lies in
/// (`user@example.org` reported by `mx1.example.org`).
fn is_own_domain(address: &str, reporting_mta: &str) -> bool {
    let Some((_, domain)) = address.rsplit_once('@') else {
        return false;
    };
    let domain = domain.trim_end_matches('.');
    let host = reporting_mta.trim().trim_end_matches('.');
    // A domain of one label ("localhost", "com") says nothing of whose it is.
    if domain.is_empty() || !domain.contains('.') || host.is_empty() {
        return false;
    }
    host.eq_ignore_ascii_case(domain)
        || (host.len() > domain.len()
            && host.as_bytes()[host.len() - domain.len() - 1] == b'.'
            && host[host.len() - domain.len()..].eq_ignore_ascii_case(domain))
}

/// What the analyser found about one recipient, before classification.
struct Finding<'a> {
    address: String,
    action: Option<&'a str>,
    status: Option<&'a str>,
    diagnostic: &'a str,
    remote_mta: &'a str,
    /// The DSN's Reporting-MTA (its name, type stripped), empty when there is none.
    reporting_mta: &'a str,
    /// The DSN's Diagnostic-Code is of type `X-Unix`: a local delivery program's exit status.
    local_mailer: bool,
    /// The DSN recipient block's fields (names lower case); none for prose.
    fields: &'a [(String, String)],
    /// Every failed recipient of the report, this one among them.
    recipients: &'a [String],
}

fn kind_of(recipients: &[RecipientReport]) -> ReportKind {
    let all = |actions: &[&str]| {
        recipients
            .iter()
            .all(|r| actions.contains(&r.action.as_str()))
    };
    if all(&["delivered", "relayed", "expanded"]) {
        ReportKind::Delivered
    } else if all(&["delayed"]) {
        ReportKind::Delay
    } else {
        ReportKind::Bounce
    }
}

/// The bounce's own text as it concerns `address`: without the blocks that name only another of
/// its failed recipients (`addresses`), whose words are not this recipient's. A block starts at a
/// line naming another recipient and ends at a blank line or a line naming this one.
fn context_of<'t>(text: &'t str, address: &str, addresses: &[String]) -> Cow<'t, str> {
    let others: Vec<&str> = addresses
        .iter()
        .map(String::as_str)
        .filter(|a| !a.is_empty() && !a.eq_ignore_ascii_case(address))
        .collect();
    if others.is_empty() || !text.contains('@') {
        return Cow::Borrowed(text);
    }
    let mut kept = String::with_capacity(text.len());
    let mut skipping = false;
    for line in text.lines() {
        if line.contains('@') {
            if !address.is_empty() && prose::line_names(line, address) {
                skipping = false;
            } else if others.iter().any(|o| prose::line_names(line, o)) {
                skipping = true;
            }
        } else if line.trim().is_empty() {
            skipping = false;
        }
        if !skipping {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    Cow::Owned(kept)
}

/// What the human-readable part says about `address`, for DSNs without a diagnostic.
fn prose_diagnostic(text: &str, address: &str) -> String {
    // Every address starts a block, so the next recipient's line ends this one's; when the
    // address never starts a line of its own, the first line that names it.
    let own_block = prose::recipients(text, &|_| false)
        .into_iter()
        .find(|r| r.address.eq_ignore_ascii_case(address));
    let exclude = |a: &str| !a.eq_ignore_ascii_case(address);
    own_block
        .or_else(|| prose::recipients(text, &exclude).into_iter().next())
        .map(|r| r.diagnostic)
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| prose::transcript_lines(text, address))
}

/// Addresses that sent or received the bounce, or the original: never the failed recipient.
fn sender_addresses(message: &Message<'_>, parts: &MailParts) -> Vec<String> {
    let mut senders: Vec<String> = Vec::new();
    for list in [
        message.from(),
        message.to(),
        message.reply_to(),
        message.sender(),
    ]
    .into_iter()
    .flatten()
    {
        senders.extend(
            list.iter()
                .filter_map(|a| a.address())
                .map(str::to_ascii_lowercase),
        );
    }
    if let Some(path) = message.return_address() {
        senders.push(path.to_ascii_lowercase());
    }
    if let Some(original) = &parts.original {
        senders.extend(original.from.iter().map(|a| a.to_ascii_lowercase()));
        senders.extend(original.return_paths.iter().map(|a| a.to_ascii_lowercase()));
    }
    senders
}

fn is_system_address(address: &str) -> bool {
    let local = address.split('@').next().unwrap_or("");
    matches!(local, "mailer-daemon" | "mail-daemon" | "mailerdaemon")
}

/// A complaint forwarded without an ARF part (some providers' feedback loops): a complaint subject
/// and the original attached.
fn is_complaint_without_arf(message: &Message<'_>, parts: &MailParts) -> bool {
    use std::sync::LazyLock;
    static SUBJECT: LazyLock<regex::Regex> = LazyLock::new(|| {
        regex::Regex::new(r"(?i)complaint about message|abuse report|spam (?:complaint|report)")
            .expect("valid")
    });
    parts.original.is_some() && message.subject().is_some_and(|s| SUBJECT.is_match(s))
}

/// Signs that a mail without DSN fields is a bounce: who sent it, its subject, its headers, its
/// text. `weak` also counts the null sender and the text, which auto-replies share.
fn looks_like_bounce(message: &Message<'_>, parts: &MailParts, weak: bool) -> bool {
    use std::sync::LazyLock;
    static SUBJECT: LazyLock<regex::Regex> = LazyLock::new(|| {
        regex::Regex::new(
            r"(?i)undeliver|undelivered|delivery (?:status notification|failure|has failed|failed|problem|report|notification)|returned mail|mail delivery (?:failed|failure|system|subsystem)|failure notice|could not (?:be )?deliver|non[- ]?remis|unzustellbar|nicht zustellbar|non recapitabile|no se puede entregar|message not delivered|delivery notification|rejected|mail system error|warning: could not send|nondeliverable|bounce|returned to sender|failed delivery|delivery unsuccessful|error sending",
        )
        .expect("valid")
    });
    static FROM: LazyLock<regex::Regex> = LazyLock::new(|| {
        regex::Regex::new(r"(?i)mailer-daemon|post_?master|mail delivery|mail-daemon|mailer daemon|delivery subsystem|mailerdaemon").expect("valid")
    });
    let from_system = message.from().and_then(|a| a.first()).is_some_and(|a| {
        a.address().is_some_and(|x| FROM.is_match(x)) || a.name().is_some_and(|n| FROM.is_match(n))
    });
    let null_sender = message
        .return_address()
        .is_some_and(|p| p.trim_matches(|c| c == '<' || c == '>').is_empty())
        || message
            .header_raw("Return-Path")
            .is_some_and(|p| p.trim() == "<>");
    static BODY: LazyLock<regex::Regex> = LazyLock::new(|| {
        regex::Regex::new(
            r"(?i)could not be delivered to|was not delivered to|undeliverable|delivery (?:to the following recipients? )?(?:has )?failed|permanent (?:fatal )?error|following address(?:es)? (?:had|failed)|returned mail|message could not be delivered|delivery status notification|unable to deliver",
        )
        .expect("valid")
    });
    // The first 4 KiB, cut where a character starts (the text may be in any script).
    let body_says = || {
        let head = &parts.human_text[..parts.human_text.floor_char_boundary(4096)];
        BODY.is_match(head)
    };
    // Cheapest evidence first; the body's words are read only when nothing else tells.
    parts.is_report
        || from_system
        || (weak && null_sender)
        || message.header_raw("X-Failed-Recipients").is_some()
        || message.subject().is_some_and(|s| SUBJECT.is_match(s))
        || (weak && body_says())
}

#[cfg(test)]
mod tests;
