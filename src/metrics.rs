//! The gateway's metrics, named in one place (every name starts with `bouncegate_`), recorded
//! through the `metrics` crate and rendered in the Prometheus text format by `/metrics`.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::store::QueueSummary;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Latency buckets in seconds: 100 µs to 10 s.
const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Installs the process's recorder (once; later calls do nothing).
pub fn init() {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
            .expect("the buckets are not empty");
        match builder.install_recorder() {
            Ok(handle) => handle,
            Err(error) => {
                tracing::warn!(error = %error, "metrics recorder not installed; /metrics stays empty");
                PrometheusBuilder::new().build_recorder().handle()
            }
        }
    });
}

/// The text format of every metric recorded so far.
pub fn render() -> String {
    init();
    let handle = HANDLE.get().expect("initialised");
    handle.run_upkeep();
    handle.render()
}

/// A mail the inbound listener took, by what it was (`bounce`, `complaint`, `unsubscribe`, …).
pub fn mail_received(kind: &str) {
    counter!("bouncegate_mails_received_total", "kind" => kind.to_string()).increment(1);
}

/// A bounced recipient, by class (`hard`, `soft`, …) and reason.
pub fn bounce(class: &str, reason: &str) {
    counter!("bouncegate_bounces_total", "class" => class.to_string(), "reason" => reason.to_string())
        .increment(1);
}

/// A suppression added by the gateway (inbound, one-click, API), by reason and source.
pub fn suppression_added(reason: &str, source: &str) {
    counter!("bouncegate_suppressions_added_total", "reason" => reason.to_string(), "source" => source.to_string())
        .increment(1);
}

/// A send the relay refused or dropped because a suppression stops it; `reason` as the block
/// records it (`unsubscribed (brand:acme/news)`), counted by its first word (`unsubscribed`).
pub fn send_blocked(reason: &str) {
    let word = reason
        .split([' ', '('])
        .next()
        .unwrap_or("blocked")
        .to_string();
    counter!("bouncegate_sends_blocked_total", "reason" => word).increment(1);
}

/// How a delivery attempt ended (`delivered`, `retry`, `failed`, `dropped`).
pub fn delivery(outcome: &'static str) {
    counter!("bouncegate_deliveries_total", "outcome" => outcome).increment(1);
}

/// An SMTP session opened on a listener (`inbound`, `relay`).
pub fn smtp_session(listener: &'static str) {
    counter!("bouncegate_smtp_sessions_total", "listener" => listener).increment(1);
}

/// An SMTP reply of class 4 or 5 sent on a listener.
pub fn smtp_rejection(listener: &'static str, code: u16) {
    counter!("bouncegate_smtp_rejections_total", "listener" => listener, "code" => code.to_string())
        .increment(1);
}

/// An HTTP request, by method, route and status, and its duration.
pub fn http_request(method: &str, route: &str, status: u16, took: Duration) {
    counter!("bouncegate_http_requests_total", "method" => method.to_string(), "route" => route.to_string(), "status" => status.to_string())
        .increment(1);
    histogram!("bouncegate_http_request_duration_seconds", "route" => route.to_string())
        .record(took.as_secs_f64());
}

/// How long a store operation took (`inbound_commit`, `check`, `enqueue`, …).
pub fn store_latency(operation: &'static str, took: Duration) {
    histogram!("bouncegate_store_duration_seconds", "operation" => operation)
        .record(took.as_secs_f64());
}

/// A one-click unsubscribe (`unsubscribed`, `already`).
pub fn one_click(outcome: &'static str) {
    counter!("bouncegate_one_click_total", "outcome" => outcome).increment(1);
}

/// The relay queue's depth by state and the age of its oldest waiting item.
pub fn queue(summary: &QueueSummary) {
    for (state, count) in [
        ("queued", summary.queued),
        ("held", summary.held),
        ("delivered", summary.delivered),
        ("failed", summary.failed),
        ("dropped", summary.dropped),
    ] {
        gauge!("bouncegate_queue_items", "state" => state).set(count as f64);
    }
    let age = summary
        .oldest_waiting
        .as_deref()
        .and_then(crate::model::parse_time)
        .map(|t| (chrono::Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0)
        .unwrap_or(0.0);
    gauge!("bouncegate_queue_oldest_age_seconds").set(age);
}

/// A webhook attempt (`delivered`, `retry`, `failed`).
pub fn webhook(outcome: &'static str) {
    counter!("bouncegate_webhook_attempts_total", "outcome" => outcome).increment(1);
}

/// An HTTP connection closed at once because `http.max_connections` were open.
pub fn http_connection_refused() {
    counter!("bouncegate_http_connections_refused_total").increment(1);
}
