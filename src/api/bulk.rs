//! Bulk endpoints: filter a recipient list, import and export suppressions. Bodies stream in and
//! answers stream out through bounded channels, so a list of a million addresses is never held in
//! memory; the service's bulk jobs (synchronous readers and writers) run on a blocking thread.

use std::io::{self, BufReader, Read, Write};

use axum::Json;
use axum::body::{Body, BodyDataStream, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::Deserialize;

use super::ApiState;
use super::auth::Caller;
use super::error::{ApiError, ErrorBody};
use super::extract::ApiQuery;
use crate::config::ApiRole;
use crate::model::{Channel, MailClass};
use crate::service::CheckRequest;
use crate::service::SuppressionService;
use crate::service::bulk::{self, Format, ImportReport};

/// Chunks in flight between the job and the client.
const CHANNEL_DEPTH: usize = 8;
/// Bytes gathered before a chunk is handed on.
const CHUNK: usize = 64 * 1024;

/// Reads a request body on a blocking thread.
struct BodyReader {
    stream: BodyDataStream,
    chunk: Bytes,
}

impl Read for BodyReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            match futures_executor::block_on(self.stream.next()) {
                None => return Ok(0),
                Some(Ok(chunk)) => self.chunk = chunk,
                Some(Err(e)) => return Err(io::Error::other(e)),
            }
        }
        let n = out.len().min(self.chunk.len());
        out[..n].copy_from_slice(&self.chunk[..n]);
        self.chunk = self.chunk.slice(n..);
        Ok(n)
    }
}

/// Writes a response body from a blocking thread; a client that went away ends the job.
struct ChannelWriter {
    sender: tokio::sync::mpsc::Sender<io::Result<Bytes>>,
    buffer: Vec<u8>,
}

impl ChannelWriter {
    /// Ends the body as broken, so the client sees the answer is incomplete.
    fn fail(self, message: String) {
        let _ = futures_executor::block_on(self.sender.send(Err(io::Error::other(message))));
    }

    fn send(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buffer,
            Vec::with_capacity(CHUNK),
        ));
        futures_executor::block_on(self.sender.send(Ok(chunk)))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buffer.extend_from_slice(data);
        if self.buffer.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

/// A streamed response fed by `job` on a blocking thread.
fn streamed(
    content_type: &'static str,
    job: impl FnOnce(ChannelWriter) + Send + 'static,
) -> Response {
    let (sender, receiver) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(CHANNEL_DEPTH);
    let writer = ChannelWriter {
        sender,
        buffer: Vec::with_capacity(CHUNK),
    };
    tokio::task::spawn_blocking(move || job(writer));
    let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|chunk| (chunk, receiver))
    });
    (
        [(header::CONTENT_TYPE, content_type)],
        Body::from_stream(stream),
    )
        .into_response()
}

/// The audience of a filter run.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FilterParams {
    pub company: String,
    #[serde(default)]
    pub brand: Option<String>,
    #[serde(default)]
    #[param(value_type = Option<MailClass>)]
    pub class: MailClass,
    #[serde(default)]
    #[param(value_type = Option<Channel>)]
    pub channel: Channel,
}

/// Filters a recipient list (one address per line, or CSV with an `email` column). The answer
/// streams one JSON line per entry, in input order — `{"entry": 1, "email": "…", "sendable":
/// true}` or with `"sendable": false` and a `reason` — and ends with `{"done": {"read", "sendable",
/// "rejected"}}`, or `{"error": {"code", "message"}}` when the input could not be read on.
#[utoipa::path(post, path = "/v1/filter", params(FilterParams), tag = "bulk",
    request_body(content = String, content_type = "text/plain", description = "Addresses, one per line, or CSV with an email column"),
    responses((status = 200, content_type = "application/x-ndjson", body = String), (status = 400, body = ErrorBody)))]
pub async fn filter(
    State(state): State<ApiState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<FilterParams>,
    body: Body,
) -> Result<Response, ApiError> {
    caller.require(ApiRole::Read)?;
    // Refuse an unknown company before the answer starts.
    state
        .service
        .scope(Some(&params.company), params.brand.as_deref())?;
    let service = state.service.clone();
    let runtime = tokio::runtime::Handle::current();
    let reader = BodyReader {
        stream: body.into_data_stream(),
        chunk: Bytes::new(),
    };
    Ok(streamed("application/x-ndjson", move |mut writer| {
        let request = CheckRequest {
            company: &params.company,
            brand: params.brand.as_deref(),
            class: params.class,
            channel: params.channel,
        };
        let result = runtime.block_on(bulk::filter_decisions(
            &service,
            BufReader::new(reader),
            request,
            &mut writer,
            &(),
        ));
        let last = match result {
            Ok(report) => serde_json::json!({ "done": report }),
            Err(error) => {
                let error = ApiError::from(error);
                serde_json::json!({ "error": { "code": error.code, "message": error.message } })
            }
        };
        let _ = writeln!(writer, "{last}").and_then(|()| writer.flush());
    }))
}

/// The format of an import or export.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FormatParams {
    /// `csv` (the default) or `jsonl`.
    #[serde(default)]
    #[param(value_type = Option<Format>)]
    pub format: Format,
}

/// Imports suppressions from CSV (header: email, reason [, company, brand, channel, note,
/// created_at]) or JSONL; bad rows are reported with their line and skipped, good ones kept.
#[utoipa::path(post, path = "/v1/import", params(FormatParams), tag = "bulk",
    request_body(description = "CSV with a header row, or JSON lines; the Content-Type must match `format`",
        content((String = "text/csv"), (String = "application/x-ndjson"))),
    responses((status = 200, body = ImportReport), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn import(
    State(state): State<ApiState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<FormatParams>,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Result<Json<ImportReport>, ApiError> {
    caller.require(ApiRole::Write)?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    let fits = match (params.format, content_type.as_deref()) {
        (_, None) => true,
        (Format::Csv, Some(t)) => matches!(t, "text/csv" | "text/plain" | "application/csv"),
        (Format::Jsonl, Some(t)) => matches!(
            t,
            "application/x-ndjson" | "application/jsonl" | "application/json-lines" | "text/plain"
        ),
    };
    if !fits {
        return Err(ApiError::new(
            axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the Content-Type does not match format (csv: text/csv; jsonl: application/x-ndjson)",
        ));
    }
    let service = state.service.clone();
    let runtime = tokio::runtime::Handle::current();
    let reader = BodyReader {
        stream: body.into_data_stream(),
        chunk: Bytes::new(),
    };
    let report = tokio::task::spawn_blocking(move || {
        runtime.block_on(bulk::import(
            &service,
            BufReader::new(reader),
            params.format,
            &(),
        ))
    })
    .await
    .map_err(|e| ApiError::bad_request(format!("import stopped: {e}")))??;
    Ok(Json(report))
}

/// Every suppression in force, in the import format (an export imports again), streamed.
#[utoipa::path(get, path = "/v1/export", params(FormatParams), tag = "bulk",
    responses((status = 200, description = "CSV or JSON lines, as `format` asks",
        content((String = "text/csv"), (String = "application/x-ndjson"))),
        (status = 403, body = ErrorBody)))]
pub async fn export(
    State(state): State<ApiState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<FormatParams>,
) -> Result<Response, ApiError> {
    caller.require(ApiRole::Read)?;
    Ok(export_response((*state.service).clone(), params.format))
}

/// The suppressions in force in `format`, streamed as the body (the API's and the staff page's
/// export).
pub fn export_response(service: SuppressionService, format: Format) -> Response {
    let runtime = tokio::runtime::Handle::current();
    let content_type = match format {
        Format::Csv => "text/csv; charset=utf-8",
        Format::Jsonl => "application/x-ndjson",
    };
    streamed(content_type, move |mut writer| {
        let result = runtime.block_on(bulk::export(&service, &mut writer, format, false));
        match result
            .map_err(|e| e.to_string())
            .and_then(|_| writer.flush().map_err(|e| e.to_string()))
        {
            Ok(()) => {}
            Err(error) => {
                // The status line is sent; a broken body tells the client it is incomplete.
                tracing::warn!(error = %error, "export stopped");
                writer.fail(error);
            }
        }
    })
}
