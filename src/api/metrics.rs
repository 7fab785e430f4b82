//! `GET /metrics`: the Prometheus text format, rendered from the process's metrics recorder
//! (see [`crate::metrics`]), with the queue gauges read from the store at scrape time.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::ApiState;
use crate::service::OneClickOutcome;

pub use crate::metrics::{http_connection_refused, http_request};

/// Counts a one-click unsubscribe.
pub fn one_click(outcome: OneClickOutcome) {
    crate::metrics::one_click(match outcome {
        OneClickOutcome::Unsubscribed => "unsubscribed",
        OneClickOutcome::AlreadyUnsubscribed => "already",
    });
}

/// The metrics page.
pub async fn serve(State(state): State<ApiState>) -> Response {
    match state.service.queue_summary().await {
        Ok(summary) => crate::metrics::queue(&summary),
        Err(error) => tracing::warn!(error = %error, "metrics: cannot read the queue"),
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::render(),
    )
        .into_response()
}
