//! The HTTP side of `serve` (axum, on `http.listen`): the JSON API under `/v1` with bearer tokens
//! and roles, one-click unsubscribe under `/u/{token}`, `/metrics` for Prometheus and the OpenAPI
//! document at `/openapi.json`. Every rule is the service layer's.

mod auth;
mod bulk;
mod error;
mod extract;
mod hooks;
pub mod metrics;
mod openapi;
mod routes;
mod unsubscribe;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};

pub use auth::Tokens;
pub use bulk::export_response;
pub use error::{ApiError, ErrorBody, status_of};
pub use openapi::document;

use crate::config::Config;
use crate::inbound::InboundSink;
use crate::inbound::providers::Providers;
use crate::service::SuppressionService;

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    /// Shared: every request clones the state, and a service clone is a dozen reference counts.
    pub service: Arc<SuppressionService>,
    pub tokens: Arc<Tokens>,
    /// Where providers' notifications go (`None`: `/hooks` answers 503).
    pub inbound: Option<Arc<InboundSink>>,
    pub providers: Arc<Providers>,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("tokens", &self.tokens)
            .field("inbound", &self.inbound.is_some())
            .finish_non_exhaustive()
    }
}

impl ApiState {
    pub fn new(service: SuppressionService, config: &Config) -> Self {
        Self {
            tokens: Arc::new(Tokens::new(&config.http.tokens)),
            service: Arc::new(service),
            inbound: None,
            providers: Arc::new(Providers::new()),
        }
    }

    /// Providers' notifications go to `inbound`.
    pub fn with_inbound(mut self, inbound: Arc<InboundSink>) -> Self {
        self.inbound = Some(inbound);
        self
    }
}

/// Every route of the HTTP side.
pub fn router(state: ApiState, config: &Config) -> Router {
    let v1 = Router::new()
        .route("/v1/check", get(routes::check))
        .route("/v1/status/{address}", get(routes::status))
        .route("/v1/report/{address}", get(routes::report))
        .route("/v1/purge", post(routes::purge))
        .route(
            "/v1/suppressions",
            get(routes::suppressions).post(routes::suppress),
        )
        .route("/v1/suppressions/{id}/lift", post(routes::lift))
        .route("/v1/consents", post(routes::consent))
        .route("/v1/erasure", post(routes::erase))
        .route("/v1/events", get(routes::events))
        .route("/v1/blocked", get(routes::blocked))
        .route("/v1/evidence/{id}", get(routes::evidence))
        .route("/v1/queue", get(routes::queue))
        .route("/v1/queue/{id}", get(routes::queue_item))
        .route("/v1/queue/{id}/{action}", post(routes::queue_act))
        .layer(DefaultBodyLimit::max(config.http.max_body_size));
    // Bulk bodies stream (the line limit guards them), so they have no overall limit.
    let bulk = Router::new()
        .route("/v1/filter", post(bulk::filter))
        .route("/v1/import", post(bulk::import))
        .route("/v1/export", get(bulk::export))
        .layer(DefaultBodyLimit::disable());
    Router::new()
        .merge(v1)
        .merge(bulk)
        .route(
            "/u/{token}",
            get(unsubscribe::show).post(unsubscribe::unsubscribe),
        )
        .route(
            "/hooks/{provider}",
            post(hooks::receive).layer(DefaultBodyLimit::max(config.http.max_body_size)),
        )
        .route("/openapi.json", get(openapi::serve))
        .route("/metrics", get(metrics::serve))
        .fallback(not_found)
        .with_state(state.clone())
        .merge(crate::staff::router(crate::staff::StaffState::new(
            (*state.service).clone(),
            config,
        )))
        .layer(axum::middleware::from_fn(count_requests))
        .layer(tower::limit::ConcurrencyLimitLayer::new(
            config.http.max_concurrent_requests,
        ))
}

/// A request header as text (`None` when absent or not visible ASCII).
fn header_text(headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint (see /openapi.json)")
}

/// Counts requests by route and status, and times them.
async fn count_requests(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    metrics::http_request(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// A running HTTP listener.
pub struct HttpHandle {
    local_addr: SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl HttpHandle {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting and lets requests in flight finish.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Binds `http.listen` and serves `router`: at most `max_connections` open connections (past it
/// a new one is closed at once), each given `header_read_timeout` to send a request's headers.
///
/// # Errors
/// The address cannot be bound.
pub async fn spawn(
    listen: SocketAddr,
    router: Router,
    max_connections: usize,
    header_read_timeout: std::time::Duration,
) -> std::io::Result<HttpHandle> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let local_addr = listener.local_addr()?;
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(accept_loop(
        listener,
        router,
        stopping,
        max_connections,
        header_read_timeout,
    ));
    Ok(HttpHandle {
        local_addr,
        stop,
        task,
    })
}

/// Returns once the stop flag is set (the guard `wait_for` gives is not held across awaits).
async fn stopped(stopping: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stop| *stop).await;
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    router: Router,
    mut stopping: tokio::sync::watch::Receiver<bool>,
    max_connections: usize,
    header_read_timeout: std::time::Duration,
) {
    use tower::ServiceExt;
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections));
    let mut connections = tokio::task::JoinSet::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, say: wait rather than spin.
                    tracing::warn!(%error, "HTTP accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = stopped(&mut stopping) => break,
        };
        while connections.try_join_next().is_some() {}
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics::http_connection_refused();
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let http = http.clone();
        let mut stopping = stopping.clone();
        connections.spawn(async move {
            let _slot = slot;
            let service = hyper::service::service_fn(
                move |mut request: hyper::Request<hyper::body::Incoming>| {
                    request
                        .extensions_mut()
                        .insert(axum::extract::ConnectInfo(peer));
                    router.clone().oneshot(request)
                },
            );
            let connection = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                () = stopped(&mut stopping) => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
    // Requests in flight finish.
    while connections.join_next().await.is_some() {}
}
