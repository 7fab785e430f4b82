//! `POST /hooks/{provider}`: the upstream ESP's notifications. The provider's own mechanism
//! (SNS signature, SendGrid ECDSA, Mailgun HMAC, Postmark basic auth) is checked before the body
//! is read; what it reports goes through the inbound path like a received bounce.

use std::net::SocketAddr;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::ApiState;
use super::error::ApiError;
use crate::inbound::providers::{HookError, Provider};

/// Takes one notification.
pub async fn receive(
    State(state): State<ApiState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(provider) = Provider::from_path(&provider) else {
        return ApiError::not_found(format!(
            "no provider {provider:?} (ses, sendgrid, mailgun, postmark)"
        ))
        .into_response();
    };
    let Some(inbound) = &state.inbound else {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the inbound path is not running",
        )
        .into_response();
    };
    let header = |name: &str| super::header_text(&headers, name);
    let read = state
        .providers
        .read(
            provider,
            &state.service.config().hooks,
            &header,
            &body,
            chrono::Utc::now(),
        )
        .await;
    let notification = match read {
        Ok(notification) => notification,
        Err(error) => {
            let (status, code) = match &error {
                HookError::NotConfigured(_) => (StatusCode::NOT_FOUND, "not_configured"),
                HookError::Unauthenticated(_) => {
                    tracing::warn!(provider = provider.as_str(), %peer, %error, "webhook refused");
                    (StatusCode::UNAUTHORIZED, "unauthenticated")
                }
                HookError::Malformed(_) => (StatusCode::BAD_REQUEST, "malformed"),
                HookError::Unavailable(_) => {
                    tracing::warn!(provider = provider.as_str(), %error, "webhook not checked");
                    (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
                }
            };
            return ApiError::new(status, code, error.to_string()).into_response();
        }
    };
    if let Some(url) = &notification.confirmation {
        tracing::warn!(
            provider = provider.as_str(),
            subscribe_url = %url,
            "SNS subscription confirmation received: open the SubscribeURL to confirm (bouncegate does not follow it)"
        );
    }
    match inbound
        .process_notification(provider, &notification, &body, peer.ip())
        .await
    {
        Ok(()) => Json(json!({ "accepted": notification.items.len() })).into_response(),
        Err(error) => {
            tracing::warn!(provider = provider.as_str(), %error, "webhook not stored; the provider retries");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "not stored; try again later",
            )
            .into_response()
        }
    }
}
