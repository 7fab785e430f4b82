//! The access report as one self-contained HTML page a clerk can send or print (inline style, no
//! scripts, no external reference of any kind), and as plain text for the terminal.

use maud::{DOCTYPE, Markup, html};

use super::Lang;
use crate::model::{ContactStatus, Reason, Timestamp};
use crate::service::AccessReport;
use crate::store::{Keep, KeepRule, LiftPath};

/// The words of the report in one language.
struct Words {
    title: &'static str,
    intro: &'static str,
    generated: &'static str,
    erased: &'static str,
    erased_by: &'static str,
    erased_rest: &'static str,
    status: &'static str,
    status_legend: &'static str,
    company: &'static str,
    brand: &'static str,
    all_brands: &'static str,
    all_companies: &'static str,
    suppressions: &'static str,
    no_suppressions: &'static str,
    channel: &'static str,
    reason: &'static str,
    source: &'static str,
    note: &'static str,
    since: &'static str,
    expires: &'static str,
    lifted: &'static str,
    how_to_lift: &'static str,
    recorded_by: &'static str,
    kept_until: &'static str,
    events: &'static str,
    no_events: &'static str,
    /// The bounce rule that decided an event's reason.
    rule: &'static str,
    time: &'static str,
    kind: &'static str,
    details: &'static str,
    consents: &'static str,
    no_consents: &'static str,
    confirmed: &'static str,
    proof: &'static str,
    evidence: &'static str,
    no_evidence: &'static str,
    size: &'static str,
    headers: &'static str,
    sends: &'static str,
    no_sends: &'static str,
    class: &'static str,
    retention: &'static str,
    retention_text: &'static str,
    days: &'static str,
    bytes: &'static str,
}

const EN: Words = Words {
    title: "Access report (GDPR Art. 15)",
    intro: "Everything this mail gateway holds about the address below, why mail to it is blocked where it is, and how long each item is kept.",
    generated: "Generated",
    erased: "This address was erased on",
    erased_by: "by",
    erased_rest: "No personal data about it is held any more. Only a keyed hash of it is kept, so that it stays blocked where it was blocked and no re-import can revive it.",
    status: "Status per company and brand",
    status_legend: "A active · U unsubscribed · B bounced · D deleted",
    company: "Company",
    brand: "Brand",
    all_brands: "all brands",
    all_companies: "all companies",
    suppressions: "Blocks",
    no_suppressions: "No blocks.",
    channel: "Channel",
    reason: "Reason",
    source: "Source",
    note: "Note",
    since: "Since",
    expires: "Expires",
    lifted: "Lifted",
    how_to_lift: "How it can be lifted",
    recorded_by: "Recorded by",
    kept_until: "Kept until",
    events: "Events",
    no_events: "No events.",
    rule: "decided by rule",
    time: "Time",
    kind: "Kind",
    details: "Details",
    consents: "Consents (confirmed opt-ins)",
    no_consents: "No consents.",
    confirmed: "Confirmed",
    proof: "Proof (SHA-256)",
    evidence: "Stored mails and requests",
    no_evidence: "No stored mails.",
    size: "Size",
    headers: "Header of the original",
    sends: "Mails sent (metadata only)",
    no_sends: "No mails sent through this gateway.",
    class: "Class",
    retention: "Retention",
    retention_text: "Items are deleted automatically after these periods. Blocks that stand, the proof of a standing opt-out or complaint, consents and the record of an erasure are kept as long as they are needed.",
    days: "days",
    bytes: "bytes",
};

const DE: Words = Words {
    title: "Auskunft nach Art. 15 DSGVO",
    intro: "Alles, was dieses Mail-Gateway über die unten genannte Adresse speichert, warum Mails an sie wo gesperrt sind, und wie lange jede Angabe aufbewahrt wird.",
    generated: "Erstellt",
    erased: "Diese Adresse wurde gelöscht am",
    erased_by: "durch",
    erased_rest: "Es werden keine personenbezogenen Daten mehr zu ihr gespeichert. Nur ein mit geheimem Schlüssel gebildeter Hashwert bleibt, damit sie gesperrt bleibt, wo sie gesperrt war, und kein erneuter Import sie wieder aufnehmen kann.",
    status: "Status je Firma und Marke",
    status_legend: "A aktiv · U abgemeldet · B unzustellbar · D gelöscht",
    company: "Firma",
    brand: "Marke",
    all_brands: "alle Marken",
    all_companies: "alle Firmen",
    suppressions: "Sperren",
    no_suppressions: "Keine Sperren.",
    channel: "Kanal",
    reason: "Grund",
    source: "Quelle",
    note: "Notiz",
    since: "Seit",
    expires: "Läuft ab",
    lifted: "Aufgehoben",
    how_to_lift: "Wie sie aufgehoben werden kann",
    recorded_by: "Eingetragen von",
    kept_until: "Aufbewahrt bis",
    events: "Ereignisse",
    no_events: "Keine Ereignisse.",
    rule: "entschieden durch Regel",
    time: "Zeit",
    kind: "Art",
    details: "Einzelheiten",
    consents: "Einwilligungen (bestätigte Anmeldungen)",
    no_consents: "Keine Einwilligungen.",
    confirmed: "Bestätigt",
    proof: "Nachweis (SHA-256)",
    evidence: "Gespeicherte Mails und Anfragen",
    no_evidence: "Keine gespeicherten Mails.",
    size: "Größe",
    headers: "Kopfzeilen des Originals",
    sends: "Versandte Mails (nur Metadaten)",
    no_sends: "Keine Mails über dieses Gateway versandt.",
    class: "Art der Mail",
    retention: "Aufbewahrung",
    retention_text: "Angaben werden nach diesen Fristen automatisch gelöscht. Bestehende Sperren, der Nachweis einer bestehenden Abmeldung oder Beschwerde, Einwilligungen und der Vermerk einer Löschung bleiben, solange sie gebraucht werden.",
    days: "Tage",
    bytes: "Bytes",
};

fn words(lang: Lang) -> &'static Words {
    match lang {
        Lang::De => &DE,
        Lang::En => &EN,
    }
}

fn reason(lang: Lang, reason: Reason) -> &'static str {
    match (lang, reason) {
        (Lang::En, Reason::HardBounce) => "mailbox does not exist (hard bounce)",
        (Lang::En, Reason::SoftBounce) => "repeated delivery failures (soft bounce)",
        (Lang::En, Reason::Complaint) => "spam complaint",
        (Lang::En, Reason::Unsubscribe) => "unsubscribed",
        (Lang::En, Reason::Manual) => "blocked by staff",
        (Lang::De, Reason::HardBounce) => "Postfach existiert nicht (Hard Bounce)",
        (Lang::De, Reason::SoftBounce) => "wiederholte Zustellfehler (Soft Bounce)",
        (Lang::De, Reason::Complaint) => "Spam-Beschwerde",
        (Lang::De, Reason::Unsubscribe) => "abgemeldet",
        (Lang::De, Reason::Manual) => "durch Mitarbeiter gesperrt",
    }
}

fn lift_path(lang: Lang, path: LiftPath) -> &'static str {
    match (lang, path) {
        (Lang::En, LiftPath::OwnersConfirmedOptIn) => {
            "only by the address owner's new, confirmed opt-in"
        }
        (Lang::En, LiftPath::Staff) => "by staff, with a note, or by the owner's confirmed opt-in",
        (Lang::En, LiftPath::NotInForce) => "no longer in force",
        (Lang::De, LiftPath::OwnersConfirmedOptIn) => {
            "nur durch eine neue, bestätigte Anmeldung der Inhaberin oder des Inhabers"
        }
        (Lang::De, LiftPath::Staff) => {
            "durch Mitarbeiter mit Notiz, oder durch eine bestätigte Anmeldung"
        }
        (Lang::De, LiftPath::NotInForce) => "nicht mehr in Kraft",
    }
}

fn keep(lang: Lang, keep: &Keep) -> String {
    if let Some(until) = keep.until {
        return date(until);
    }
    match (lang, keep.rule) {
        (Lang::En, KeepRule::Indefinitely) => "kept (proof)".into(),
        (Lang::En, KeepRule::WithSuppression) => "as long as its block".into(),
        (Lang::En, _) => "while the block stands".into(),
        (Lang::De, KeepRule::Indefinitely) => "bleibt (Nachweis)".into(),
        (Lang::De, KeepRule::WithSuppression) => "solange ihre Sperre".into(),
        (Lang::De, _) => "solange die Sperre besteht".into(),
    }
}

fn date(t: Timestamp) -> String {
    t.format("%Y-%m-%d").to_string()
}

fn time(t: Timestamp) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn scope(w: &Words, company: &str, brand: &str) -> String {
    match (company, brand) {
        ("", _) => w.all_companies.to_string(),
        (company, "") => format!("{company} ({})", w.all_brands),
        (company, brand) => format!("{company} / {brand}"),
    }
}

pub(crate) const STYLE: &str = "body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;color:#111;max-width:70rem;margin:2rem auto;padding:0 1rem}\
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #999}\
table{border-collapse:collapse;width:100%;margin:.5rem 0}th,td{border:1px solid #bbb;padding:.25rem .4rem;text-align:left;vertical-align:top}\
th{background:#eee}code,pre{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}\
pre{white-space:pre-wrap;word-break:break-all;background:#f6f6f6;border:1px solid #ddd;padding:.4rem;margin:.2rem 0}\
.address{font-size:1.2rem;font-weight:600}.muted{color:#555}.erased{border:2px solid #333;padding:1rem}\
@media print{body{margin:0;max-width:none}h2{break-after:avoid}tr{break-inside:avoid}}";

/// The report as one self-contained HTML page.
pub fn html(report: &AccessReport, lang: Lang) -> String {
    let w = words(lang);
    let page: Markup = html! {
        (DOCTYPE)
        html lang=(lang.as_str()) {
            (super::head(&format!("{} – {}", w.title, report.address), &[STYLE]))
            body {
                h1 { (w.title) }
                p class="address" { (report.address) }
                p class="muted" { (w.generated) ": " (time(report.generated_at)) }
                (body(report, lang, None))
            }
        }
    };
    page.into_string()
}

/// The report's content, for this page and for the staff page (which passes `evidence_href`, the
/// path stored mails are linked under; the page sent to the person links nothing).
pub fn body(report: &AccessReport, lang: Lang, evidence_href: Option<&str>) -> Markup {
    let w = words(lang);
    html! {
        @if let Some(erased) = &report.erased {
            div class="erased" {
                p {
                    (w.erased) " " (time(erased.erased_at))
                    @if let Some(by) = &erased.erased_by { " " (w.erased_by) " " (by) }
                    "."
                }
                p { (w.erased_rest) }
            }
        } @else {
            p { (w.intro) }
            (status_section(report, w))
            (suppressions_section(report, w, lang))
            (events_section(report, w, lang))
            (consents_section(report, w, lang))
            (evidence_section(report, w, lang, evidence_href))
            (sends_section(report, w, lang))
            (retention_section(report, w, lang))
        }
    }
}

fn status_section(report: &AccessReport, w: &Words) -> Markup {
    html! {
        h2 { (w.status) }
        table {
            thead { tr { th { (w.company) } th { (w.brand) } th { "Status" } } }
            tbody {
                @for company in &report.companies {
                    tr { td { (company.company) } td { "–" } td { (status(company.status)) } }
                    @for brand in &company.brands {
                        tr { td { (company.company) } td { (brand.brand) } td { (status(brand.status)) } }
                    }
                }
            }
        }
        p class="muted" { (w.status_legend) }
    }
}

fn status(status: ContactStatus) -> &'static str {
    status.code()
}

fn suppressions_section(report: &AccessReport, w: &Words, lang: Lang) -> Markup {
    html! {
        h2 { (w.suppressions) }
        @if report.suppressions.is_empty() {
            p { (w.no_suppressions) }
        } @else {
            table {
                thead { tr {
                    th { (w.channel) } th { (w.company) } th { (w.reason) } th { (w.source) }
                    th { (w.note) } th { (w.since) } th { (w.expires) } th { (w.lifted) }
                    th { (w.how_to_lift) } th { (w.kept_until) }
                } }
                tbody {
                    @for s in &report.suppressions {
                        tr {
                            td { (s.channel.as_str()) }
                            td { (scope(w, &s.company, &s.brand)) }
                            td { (reason(lang, s.reason)) }
                            td { (s.source.as_str()) }
                            td { @if let Some(note) = &s.note { (note) } }
                            td {
                                (time(s.created_at))
                                @if let Some(by) = &s.created_by { br; span class="muted" { (by) } }
                            }
                            td { @if let Some(t) = s.expires_at { (time(t)) } }
                            td {
                                @if let Some(t) = s.lifted_at { (time(t)) }
                                @if let Some(by) = &s.lifted_by { br; span class="muted" { (by) } }
                            }
                            td { (lift_path(lang, s.lift)) }
                            td { (keep(lang, &s.kept)) }
                        }
                    }
                }
            }
        }
    }
}

fn events_section(report: &AccessReport, w: &Words, lang: Lang) -> Markup {
    html! {
        h2 { (w.events) }
        @if report.events.is_empty() {
            p { (w.no_events) }
        } @else {
            table {
                thead { tr {
                    th { (w.time) } th { (w.kind) } th { (w.company) } th { (w.details) }
                    th { (w.note) } th { (w.kept_until) }
                } }
                tbody {
                    @for e in &report.events {
                        tr {
                            td { (time(e.occurred_at)) }
                            td { (e.kind) }
                            td { (scope(w, &e.company, &e.brand)) }
                            td {
                                @for part in [&e.reason, &e.status, &e.reply_code, &e.diagnostic].into_iter().flatten() {
                                    (part) br;
                                }
                                @if let Some(source) = &e.source { span class="muted" { (source) } }
                                @if let Some(rule) = &e.rule { br; span class="muted" { (w.rule) ": " code { (rule) } } }
                            }
                            td { @if let Some(note) = &e.note { (note) } }
                            td { (keep(lang, &e.kept)) }
                        }
                    }
                }
            }
        }
    }
}

fn consents_section(report: &AccessReport, w: &Words, lang: Lang) -> Markup {
    html! {
        h2 { (w.consents) }
        @if report.consents.is_empty() {
            p { (w.no_consents) }
        } @else {
            table {
                thead { tr {
                    th { (w.channel) } th { (w.company) } th { (w.confirmed) } th { (w.source) }
                    th { (w.proof) } th { (w.kept_until) }
                } }
                tbody {
                    @for c in &report.consents {
                        tr {
                            td { (c.channel.as_str()) }
                            td { (scope(w, &c.company, &c.brand)) }
                            td { (time(c.confirmed_at)) }
                            td { (c.source) }
                            td {
                                code { (c.proof_sha256) }
                                @if let Some(name) = &c.proof_name { br; span class="muted" { (name) } }
                            }
                            td { (keep(lang, &c.kept)) }
                        }
                    }
                }
            }
        }
    }
}

fn evidence_section(report: &AccessReport, w: &Words, lang: Lang, href: Option<&str>) -> Markup {
    html! {
        h2 { (w.evidence) }
        @if report.evidence.is_empty() {
            p { (w.no_evidence) }
        } @else {
            table {
                thead { tr {
                    th { (w.time) } th { (w.kind) } th { (w.size) } th { "SHA-256" } th { (w.kept_until) }
                } }
                tbody {
                    @for e in &report.evidence {
                        tr {
                            td {
                                @if let Some(href) = href {
                                    a href={ (href) "/" (e.id) } { (time(e.received_at)) }
                                } @else {
                                    (time(e.received_at))
                                }
                            }
                            td { (e.kind) }
                            td { (e.size) " " (w.bytes) }
                            td { code { (e.sha256) } }
                            td { (keep(lang, &e.kept)) }
                        }
                        @if let Some(headers) = &e.headers {
                            tr { td colspan="5" {
                                span class="muted" { (w.headers) }
                                pre { (headers) }
                            } }
                        }
                    }
                }
            }
        }
    }
}

fn sends_section(report: &AccessReport, w: &Words, lang: Lang) -> Markup {
    html! {
        h2 { (w.sends) }
        @if report.sends.is_empty() {
            p { (w.no_sends) }
        } @else {
            table {
                thead { tr {
                    th { (w.time) } th { (w.company) } th { (w.class) } th { "Message-ID" } th { (w.kept_until) }
                } }
                tbody {
                    @for s in &report.sends {
                        tr {
                            td { (time(s.sent_at)) }
                            td { (scope(w, &s.company, &s.brand)) }
                            td { (s.class) }
                            td { code { (s.message_id) } }
                            td { (keep(lang, &s.kept)) }
                        }
                    }
                }
            }
        }
    }
}

fn retention_section(report: &AccessReport, w: &Words, lang: Lang) -> Markup {
    let r = &report.retention;
    let rows: [(&str, u32); 5] = match lang {
        Lang::De => [
            ("Ereignisse", r.events_days),
            (
                "Unzustellbarkeits- und Abwesenheitsmails",
                r.bounce_mail_days,
            ),
            ("Versanddaten", r.sends_days),
            (
                "Nachweis einer aufgehobenen Abmeldung, ab Aufhebung",
                r.lifted_proof_days,
            ),
            ("Abgelaufene Sperren, ab Ablauf", r.expired_suppression_days),
        ],
        Lang::En => [
            ("Events", r.events_days),
            ("Bounce and auto-reply mails", r.bounce_mail_days),
            ("Send records", r.sends_days),
            (
                "Proof of a lifted opt-out, from the lift",
                r.lifted_proof_days,
            ),
            (
                "Expired blocks, from the expiry",
                r.expired_suppression_days,
            ),
        ],
    };
    html! {
        h2 { (w.retention) }
        p { (w.retention_text) }
        table { tbody {
            @for (what, days) in rows { tr { td { (what) } td { (days) " " (w.days) } } }
        } }
    }
}

/// The report as plain text for the terminal.
pub fn text(report: &AccessReport, lang: Lang) -> String {
    use std::fmt::Write;
    let w = words(lang);
    let mut out = String::new();
    let _ = writeln!(out, "{}: {}", w.title, report.address);
    let _ = writeln!(out, "{}: {}", w.generated, time(report.generated_at));
    if let Some(erased) = &report.erased {
        let by = erased
            .erased_by
            .as_ref()
            .map(|by| format!(" {} {by}", w.erased_by))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "\n{} {}{by}.\n{}",
            w.erased,
            time(erased.erased_at),
            w.erased_rest
        );
        return out;
    }
    let _ = writeln!(out, "\n{} ({})", w.status, w.status_legend);
    for company in &report.companies {
        let brands: Vec<String> = company
            .brands
            .iter()
            .map(|b| format!("{} {}", b.brand, b.status))
            .collect();
        let _ = writeln!(
            out,
            "  {} {}  [{}]",
            company.company,
            company.status,
            brands.join(", ")
        );
    }
    let _ = writeln!(out, "\n{}", w.suppressions);
    if report.suppressions.is_empty() {
        let _ = writeln!(out, "  {}", w.no_suppressions);
    }
    for s in &report.suppressions {
        let _ = writeln!(
            out,
            "  #{} {} {}: {} ({}), {} {}{}{}",
            s.id,
            s.channel.as_str(),
            scope(w, &s.company, &s.brand),
            reason(lang, s.reason),
            s.source.as_str(),
            w.since.to_lowercase(),
            time(s.created_at),
            s.expires_at
                .map(|t| format!(", {} {}", w.expires.to_lowercase(), time(t)))
                .unwrap_or_default(),
            s.lifted_at
                .map(|t| format!(", {} {}", w.lifted.to_lowercase(), time(t)))
                .unwrap_or_default(),
        );
        if let Some(note) = &s.note {
            let _ = writeln!(out, "     {}: {note}", w.note);
        }
        if let Some(by) = &s.created_by {
            let _ = writeln!(out, "     {}: {by}", w.recorded_by);
        }
        let _ = writeln!(out, "     {}: {}", w.how_to_lift, lift_path(lang, s.lift));
        let _ = writeln!(out, "     {}: {}", w.kept_until, keep(lang, &s.kept));
    }
    let _ = writeln!(out, "\n{}", w.events);
    if report.events.is_empty() {
        let _ = writeln!(out, "  {}", w.no_events);
    }
    for e in &report.events {
        let rule = e.rule.as_ref().map(|r| format!("{}: {r}", w.rule));
        let details: Vec<&str> = [&e.reason, &e.status, &e.diagnostic, &rule, &e.note]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect();
        let _ = writeln!(
            out,
            "  {} {} {}{}  [{}: {}]",
            time(e.occurred_at),
            e.kind,
            scope(w, &e.company, &e.brand),
            if details.is_empty() {
                String::new()
            } else {
                format!(": {}", details.join("; "))
            },
            w.kept_until,
            keep(lang, &e.kept)
        );
    }
    let _ = writeln!(out, "\n{}", w.consents);
    if report.consents.is_empty() {
        let _ = writeln!(out, "  {}", w.no_consents);
    }
    for c in &report.consents {
        let _ = writeln!(
            out,
            "  {} {} {}, {} {}, {}: {}",
            time(c.confirmed_at),
            c.channel.as_str(),
            scope(w, &c.company, &c.brand),
            w.source.to_lowercase(),
            c.source,
            w.proof,
            c.proof_sha256
        );
    }
    let _ = writeln!(out, "\n{}", w.evidence);
    if report.evidence.is_empty() {
        let _ = writeln!(out, "  {}", w.no_evidence);
    }
    for e in &report.evidence {
        let _ = writeln!(
            out,
            "  #{} {} {} {} {}, SHA-256 {}  [{}: {}]",
            e.id,
            time(e.received_at),
            e.kind,
            e.size,
            w.bytes,
            e.sha256,
            w.kept_until,
            keep(lang, &e.kept)
        );
        if let Some(headers) = &e.headers {
            for line in headers.lines() {
                let _ = writeln!(out, "     | {line}");
            }
        }
    }
    let _ = writeln!(out, "\n{}", w.sends);
    if report.sends.is_empty() {
        let _ = writeln!(out, "  {}", w.no_sends);
    }
    for s in &report.sends {
        let _ = writeln!(
            out,
            "  {} {} {} {}  [{}: {}]",
            time(s.sent_at),
            scope(w, &s.company, &s.brand),
            s.class,
            s.message_id,
            w.kept_until,
            keep(lang, &s.kept)
        );
    }
    let r = &report.retention;
    let _ = writeln!(
        out,
        "\n{}: events {}, bounce mails {}, sends {}, lifted proof {}, expired blocks {} {}",
        w.retention,
        r.events_days,
        r.bounce_mail_days,
        r.sends_days,
        r.lifted_proof_days,
        r.expired_suppression_days,
        w.days
    );
    out
}
