//! The staff web page under `/staff`, served by `serve` beside the API: sign-in with the
//! `[[staff]]` accounts, contact look-up (status, blocks and how they lift, events, consents,
//! stored mails shown as text and downloadable byte for byte). Every answer comes from the same
//! service layer as the CLI and the API; the page adds no rule.
//!
//! Sessions live in memory (a restart signs everyone out): a random 256-bit cookie (HttpOnly,
//! SameSite=Strict, Secure when `http.public_url` is https, path `/staff`), 30 minutes idle, 12
//! hours at most. Every form carries a CSRF token (the session's; for the sign-in form a
//! double-submitted cookie). Failed sign-ins are limited per client address and per user.

mod pages;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::config::{Config, StaffAccount, StaffRole};
use crate::render::Lang;
use crate::secret::{constant_time_eq, verify_password_hash};
use crate::service::SuppressionService;

const SESSION_COOKIE: &str = "bg_staff";
const LOGIN_COOKIE: &str = "bg_staff_login";
const LANG_COOKIE: &str = "bg_lang";
/// A session ends after this long without a request…
const IDLE: Duration = Duration::from_secs(30 * 60);
/// …and after this long in any case.
const MAX_AGE: Duration = Duration::from_secs(12 * 3600);
/// Sessions held at once (the oldest go first past it).
const MAX_SESSIONS: usize = 10_000;
/// The largest CSV upload (about a million rows).
const IMPORT_LIMIT: usize = 64 * 1024 * 1024;
/// Failed sign-ins per client address, and per user, within the window; then refused until the
/// window has passed.
const MAX_FAILURES: usize = 5;
const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);

/// What the staff pages share.
#[derive(Clone)]
pub struct StaffState {
    service: SuppressionService,
    accounts: Arc<Vec<StaffAccount>>,
    sessions: Arc<Mutex<HashMap<String, Session>>>,
    failures: Arc<Mutex<HashMap<String, Vec<Instant>>>>,
    secure_cookies: bool,
}

#[derive(Debug, Clone)]
struct Session {
    user: String,
    role: StaffRole,
    csrf: String,
    started: Instant,
    seen: Instant,
}

impl StaffState {
    pub fn new(service: SuppressionService, config: &Config) -> Self {
        Self {
            service,
            accounts: Arc::new(config.staff.clone()),
            sessions: Arc::default(),
            failures: Arc::default(),
            secure_cookies: config.http.public_url.starts_with("https://"),
        }
    }

    fn cookie(&self, name: &str, value: &str, max_age: Option<Duration>) -> HeaderValue {
        let mut cookie = format!("{name}={value}; Path=/staff; HttpOnly; SameSite=Strict");
        if let Some(age) = max_age {
            cookie.push_str(&format!("; Max-Age={}", age.as_secs()));
        }
        if self.secure_cookies {
            cookie.push_str("; Secure");
        }
        HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    /// Whether `key` (a client address or a user) may try to sign in now.
    fn may_try(&self, key: &str, now: Instant) -> bool {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let recent = failures.entry(key.to_string()).or_default();
        recent.retain(|t| now.duration_since(*t) < FAILURE_WINDOW);
        recent.len() < MAX_FAILURES
    }

    fn failed(&self, keys: &[&str], now: Instant) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() > 100_000 {
            failures.retain(|_, times| {
                times
                    .last()
                    .is_some_and(|t| now.duration_since(*t) < FAILURE_WINDOW)
            });
        }
        for key in keys {
            failures.entry((*key).to_string()).or_default().push(now);
        }
    }

    fn open_session(&self, user: &str, role: StaffRole, now: Instant) -> String {
        let token = random_token();
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.retain(|_, s| !s.expired(now));
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.started)
                .map(|(k, _)| k.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(
            session_key(&token),
            Session {
                user: user.to_string(),
                role,
                csrf: random_token(),
                started: now,
                seen: now,
            },
        );
        token
    }
}

impl Session {
    fn expired(&self, now: Instant) -> bool {
        now.duration_since(self.seen) > IDLE || now.duration_since(self.started) > MAX_AGE
    }
}

fn random_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// Sessions are kept under the SHA-256 of their cookie, not the cookie itself.
fn session_key(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn cookie_value<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key == name).then_some(value)
        })
}

/// Equal strings, in time that depends on the lengths only.
fn same(a: &str, b: &str) -> bool {
    constant_time_eq(a.as_bytes(), b.as_bytes())
}

/// The signed-in staff member of a request.
#[derive(Debug, Clone)]
pub struct Staff {
    pub user: String,
    pub role: StaffRole,
    csrf: String,
}

impl Staff {
    /// `true` when `csrf` is this session's token.
    fn csrf_ok(&self, csrf: &str) -> bool {
        same(&self.csrf, csrf)
    }
}

/// No session: to the sign-in page.
pub struct SignIn;

impl IntoResponse for SignIn {
    fn into_response(self) -> Response {
        Redirect::to("/staff").into_response()
    }
}

impl FromRequestParts<StaffState> for Staff {
    type Rejection = SignIn;

    async fn from_request_parts(parts: &mut Parts, state: &StaffState) -> Result<Self, SignIn> {
        let token = cookie_value(&parts.headers, SESSION_COOKIE).ok_or(SignIn)?;
        let key = session_key(token);
        let now = Instant::now();
        let mut sessions = state.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let session = sessions.get_mut(&key).ok_or(SignIn)?;
        if session.expired(now) {
            sessions.remove(&key);
            return Err(SignIn);
        }
        session.seen = now;
        Ok(Staff {
            user: session.user.clone(),
            role: session.role,
            csrf: session.csrf.clone(),
        })
    }
}

impl axum::extract::OptionalFromRequestParts<StaffState> for Staff {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &StaffState,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(
            <Staff as FromRequestParts<StaffState>>::from_request_parts(parts, state)
                .await
                .ok(),
        )
    }
}

/// The page's language: `?lang=`, else the `bg_lang` cookie, else `Accept-Language`.
fn language(headers: &HeaderMap, asked: Option<Lang>) -> Lang {
    asked
        .or_else(|| cookie_value(headers, LANG_COOKIE).and_then(|v| v.parse().ok()))
        .unwrap_or_else(|| {
            headers
                .get(header::ACCEPT_LANGUAGE)
                .and_then(|v| v.to_str().ok())
                .map_or(Lang::En, Lang::from_accept_language)
        })
}

/// A page with the headers every staff page gets: nothing from elsewhere, no framing, no caching.
fn page(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-store"),
            (header::X_FRAME_OPTIONS, "DENY"),
        ],
        body,
    )
        .into_response()
}

/// The staff routes, under `/staff`.
pub fn router(state: StaffState) -> Router {
    Router::new()
        .route("/staff", get(home))
        .route("/staff/login", post(login))
        .route("/staff/logout", post(logout))
        .route("/staff/contact", get(contact))
        .route("/staff/block", post(block))
        .route("/staff/lift", post(lift))
        .route("/staff/erase", get(erase_confirm).post(erase))
        .route("/staff/export", get(export))
        .route(
            "/staff/import",
            post(import).layer(axum::extract::DefaultBodyLimit::max(IMPORT_LIMIT)),
        )
        .route("/staff/app.js", get(app_js))
        .route("/staff/evidence/{id}", get(evidence))
        .route("/staff/evidence/{id}/eml", get(evidence_eml))
        .with_state(state)
}

#[derive(Debug, Default, Deserialize)]
struct LangQuery {
    #[serde(default)]
    lang: Option<String>,
}

impl LangQuery {
    fn lang(&self) -> Option<Lang> {
        self.lang.as_deref().and_then(|l| l.parse().ok())
    }
}

/// Adds `Set-Cookie: bg_lang` when the language was asked for.
fn remember_language(state: &StaffState, mut response: Response, asked: Option<Lang>) -> Response {
    if let Some(lang) = asked {
        response.headers_mut().append(
            header::SET_COOKIE,
            state.cookie(
                LANG_COOKIE,
                lang.as_str(),
                Some(Duration::from_secs(365 * 86_400)),
            ),
        );
    }
    response
}

async fn home(
    State(state): State<StaffState>,
    staff: Option<Staff>,
    headers: HeaderMap,
    Query(query): Query<LangQuery>,
) -> Response {
    let lang = language(&headers, query.lang());
    let response = match staff {
        Some(staff) => {
            let overview = match state.service.overview(14, 10).await {
                Ok(overview) => Some(overview),
                Err(error) => {
                    tracing::warn!(%error, "staff overview failed");
                    None
                }
            };
            page(
                StatusCode::OK,
                pages::search(lang, &staff, None, overview.as_ref()),
            )
        }
        None => login_page(&state, lang, StatusCode::OK, None),
    };
    remember_language(&state, response, query.lang())
}

fn login_page(state: &StaffState, lang: Lang, status: StatusCode, error: Option<&str>) -> Response {
    let csrf = random_token();
    let mut response = page(
        status,
        pages::login(lang, &csrf, error, state.accounts.is_empty()),
    );
    response.headers_mut().append(
        header::SET_COOKIE,
        state.cookie(LOGIN_COOKIE, &csrf, Some(Duration::from_secs(3600))),
    );
    response
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    user: String,
    password: String,
    csrf: String,
}

async fn login(
    State(state): State<StaffState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<LoginForm>,
) -> Response {
    let lang = language(&headers, None);
    let cookie = cookie_value(&headers, LOGIN_COOKIE).unwrap_or("");
    if cookie.is_empty() || !same(cookie, &form.csrf) {
        return login_page(
            &state,
            lang,
            StatusCode::FORBIDDEN,
            Some(pages::text(lang).form_expired),
        );
    }
    let now = Instant::now();
    let (by_peer, by_user) = (format!("ip:{}", peer.ip()), format!("user:{}", form.user));
    if !state.may_try(&by_peer, now) || !state.may_try(&by_user, now) {
        tracing::warn!(peer = %peer.ip(), user = ?form.user, "staff sign-in: too many failures");
        return login_page(
            &state,
            lang,
            StatusCode::TOO_MANY_REQUESTS,
            Some(pages::text(lang).too_many),
        );
    }
    let account = state.accounts.iter().find(|a| a.user == form.user).cloned();
    // Unknown users cost the same hash as known ones: the time does not tell which exist.
    let hash = account
        .as_ref()
        .map(|a| a.password_hash.clone())
        .unwrap_or_else(|| DUMMY_HASH.to_string());
    let password = form.password;
    let verified = tokio::task::spawn_blocking(move || verify_password_hash(&hash, &password))
        .await
        .unwrap_or(false);
    match account {
        Some(account) if verified => {
            let token = state.open_session(&account.user, account.role, now);
            tracing::info!(user = %account.user, peer = %peer.ip(), "staff signed in");
            let mut response = Redirect::to("/staff").into_response();
            let headers = response.headers_mut();
            headers.append(
                header::SET_COOKIE,
                state.cookie(SESSION_COOKIE, &token, None),
            );
            headers.append(
                header::SET_COOKIE,
                state.cookie(LOGIN_COOKIE, "", Some(Duration::ZERO)),
            );
            response
        }
        _ => {
            state.failed(&[&by_peer, &by_user], now);
            tracing::warn!(peer = %peer.ip(), user = ?form.user, "staff sign-in failed");
            login_page(
                &state,
                lang,
                StatusCode::UNAUTHORIZED,
                Some(pages::text(lang).wrong),
            )
        }
    }
}

/// Checked against when the user does not exist (an argon2id hash of a random password).
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$5vA0hM3m7b0RDVbCr4jbmA2Kp2Tq0Yb0TzXJ3gq9xqw";

#[derive(Debug, Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn logout(
    State(state): State<StaffState>,
    staff: Staff,
    headers: HeaderMap,
    axum::Form(form): axum::Form<CsrfForm>,
) -> Response {
    if !staff.csrf_ok(&form.csrf) {
        return forbidden(language(&headers, None));
    }
    if let Some(token) = cookie_value(&headers, SESSION_COOKIE) {
        state
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&session_key(token));
    }
    let mut response = Redirect::to("/staff").into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        state.cookie(SESSION_COOKIE, "", Some(Duration::ZERO)),
    );
    response
}

fn forbidden(lang: Lang) -> Response {
    page(
        StatusCode::FORBIDDEN,
        pages::message(lang, pages::text(lang).forbidden),
    )
}

/// A form's fields in order, repeated names kept (`scope` may come several times).
fn form_fields(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

fn field<'f>(fields: &'f [(String, String)], name: &str) -> &'f str {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

/// An admin's page or POST: at least the admin role (and for a POST the CSRF token).
fn admin_refusal(staff: &Staff, csrf: Option<&str>, lang: Lang) -> Option<Response> {
    if csrf.is_some_and(|csrf| !staff.csrf_ok(csrf)) || staff.role < StaffRole::Admin {
        tracing::warn!(user = %staff.user, "staff admin action refused");
        return Some(forbidden(lang));
    }
    None
}

#[derive(Debug, Deserialize)]
struct AddressQuery {
    address: String,
}

async fn erase_confirm(
    staff: Staff,
    headers: HeaderMap,
    Query(query): Query<AddressQuery>,
) -> Response {
    let lang = language(&headers, None);
    if let Some(response) = admin_refusal(&staff, None, lang) {
        return response;
    }
    page(
        StatusCode::OK,
        pages::erase_confirm(lang, &staff, query.address.trim()),
    )
}

async fn erase(
    State(state): State<StaffState>,
    staff: Staff,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let lang = language(&headers, None);
    let fields = form_fields(&body);
    if let Some(response) = admin_refusal(&staff, Some(field(&fields, "csrf")), lang) {
        return response;
    }
    let address = field(&fields, "address").trim();
    let request = crate::service::ErasureRequest {
        address: address.to_string(),
    };
    match state
        .service
        .erase(&request, &format!("staff:{}", staff.user))
        .await
    {
        Ok(_) => {
            tracing::info!(user = %staff.user, "staff erased an address");
            back_to(address)
        }
        Err(error) => refused(lang, &error),
    }
}

/// The suppressions in force as CSV (the import format), streamed.
async fn export(State(state): State<StaffState>, staff: Staff, headers: HeaderMap) -> Response {
    let lang = language(&headers, None);
    if let Some(response) = admin_refusal(&staff, None, lang) {
        return response;
    }
    let mut response =
        crate::api::export_response(state.service.clone(), crate::service::bulk::Format::Csv);
    response.headers_mut().insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"bouncegate-blocks.csv\""),
    );
    response
}

/// A CSV upload, imported as `bouncegate import` would; the page lists the rows refused.
async fn import(
    State(state): State<StaffState>,
    staff: Staff,
    headers: HeaderMap,
    mut multipart: axum::extract::Multipart,
) -> Response {
    let lang = language(&headers, None);
    let (mut csrf, mut file) = (String::new(), None);
    loop {
        match multipart.next_field().await {
            Ok(Some(part)) => {
                let name = part.name().unwrap_or("").to_string();
                match part.bytes().await {
                    Ok(bytes) if name == "csrf" => {
                        csrf = String::from_utf8_lossy(&bytes).into_owned()
                    }
                    Ok(bytes) if name == "file" => file = Some(bytes),
                    Ok(_) => {}
                    Err(error) => {
                        return bad_request(lang, &error.to_string());
                    }
                }
            }
            Ok(None) => break,
            Err(error) => {
                return bad_request(lang, &error.to_string());
            }
        }
    }
    if let Some(response) = admin_refusal(&staff, Some(&csrf), lang) {
        return response;
    }
    let Some(file) = file else {
        return bad_request(lang, pages::text(lang).import_file);
    };
    let service = state.service.clone();
    let runtime = tokio::runtime::Handle::current();
    let imported = tokio::task::spawn_blocking(move || {
        runtime.block_on(crate::service::bulk::import(
            &service,
            std::io::Cursor::new(file),
            crate::service::bulk::Format::Csv,
            &(),
        ))
    })
    .await;
    match imported {
        Ok(Ok(report)) => {
            tracing::info!(user = %staff.user, rows = report.rows, added = report.added, "staff import");
            page(StatusCode::OK, pages::import_done(lang, &staff, &report))
        }
        Ok(Err(error)) => bad_request(lang, &error.to_string()),
        Err(error) => page(
            StatusCode::INTERNAL_SERVER_ERROR,
            pages::message(lang, &error.to_string()),
        ),
    }
}

/// An editor's POST needs the session's CSRF token and at least the editor role: the 403 page
/// when it lacks either.
fn refusal(staff: &Staff, fields: &[(String, String)], lang: Lang) -> Option<Response> {
    if !staff.csrf_ok(field(fields, "csrf")) {
        tracing::warn!(user = %staff.user, "staff form without its CSRF token refused");
        return Some(forbidden(lang));
    }
    if staff.role < StaffRole::Editor {
        tracing::warn!(user = %staff.user, "staff edit by a viewer refused");
        return Some(forbidden(lang));
    }
    None
}

fn back_to(address: &str) -> Response {
    Redirect::to(&pages::contact_link(address)).into_response()
}

fn bad_request(lang: Lang, message: &str) -> Response {
    page(StatusCode::BAD_REQUEST, pages::message(lang, message))
}

fn refused(lang: Lang, error: &crate::service::ServiceError) -> Response {
    page(
        crate::api::status_of(error.kind()),
        pages::message(lang, &error.to_string()),
    )
}

/// Adds a staff block (e-mail or postal) for the chosen brands or whole companies, with the
/// mandatory reason; one suppression per scope.
async fn block(
    State(state): State<StaffState>,
    staff: Staff,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let lang = language(&headers, None);
    let fields = form_fields(&body);
    if let Some(response) = refusal(&staff, &fields, lang) {
        return response;
    }
    let t = pages::text(lang);
    let address = field(&fields, "address").trim().to_string();
    let note = field(&fields, "note").trim().to_string();
    let channel = match field(&fields, "channel").parse::<crate::model::Channel>() {
        Ok(channel) => channel,
        Err(error) => {
            return bad_request(lang, &error.to_string());
        }
    };
    let scopes: Vec<&str> = fields
        .iter()
        .filter(|(k, _)| k == "scope")
        .map(|(_, v)| v.as_str())
        .collect();
    if note.is_empty() {
        return bad_request(lang, t.reason_required);
    }
    if scopes.is_empty() {
        return bad_request(lang, t.scope_required);
    }
    for scope in scopes {
        let (company, brand) = match scope.split_once('/') {
            Some((company, brand)) => (company, Some(brand)),
            None => (scope, None),
        };
        let request = crate::service::SuppressRequest {
            address: address.clone(),
            reason: crate::model::Reason::Manual,
            company: Some(company.to_string()),
            brand: brand.map(str::to_string),
            channel,
            note: Some(note.clone()),
            expires_at: None,
            source: crate::model::Source::Staff,
            created_at: None,
            created_by: Some(format!("staff:{}", staff.user)),
        };
        if let Err(error) = state.service.suppress(&request).await {
            return refused(lang, &error);
        }
    }
    tracing::info!(user = %staff.user, channel = channel.as_str(), "staff block recorded");
    back_to(&address)
}

/// Lifts a bounce or staff block (the service refuses the owner's opt-outs).
async fn lift(
    State(state): State<StaffState>,
    staff: Staff,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let lang = language(&headers, None);
    let fields = form_fields(&body);
    if let Some(response) = refusal(&staff, &fields, lang) {
        return response;
    }
    let t = pages::text(lang);
    let note = field(&fields, "note").trim().to_string();
    if note.is_empty() {
        return bad_request(lang, t.reason_required);
    }
    let Ok(id) = field(&fields, "id").parse::<i64>() else {
        return bad_request(lang, t.no_such_block);
    };
    let request = crate::service::LiftRequest {
        note: Some(note),
        lifted_by: format!("staff:{}", staff.user),
        ..Default::default()
    };
    match state.service.lift_by_id(id, &request).await {
        Ok(_) => back_to(field(&fields, "address")),
        Err(error) => refused(lang, &error),
    }
}

#[derive(Debug, Deserialize)]
struct ContactQuery {
    address: String,
    #[serde(default)]
    lang: Option<String>,
}

async fn contact(
    State(state): State<StaffState>,
    staff: Staff,
    headers: HeaderMap,
    Query(query): Query<ContactQuery>,
) -> Response {
    let asked = query.lang.as_deref().and_then(|l| l.parse().ok());
    let lang = language(&headers, asked);
    let response = match state.service.access_report(query.address.trim()).await {
        Ok(report) => page(
            StatusCode::OK,
            pages::contact(lang, &staff, &report, state.service.config()),
        ),
        Err(error) => {
            let status = crate::api::status_of(error.kind());
            page(
                status,
                pages::search(lang, &staff, Some(&error.to_string()), None),
            )
        }
    };
    remember_language(&state, response, asked)
}

async fn evidence(
    State(state): State<StaffState>,
    staff: Staff,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Response {
    let lang = language(&headers, None);
    match state.service.evidence(id).await {
        Ok(Some(record)) => page(StatusCode::OK, pages::evidence(lang, &staff, &record)),
        Ok(None) => page(
            StatusCode::NOT_FOUND,
            pages::message(lang, pages::text(lang).no_evidence),
        ),
        Err(error) => refused(lang, &error),
    }
}

/// The pages' one script (the brand picker), compiled in: nothing is fetched from elsewhere.
async fn app_js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("assets/app.js"),
    )
        .into_response()
}

async fn evidence_eml(
    State(state): State<StaffState>,
    _staff: Staff,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Response {
    let lang = language(&headers, None);
    match state.service.evidence(id).await {
        Ok(Some(record)) => (
            [
                (header::CONTENT_TYPE, "message/rfc822".to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"evidence-{id}.eml\""),
                ),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
                (header::CACHE_CONTROL, "no-store".to_string()),
            ],
            record.raw,
        )
            .into_response(),
        Ok(None) => page(
            StatusCode::NOT_FOUND,
            pages::message(lang, pages::text(lang).no_evidence),
        ),
        Err(error) => refused(lang, &error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_read_by_name_and_compared_in_full() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; bg_staff=abc"),
        );
        headers.append(header::COOKIE, HeaderValue::from_static("bg_lang=de"));
        assert_eq!(cookie_value(&headers, "bg_staff"), Some("abc"));
        assert_eq!(cookie_value(&headers, "bg_lang"), Some("de"));
        assert_eq!(cookie_value(&headers, "bg"), None);
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd") && !same("abc", "ab") && !same("", "a"));
    }

    #[test]
    fn the_dummy_hash_is_a_valid_argon2id_hash() {
        let parsed = argon2::password_hash::PasswordHash::new(DUMMY_HASH).unwrap();
        assert_eq!(parsed.algorithm.as_str(), "argon2id");
        assert!(!verify_password_hash(DUMMY_HASH, ""));
    }

    #[test]
    fn sessions_expire_when_idle_and_in_any_case() {
        let now = Instant::now();
        let session = Session {
            user: "anna".into(),
            role: StaffRole::Viewer,
            csrf: String::new(),
            started: now,
            seen: now,
        };
        assert!(!session.expired(now + Duration::from_secs(60)));
        assert!(session.expired(now + IDLE + Duration::from_secs(1)));
        let busy = Session {
            seen: now + MAX_AGE,
            ..session
        };
        assert!(busy.expired(now + MAX_AGE + Duration::from_secs(1)));
    }
}
