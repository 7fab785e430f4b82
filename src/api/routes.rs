//! The JSON endpoints under `/v1`: each turns a request into a service call and its answer into
//! JSON. Every rule is the service's.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::ApiState;
use super::auth::Caller;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath, ApiQuery};
use crate::config::ApiRole;
use crate::model::format_time;
use crate::policy::Verdict;
use crate::service::{
    AccessReport, BlockedPage, BlockedQuery, CheckQuery, ConsentRequest, ErasureReport,
    ErasureRequest, EventPage, EventsQuery, LiftReport, LiftRequest, PurgeReport, QueueActReport,
    StatusReport, SuppressReport, SuppressRequest, SuppressionPage, SuppressionsQuery,
};
use crate::store::{ConsentOutcome, QueueAction, QueueEntry, QueueSummary, QueueTarget};

type ApiResult<T> = Result<T, ApiError>;

/// May this mail go to the address? The same object as `bouncegate check --json`.
#[utoipa::path(get, path = "/v1/check", params(CheckQuery), tag = "suppression",
    responses((status = 200, body = Verdict), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn check(
    State(state): State<ApiState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<CheckQuery>,
) -> ApiResult<Json<Verdict>> {
    caller.require(ApiRole::Read)?;
    Ok(Json(state.service.check_query(&query).await?))
}

/// The status (A, U, B, D) of an address per company and brand, and the suppressions in force.
#[utoipa::path(get, path = "/v1/status/{address}", tag = "suppression",
    params(("address" = String, Path, description = "The address")),
    responses((status = 200, body = StatusReport), (status = 400, body = ErrorBody)))]
pub async fn status(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(address): ApiPath<String>,
) -> ApiResult<Json<StatusReport>> {
    caller.require(ApiRole::Read)?;
    Ok(Json(state.service.status(&address).await?))
}

/// Suppressions in force, oldest first, a page at a time.
#[utoipa::path(get, path = "/v1/suppressions", params(SuppressionsQuery), tag = "suppression",
    responses((status = 200, body = SuppressionPage), (status = 400, body = ErrorBody)))]
pub async fn suppressions(
    State(state): State<ApiState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<SuppressionsQuery>,
) -> ApiResult<Json<SuppressionPage>> {
    caller.require(ApiRole::Read)?;
    Ok(Json(state.service.suppressions(&query).await?))
}

/// Records a suppression (201 when new, 200 when the same one was in force). A note is required
/// for `manual`.
#[utoipa::path(post, path = "/v1/suppressions", request_body = SuppressRequest, tag = "suppression",
    responses((status = 201, body = SuppressReport), (status = 200, body = SuppressReport),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn suppress(
    State(state): State<ApiState>,
    caller: Caller,
    ApiJson(mut request): ApiJson<SuppressRequest>,
) -> ApiResult<(StatusCode, Json<SuppressReport>)> {
    caller.require(ApiRole::Write)?;
    request.source = crate::model::Source::Api;
    request.created_at = None;
    request.created_by = Some(caller.actor());
    let report = state.service.suppress(&request).await?;
    let status = if report.added {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(report)))
}

/// The body of a lift: why (kept with the record).
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LiftBody {
    #[serde(default)]
    pub note: Option<String>,
}

/// Lifts one suppression. Bounce and manual blocks lift; the owner's opt-outs (unsubscribe,
/// complaint) answer 409 `owner_opt_out`: only their confirmed opt-in (`POST /v1/consents`)
/// lifts them.
#[utoipa::path(post, path = "/v1/suppressions/{id}/lift", tag = "suppression",
    params(("id" = i64, Path, description = "The suppression's id")),
    request_body(content = Option<LiftBody>, description = "Why (required for an unverified unsubscribe)"),
    responses((status = 200, body = LiftReport), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn lift(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    body: axum::body::Bytes,
) -> ApiResult<Json<LiftReport>> {
    caller.require(ApiRole::Write)?;
    // The body is optional: none, `null`, or `{"note": "…"}`.
    let note = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        serde_json::from_slice::<Option<LiftBody>>(&body)
            .map_err(|e| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_body",
                    e.to_string(),
                )
            })?
            .and_then(|b| b.note)
    };
    let request = LiftRequest {
        note,
        lifted_by: caller.actor(),
        ..LiftRequest::default()
    };
    Ok(Json(state.service.lift_by_id(id, &request).await?))
}

/// Records the owner's confirmed opt-in with its proof; it lifts their older opt-outs in its
/// scope.
#[utoipa::path(post, path = "/v1/consents", request_body = ConsentRequest, tag = "suppression",
    responses((status = 201, body = ConsentOutcome), (status = 400, body = ErrorBody)))]
pub async fn consent(
    State(state): State<ApiState>,
    caller: Caller,
    ApiJson(mut request): ApiJson<ConsentRequest>,
) -> ApiResult<(StatusCode, Json<ConsentOutcome>)> {
    caller.require(ApiRole::Write)?;
    request.source = caller.actor();
    request.proof_bytes = None;
    Ok((
        StatusCode::CREATED,
        Json(state.service.consent(&request).await?),
    ))
}

/// Erases an address (data-protection request): plain text gone, keyed hash kept, status D.
#[utoipa::path(post, path = "/v1/erasure", request_body = ErasureRequest, tag = "suppression",
    responses((status = 200, body = ErasureReport), (status = 400, body = ErrorBody)))]
pub async fn erase(
    State(state): State<ApiState>,
    caller: Caller,
    ApiJson(request): ApiJson<ErasureRequest>,
) -> ApiResult<Json<ErasureReport>> {
    caller.require(ApiRole::Write)?;
    Ok(Json(state.service.erase(&request, &caller.actor()).await?))
}

/// The event log (bounces, complaints, unsubscribes, lifts, consents, erasures), oldest first.
#[utoipa::path(get, path = "/v1/events", params(EventsQuery), tag = "records",
    responses((status = 200, body = EventPage), (status = 400, body = ErrorBody)))]
pub async fn events(
    State(state): State<ApiState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<EventsQuery>,
) -> ApiResult<Json<EventPage>> {
    caller.require(ApiRole::Read)?;
    Ok(Json(state.service.events(&query).await?))
}

/// Sends the relay did not make because a suppression stopped them, oldest first.
#[utoipa::path(get, path = "/v1/blocked", params(BlockedQuery), tag = "records",
    responses((status = 200, body = BlockedPage), (status = 400, body = ErrorBody)))]
pub async fn blocked(
    State(state): State<ApiState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<BlockedQuery>,
) -> ApiResult<Json<BlockedPage>> {
    caller.require(ApiRole::Read)?;
    Ok(Json(state.service.blocked(&query).await?))
}

/// `?meta=1` asks for the metadata instead of the mail.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EvidenceParams {
    /// `1` (or `true`): JSON metadata instead of the raw mail.
    #[serde(default)]
    pub meta: Option<String>,
}

/// What is known about a piece of evidence besides its bytes.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EvidenceMeta {
    pub id: i64,
    pub received_at: String,
    pub size: usize,
    /// Hex SHA-256 of the bytes, checked against the seal before answering.
    pub sha256: String,
    pub mail_from: Option<String>,
    pub rcpt_to: Option<String>,
    pub helo: Option<String>,
    pub peer_ip: Option<String>,
}

/// Stored evidence: the raw mail (or one-click request) byte for byte, as `message/rfc822`;
/// `?meta=1` for its metadata. 500 `evidence_tampered` when the bytes no longer match their seal.
#[utoipa::path(get, path = "/v1/evidence/{id}", params(("id" = i64, Path, description = "The evidence id"), EvidenceParams), tag = "records",
    responses((status = 200, content_type = "message/rfc822", body = Vec<u8>),
        (status = 404, body = ErrorBody), (status = 500, body = ErrorBody)))]
pub async fn evidence(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(params): ApiQuery<EvidenceParams>,
) -> ApiResult<Response> {
    caller.require(ApiRole::Read)?;
    let evidence = state
        .service
        .evidence(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("evidence {id} does not exist")))?;
    let meta = match params.meta.as_deref() {
        None | Some("0" | "false") => false,
        Some("1" | "true") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!("meta={other:?}: use 1 or 0")));
        }
    };
    if meta {
        return Ok(Json(EvidenceMeta {
            id: evidence.id,
            received_at: format_time(&evidence.received_at),
            size: evidence.raw.len(),
            sha256: evidence.sha256,
            mail_from: evidence.mail_from,
            rcpt_to: evidence.rcpt_to,
            helo: evidence.helo,
            peer_ip: evidence.peer_ip,
        })
        .into_response());
    }
    Ok((
        [
            (header::CONTENT_TYPE, "message/rfc822".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"evidence-{id}.eml\""),
            ),
        ],
        evidence.raw,
    )
        .into_response())
}

/// The relay's queue: depth by state, the oldest waiting item, recent failures.
#[utoipa::path(get, path = "/v1/queue", tag = "queue",
    responses((status = 200, body = QueueSummary), (status = 403, body = ErrorBody)))]
pub async fn queue(State(state): State<ApiState>, caller: Caller) -> ApiResult<Json<QueueSummary>> {
    caller.require(ApiRole::Admin)?;
    Ok(Json(state.service.queue_summary().await?))
}

/// One queue item.
#[utoipa::path(get, path = "/v1/queue/{id}", tag = "queue",
    params(("id" = i64, Path, description = "The queue item's id")),
    responses((status = 200, body = QueueEntry), (status = 404, body = ErrorBody)))]
pub async fn queue_item(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<QueueEntry>> {
    caller.require(ApiRole::Admin)?;
    Ok(Json(state.service.queue_entry(id).await?))
}

/// What a queue command does.
#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum QueueCommand {
    Hold,
    Release,
    Retry,
    Fail,
}

/// Holds, releases, retries now or fails one queue item.
#[utoipa::path(post, path = "/v1/queue/{id}/{action}", tag = "queue",
    params(("id" = i64, Path, description = "The queue item's id"),
        ("action" = QueueCommand, Path, description = "hold, release, retry or fail")),
    responses((status = 200, body = QueueActReport), (status = 404, body = ErrorBody)))]
pub async fn queue_act(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath((id, action)): ApiPath<(i64, String)>,
) -> ApiResult<Json<QueueActReport>> {
    caller.require(ApiRole::Admin)?;
    let action = match action.as_str() {
        "hold" => QueueAction::Hold,
        "release" => QueueAction::Release,
        "retry" => QueueAction::Retry,
        "fail" => QueueAction::Fail,
        other => {
            return Err(ApiError::not_found(format!(
                "{other:?} is not a queue command (hold, release, retry, fail)"
            )));
        }
    };
    state.service.queue_entry(id).await?;
    Ok(Json(
        state
            .service
            .queue_act(action, QueueTarget::One(id))
            .await?,
    ))
}

/// The access report's form.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReportFormat {
    #[default]
    Json,
    Html,
}

/// `?format=html&lang=de` for the page a clerk sends.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReportParams {
    /// `json` (default) or `html` (one self-contained page).
    #[serde(default)]
    #[param(inline)]
    pub format: Option<ReportFormat>,
    /// `de` or `en` for the HTML (default: after `Accept-Language`).
    #[serde(default)]
    #[param(inline)]
    pub lang: Option<crate::render::Lang>,
}

/// Everything held about an address (GDPR Art. 15 access report): status, suppressions with how
/// they lift, events, consents, evidence, sends, and when each goes. An erased address's report
/// says when it was erased and nothing more.
#[utoipa::path(get, path = "/v1/report/{address}", tag = "records",
    params(("address" = String, Path, description = "The address"), ReportParams),
    responses((status = 200, body = AccessReport), (status = 200, content_type = "text/html", body = String),
        (status = 400, body = ErrorBody)))]
pub async fn report(
    State(state): State<ApiState>,
    caller: Caller,
    headers: axum::http::HeaderMap,
    ApiPath(address): ApiPath<String>,
    ApiQuery(params): ApiQuery<ReportParams>,
) -> ApiResult<Response> {
    caller.require(ApiRole::Read)?;
    let report = state.service.access_report(&address).await?;
    Ok(match params.format.unwrap_or_default() {
        ReportFormat::Json => Json(report).into_response(),
        ReportFormat::Html => {
            let lang = params
                .lang
                .unwrap_or_else(|| super::unsubscribe::language(&headers));
            (
                [
                    (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                    // The page loads nothing: a stored mail's header cannot make it.
                    (
                        header::CONTENT_SECURITY_POLICY,
                        "default-src 'none'; style-src 'unsafe-inline'",
                    ),
                    (header::REFERRER_POLICY, "no-referrer"),
                ],
                crate::render::report::html(&report, lang),
            )
                .into_response()
        }
    })
}

/// `?dry_run=true` only counts.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PurgeParams {
    /// Count what would go and change nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// Runs the retention purge now (as `bouncegate purge`), in this gateway, and answers its counts
/// when it is done; a client that goes away stops it between two batches (what was done stays).
/// 409 `purge_running` while another runs.
#[utoipa::path(post, path = "/v1/purge", params(PurgeParams), tag = "records",
    responses((status = 200, body = PurgeReport), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn purge(
    State(state): State<ApiState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<PurgeParams>,
) -> ApiResult<Json<PurgeReport>> {
    caller.require(ApiRole::Admin)?;
    let report = if params.dry_run {
        state.service.purge_preview().await?
    } else {
        state.service.purge(&caller.actor(), &mut |_, _| {}).await?
    };
    Ok(Json(report))
}
