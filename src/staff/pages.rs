//! The staff pages' HTML (maud: every value escaped). Labels on every field, visible focus, no
//! script, nothing loaded from anywhere.

use maud::{DOCTYPE, Markup, html};

use super::Staff;
use crate::config::{Config, StaffRole};
use crate::render::Lang;
use crate::service::bulk::ImportReport;
use crate::service::{AccessReport, DayCounts, Overview};
use crate::store::{EvidenceRecord, LiftPath};

/// The words of the staff pages in one language.
pub struct Text {
    pub title: &'static str,
    pub sign_in: &'static str,
    pub user: &'static str,
    pub password: &'static str,
    pub no_accounts: &'static str,
    pub wrong: &'static str,
    pub too_many: &'static str,
    pub form_expired: &'static str,
    pub forbidden: &'static str,
    pub sign_out: &'static str,
    pub signed_in_as: &'static str,
    pub search: &'static str,
    pub address: &'static str,
    pub look_up: &'static str,
    pub back: &'static str,
    pub no_evidence: &'static str,
    pub evidence: &'static str,
    pub download: &'static str,
    pub shown_as_text: &'static str,
    pub received: &'static str,
    pub envelope: &'static str,
    pub other_language: (&'static str, &'static str),
    pub reason_required: &'static str,
    pub scope_required: &'static str,
    pub no_such_block: &'static str,
    pub add_block: &'static str,
    pub channel: &'static str,
    pub email: &'static str,
    pub postal: &'static str,
    pub scope: &'static str,
    pub all_brands: &'static str,
    /// The brand picker's search field (shown when scripts run).
    pub find_brand: &'static str,
    /// `{n}` of `{m}` brands shown, read out as the search narrows.
    pub brands_shown: &'static str,
    pub reason: &'static str,
    pub save: &'static str,
    pub lift_blocks: &'static str,
    pub lift: &'static str,
    pub lift_reason: &'static str,
    pub owner_only: &'static str,
    pub overview: &'static str,
    pub per_day: &'static str,
    pub day: &'static str,
    pub bounces: &'static str,
    pub complaints: &'static str,
    pub unsubscribes: &'static str,
    pub blocked: &'static str,
    pub recent: &'static str,
    pub recent_blocked: &'static str,
    pub queue: &'static str,
    pub nothing: &'static str,
    pub erase: &'static str,
    pub erase_consequences: &'static str,
    pub erase_confirm: &'static str,
    pub export: &'static str,
    pub import: &'static str,
    pub import_file: &'static str,
    pub import_done: &'static str,
}

const EN: Text = Text {
    title: "bouncegate – staff",
    sign_in: "Sign in",
    user: "User",
    password: "Password",
    no_accounts: "No staff accounts are configured: add [[staff]] entries to the config.",
    wrong: "Wrong user or password.",
    too_many: "Too many failed sign-ins. Try again in 15 minutes.",
    form_expired: "The form had expired. Please sign in again.",
    forbidden: "Not allowed.",
    sign_out: "Sign out",
    signed_in_as: "Signed in as",
    search: "Look up a contact",
    address: "E-mail address",
    look_up: "Look up",
    back: "Back to the search",
    no_evidence: "No stored mail with this number.",
    evidence: "Stored mail",
    download: "Download as .eml (byte for byte)",
    shown_as_text: "Shown as text: nothing in it is run or loaded.",
    received: "Received",
    envelope: "Envelope",
    other_language: ("de", "Deutsch"),
    reason_required: "A reason is required: say why, for whoever answers a data-protection request.",
    scope_required: "Choose at least one brand or company.",
    no_such_block: "No such block.",
    add_block: "Add a block",
    channel: "Channel",
    email: "E-mail",
    postal: "Letter post",
    scope: "For",
    all_brands: "all brands",
    find_brand: "Find a brand",
    brands_shown: "{n} of {m} brands shown",
    reason: "Reason",
    save: "Add the block",
    lift_blocks: "Lift a block",
    lift: "Lift",
    lift_reason: "Reason for lifting",
    owner_only: "Only the owner's new, confirmed opt-in lifts this block: no one else can.",
    overview: "Overview",
    per_day: "Per day, last 14 days",
    day: "Day",
    bounces: "Bounces",
    complaints: "Complaints",
    unsubscribes: "Unsubscribes",
    blocked: "Blocked sends",
    recent: "Latest bounces, complaints and unsubscribes",
    recent_blocked: "Latest blocked sends",
    queue: "Relay queue",
    nothing: "Nothing yet.",
    erase: "Erase this address",
    erase_consequences: "Erasing removes the address's plain text from every table and the database files, and every stored mail naming it except the proof of a standing opt-out. Only a keyed hash stays: the address stays blocked where it is blocked (status D), no import can bring it back, and only the owner's new confirmed opt-in lets mail go to it again. This cannot be undone.",
    erase_confirm: "I understand: erase it",
    export: "Export the blocks in force (CSV)",
    import: "Import blocks (CSV)",
    import_file: "CSV file (header: email, reason, company, brand, channel, note)",
    import_done: "Import finished",
};

const DE: Text = Text {
    title: "bouncegate – Mitarbeiter",
    sign_in: "Anmelden",
    user: "Benutzer",
    password: "Passwort",
    no_accounts: "Es sind keine Mitarbeiterkonten eingerichtet: [[staff]]-Einträge in der Konfiguration anlegen.",
    wrong: "Benutzer oder Passwort falsch.",
    too_many: "Zu viele fehlgeschlagene Anmeldungen. Bitte in 15 Minuten erneut versuchen.",
    form_expired: "Das Formular war abgelaufen. Bitte erneut anmelden.",
    forbidden: "Nicht erlaubt.",
    sign_out: "Abmelden",
    signed_in_as: "Angemeldet als",
    search: "Kontakt suchen",
    address: "E-Mail-Adresse",
    look_up: "Suchen",
    back: "Zurück zur Suche",
    no_evidence: "Keine gespeicherte Mail mit dieser Nummer.",
    evidence: "Gespeicherte Mail",
    download: "Als .eml herunterladen (bytegenau)",
    shown_as_text: "Als Text angezeigt: nichts darin wird ausgeführt oder geladen.",
    received: "Empfangen",
    envelope: "Umschlag",
    other_language: ("en", "English"),
    reason_required: "Ein Grund ist nötig: für die Beantwortung von Datenschutzanfragen.",
    scope_required: "Bitte mindestens eine Marke oder Firma wählen.",
    no_such_block: "Diese Sperre gibt es nicht.",
    add_block: "Sperre eintragen",
    channel: "Kanal",
    email: "E-Mail",
    postal: "Briefpost",
    scope: "Für",
    all_brands: "alle Marken",
    find_brand: "Marke suchen",
    brands_shown: "{n} von {m} Marken angezeigt",
    reason: "Grund",
    save: "Sperre eintragen",
    lift_blocks: "Sperre aufheben",
    lift: "Aufheben",
    lift_reason: "Grund der Aufhebung",
    owner_only: "Nur eine neue, bestätigte Anmeldung der Inhaberin oder des Inhabers hebt diese Sperre auf: sonst niemand.",
    overview: "Übersicht",
    per_day: "Pro Tag, letzte 14 Tage",
    day: "Tag",
    bounces: "Unzustellbare",
    complaints: "Beschwerden",
    unsubscribes: "Abmeldungen",
    blocked: "Gesperrte Sendungen",
    recent: "Neueste Unzustellbare, Beschwerden und Abmeldungen",
    recent_blocked: "Neueste gesperrte Sendungen",
    queue: "Warteschlange des Relays",
    nothing: "Noch nichts.",
    erase: "Diese Adresse löschen",
    erase_consequences: "Löschen entfernt die Adresse im Klartext aus allen Tabellen und den Datenbankdateien, dazu jede gespeicherte Mail, die sie nennt, außer dem Nachweis einer bestehenden Abmeldung. Nur ein mit geheimem Schlüssel gebildeter Hashwert bleibt: die Adresse bleibt gesperrt, wo sie gesperrt ist (Status D), kein Import bringt sie zurück, und nur eine neue, bestätigte Anmeldung der Inhaberin oder des Inhabers erlaubt wieder Mails an sie. Das lässt sich nicht rückgängig machen.",
    erase_confirm: "Verstanden: löschen",
    export: "Bestehende Sperren exportieren (CSV)",
    import: "Sperren importieren (CSV)",
    import_file: "CSV-Datei (Kopfzeile: email, reason, company, brand, channel, note)",
    import_done: "Import abgeschlossen",
};

/// `path?address=ADDRESS`, the address encoded for a URL.
fn link(path: &str, address: &str) -> String {
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("address", address)
        .finish();
    format!("{path}?{query}")
}

pub(super) fn contact_link(address: &str) -> String {
    link("/staff/contact", address)
}

/// The words for `lang`.
pub fn text(lang: Lang) -> &'static Text {
    match lang {
        Lang::De => &DE,
        Lang::En => &EN,
    }
}

const STYLE: &str = "header{display:flex;gap:1rem;align-items:center;justify-content:space-between;border-bottom:1px solid #999;padding-bottom:.5rem}\
form.inline{display:inline}label{display:block;margin:.6rem 0 .2rem;font-weight:600}\
input[type=text],input[type=email],input[type=password]{font:inherit;padding:.35rem .5rem;min-width:18rem;border:1px solid #777;border-radius:3px}\
button{font:inherit;padding:.35rem .9rem;border:1px solid #333;border-radius:3px;background:#f2f2f2;cursor:pointer}\
a:focus,button:focus,input:focus,textarea:focus,summary:focus,select:focus{outline:3px solid #1a5fb4;outline-offset:2px}\
.error{color:#a00;font-weight:600}.role{color:#555}\
fieldset{border:1px solid #bbb;margin:.6rem 0;padding:.4rem .8rem}legend{font-weight:600}\
fieldset label{display:inline;font-weight:normal;margin-right:1rem}textarea{font:inherit;width:100%;max-width:40rem;min-height:4rem}\
[hidden]{display:none!important}.brand-filter input{min-width:14rem}\
section.edit,details.edit{border:1px solid #999;padding:.5rem 1rem;margin:1rem 0}summary{cursor:pointer}";

fn layout(lang: Lang, title: &str, staff: Option<&Staff>, content: Markup) -> String {
    let t = text(lang);
    html! {
        (DOCTYPE)
        html lang=(lang.as_str()) {
            (crate::render::head(title, &[crate::render::report::STYLE, STYLE]))
            body {
                header {
                    strong { a href="/staff" { (t.title) } }
                    span {
                        a href={ "/staff?lang=" (t.other_language.0) } lang=(t.other_language.0) { (t.other_language.1) }
                        @if let Some(staff) = staff {
                            " · " (t.signed_in_as) " " strong { (staff.user) } " "
                            span class="role" { "(" (staff.role.as_str()) ")" } " "
                            form class="inline" method="post" action="/staff/logout" {
                                input type="hidden" name="csrf" value=(staff.csrf);
                                button type="submit" { (t.sign_out) }
                            }
                        }
                    }
                }
                main { (content) }
                @if staff.is_some() { script src="/staff/app.js" {} }
            }
        }
    }
    .into_string()
}

/// The sign-in form.
pub fn login(lang: Lang, csrf: &str, error: Option<&str>, no_accounts: bool) -> String {
    let t = text(lang);
    layout(
        lang,
        t.sign_in,
        None,
        html! {
            h1 { (t.sign_in) }
            @if no_accounts { p class="error" { (t.no_accounts) } }
            @if let Some(error) = error { p class="error" role="alert" { (error) } }
            form method="post" action="/staff/login" {
                input type="hidden" name="csrf" value=(csrf);
                label for="user" { (t.user) }
                input type="text" id="user" name="user" autocomplete="username" required autofocus;
                label for="password" { (t.password) }
                input type="password" id="password" name="password" autocomplete="current-password" required;
                p { button type="submit" { (t.sign_in) } }
            }
        },
    )
}

fn search_form(t: &Text, value: &str) -> Markup {
    html! {
        form method="get" action="/staff/contact" role="search" {
            label for="address" { (t.address) }
            input type="email" id="address" name="address" value=(value) required autofocus;
            " " button type="submit" { (t.look_up) }
        }
    }
}

/// The search page (after sign-in), with an error from the last search if any, and the overview.
pub fn search(
    lang: Lang,
    staff: &Staff,
    error: Option<&str>,
    overview: Option<&Overview>,
) -> String {
    let t = text(lang);
    layout(
        lang,
        t.search,
        Some(staff),
        html! {
            h1 { (t.search) }
            @if let Some(error) = error { p class="error" role="alert" { (error) } }
            (search_form(t, ""))
            @if staff.role >= StaffRole::Admin { (admin_tools(t, staff)) }
            @if let Some(overview) = overview { (overview_section(t, overview)) }
        },
    )
}

fn admin_tools(t: &Text, staff: &Staff) -> Markup {
    html! {
        section class="edit" {
            p { a href="/staff/export" download { (t.export) } }
            form method="post" action="/staff/import" enctype="multipart/form-data" {
                input type="hidden" name="csrf" value=(staff.csrf);
                label for="import-file" { (t.import) ": " (t.import_file) }
                input type="file" id="import-file" name="file" accept=".csv,text/csv" required;
                " " button type="submit" { (t.import) }
            }
        }
    }
}

/// A day's value of one series.
type Series<'t> = (&'t str, &'static str, fn(&DayCounts) -> i64);

/// Bars per day (inline SVG; the table beside it carries the same numbers for screen readers).
fn chart(t: &Text, days: &[DayCounts]) -> Markup {
    let series: [Series<'_>; 4] = [
        (t.bounces, "#b35806", |d| d.bounces),
        (t.complaints, "#b2182b", |d| d.complaints),
        (t.unsubscribes, "#2166ac", |d| d.unsubscribes),
        (t.blocked, "#4d4d4d", |d| d.blocked),
    ];
    let max = days
        .iter()
        .flat_map(|d| series.iter().map(move |(_, _, f)| f(d)))
        .max()
        .unwrap_or(0)
        .max(1);
    let (bar, gap, height) = (6i64, 8i64, 120i64);
    let group = bar * 4 + gap;
    let width = group * i64::try_from(days.len()).unwrap_or(0) + gap;
    html! {
        svg role="img" aria-label=(t.per_day) width=(width) height=(height + 20) viewBox={ "0 0 " (width) " " (height + 20) } {
            title { (t.per_day) }
            @for (i, day) in (0i64..).zip(days) {
                @for (j, (name, colour, value)) in (0i64..).zip(series.iter()) {
                    @let v = value(day);
                    @let h = v * height / max;
                    rect x=(gap + i * group + j * bar) y=(height - h) width=(bar) height=(h) fill=(colour) {
                        title { (day.day) " " (name) ": " (v) }
                    }
                }
                @if i % 7 == 0 {
                    text x=(gap + i * group) y=(height + 15) font-size="10" { (day.day.get(5..).unwrap_or("")) }
                }
            }
        }
        p {
            @for (name, colour, _) in series.iter() {
                span style={ "display:inline-block;width:.8em;height:.8em;background:" (colour) } {} " " (name) " "
            }
        }
    }
}

fn overview_section(t: &Text, overview: &Overview) -> Markup {
    let q = &overview.queue;
    html! {
        h2 { (t.overview) }
        h3 { (t.per_day) }
        (chart(t, &overview.days))
        details {
            summary { (t.per_day) " (" (t.day) ")" }
            table {
                thead { tr { th { (t.day) } th { (t.bounces) } th { (t.complaints) } th { (t.unsubscribes) } th { (t.blocked) } } }
                tbody {
                    @for d in &overview.days {
                        tr { td { (d.day) } td { (d.bounces) } td { (d.complaints) } td { (d.unsubscribes) } td { (d.blocked) } }
                    }
                }
            }
        }
        h3 { (t.recent) }
        @if overview.recent.is_empty() { p { (t.nothing) } } @else {
            table { tbody {
                @for e in &overview.recent {
                    tr {
                        td { (e.occurred_at.format("%Y-%m-%d %H:%M")) }
                        td { (e.kind) }
                        td {
                            @if let Some(address) = &e.address {
                                a href=(contact_link(address)) { (address) }
                            } @else { "–" }
                        }
                        td { (e.company) @if !e.brand.is_empty() { "/" (e.brand) } }
                    }
                }
            } }
        }
        h3 { (t.recent_blocked) }
        @if overview.blocked.is_empty() { p { (t.nothing) } } @else {
            table { tbody {
                @for b in &overview.blocked {
                    tr {
                        td { (b.blocked_at.format("%Y-%m-%d %H:%M")) }
                        td { (b.company) @if !b.brand.is_empty() { "/" (b.brand) } }
                        td { (b.class) } td { (b.reason) } td { (b.stage) }
                    }
                }
            } }
        }
        h3 { (t.queue) }
        p { "queued " (q.queued) " · held " (q.held) " · delivered " (q.delivered) " · failed " (q.failed) " · dropped " (q.dropped) }
    }
}

/// The erase confirmation: what erasing does, and a button.
pub fn erase_confirm(lang: Lang, staff: &Staff, address: &str) -> String {
    let t = text(lang);
    layout(
        lang,
        t.erase,
        Some(staff),
        html! {
            h1 { (t.erase) }
            p class="address" { (address) }
            p { (t.erase_consequences) }
            form method="post" action="/staff/erase" {
                input type="hidden" name="csrf" value=(staff.csrf);
                input type="hidden" name="address" value=(address);
                button type="submit" { (t.erase_confirm) }
            }
            p { a href=(contact_link(address)) { (t.back) } }
        },
    )
}

/// What an import did, with the rows it refused.
pub fn import_done(lang: Lang, staff: &Staff, report: &ImportReport) -> String {
    let t = text(lang);
    layout(
        lang,
        t.import_done,
        Some(staff),
        html! {
            h1 { (t.import_done) }
            p { "rows " (report.rows) " · added " (report.added) " · unchanged " (report.unchanged) " · rejected " (report.rejected) }
            @if !report.errors.is_empty() {
                table {
                    thead { tr { th { "line" } th { "error" } } }
                    tbody { @for e in &report.errors { tr { td { (e.line) } td { (e.message) } } } }
                }
            }
            p { a href="/staff" { (t.back) } }
        },
    )
}

/// A contact: the access report's content, with its stored mails linked; for editors the forms
/// that add a block and lift the blocks staff may lift.
pub fn contact(lang: Lang, staff: &Staff, report: &AccessReport, config: &Config) -> String {
    let t = text(lang);
    let editor = staff.role >= StaffRole::Editor && report.erased.is_none();
    layout(
        lang,
        &report.address,
        Some(staff),
        html! {
            (search_form(t, &report.address))
            h1 class="address" { (report.address) }
            @if editor { (edit_section(t, staff, report, config)) }
        @if staff.role >= StaffRole::Admin && report.erased.is_none() {
            p { a href=(link("/staff/erase", &report.address)) { (t.erase) } }
        }
            (crate::render::report::body(report, lang, Some("/staff/evidence")))
        },
    )
}

fn edit_section(t: &Text, staff: &Staff, report: &AccessReport, config: &Config) -> Markup {
    let liftable: Vec<_> = report.suppressions.iter().filter(|s| s.standing).collect();
    html! {
        details class="edit" id="add-block" {
            summary { strong { (t.add_block) } }
            form method="post" action="/staff/block" {
                input type="hidden" name="csrf" value=(staff.csrf);
                input type="hidden" name="address" value=(report.address);
                fieldset {
                    legend { (t.channel) }
                    label { input type="radio" name="channel" value="email" checked; " " (t.email) }
                    label { input type="radio" name="channel" value="postal"; " " (t.postal) }
                }
                fieldset data-brand-picker {
                    legend { (t.scope) }
                    // Search-as-you-type over the brands: /staff/app.js shows it; without
                    // scripts every brand is listed and this stays hidden.
                    div class="brand-filter" hidden {
                        label for="brand-filter" { (t.find_brand) }
                        input type="search" id="brand-filter" autocomplete="off"
                            aria-describedby="brand-filter-count" data-count=(t.brands_shown);
                        " " span id="brand-filter-count" role="status" aria-live="polite" {}
                    }
                    @for company in &config.companies {
                        div data-company=(company.id()) {
                            label data-company-scope data-search=(company.id().to_lowercase()) {
                                input type="checkbox" name="scope" value=(company.id());
                                " " strong { (company.id()) } " (" (t.all_brands) ")"
                            }
                            @for brand in &company.brands {
                                label data-scope data-search=(format!("{}/{}", company.id(), brand.get_ref()).to_lowercase()) {
                                    input type="checkbox" name="scope" value={ (company.id()) "/" (brand.get_ref()) };
                                    " " (brand.get_ref())
                                }
                            }
                        }
                    }
                }
                label for="block-note" { (t.reason) }
                textarea id="block-note" name="note" required {}
                p { button type="submit" { (t.save) } }
            }
        }
        @if !liftable.is_empty() {
            details class="edit" id="lift-blocks" {
                summary { strong { (t.lift_blocks) } }
                @for s in liftable {
                    div {
                        p {
                            "#" (s.id) " · " (s.channel.as_str()) " · "
                            (if s.company.is_empty() { "*".to_string() } else if s.brand.is_empty() { s.company.clone() } else { format!("{}/{}", s.company, s.brand) })
                            " · " (s.reason.as_str())
                            @if let Some(note) = &s.note { " · " (note) }
                        }
                        @if s.lift == LiftPath::Staff {
                            form method="post" action="/staff/lift" {
                                input type="hidden" name="csrf" value=(staff.csrf);
                                input type="hidden" name="address" value=(report.address);
                                input type="hidden" name="id" value=(s.id);
                                label for={ "lift-note-" (s.id) } { (t.lift_reason) }
                                input type="text" id={ "lift-note-" (s.id) } name="note" required;
                                " " button type="submit" { (t.lift) }
                            }
                        } @else {
                            p class="muted" { (t.owner_only) }
                        }
                    }
                }
            }
        }
    }
}

/// A stored mail, shown as text.
pub fn evidence(lang: Lang, staff: &Staff, record: &EvidenceRecord) -> String {
    let t = text(lang);
    let envelope = [
        ("MAIL FROM", record.mail_from.as_deref()),
        ("RCPT TO", record.rcpt_to.as_deref()),
        ("HELO", record.helo.as_deref()),
        ("IP", record.peer_ip.as_deref()),
    ];
    layout(
        lang,
        t.evidence,
        Some(staff),
        html! {
            p { a href="/staff" { (t.back) } }
            h1 { (t.evidence) " #" (record.id) }
            p {
                (t.received) ": " (record.received_at.format("%Y-%m-%d %H:%M:%S UTC")) " · SHA-256 "
                code { (record.sha256) } " · " (record.raw.len()) " bytes"
            }
            p {
                (t.envelope) ": "
                @for (name, value) in envelope {
                    @if let Some(value) = value { (name) " " code { (value) } " " }
                }
            }
            p { a href={ "/staff/evidence/" (record.id) "/eml" } download { (t.download) } }
            p class="muted" { (t.shown_as_text) }
            pre { (String::from_utf8_lossy(&record.raw)) }
        },
    )
}

/// A short message page.
pub fn message(lang: Lang, message: &str) -> String {
    let t = text(lang);
    layout(
        lang,
        t.title,
        None,
        html! {
            p class="error" role="alert" { (message) }
            p { a href="/staff" { (t.back) } }
        },
    )
}
