//! One-click unsubscribe pages (RFC 8058): `POST /u/{token}` opts out at once and answers a short
//! page; `GET /u/{token}` only shows a page with a button that POSTs (link scanners prefetch
//! links, so a GET never unsubscribes). No login, cookies, redirects or scripts.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::ApiState;
use crate::service::{OneClickOutcome, OneClickRequest, UnsubscribeTarget};

/// The most of a one-click body kept (RFC 8058 sends 26 bytes).
const MAX_BODY: usize = 4 * 1024;

pub use crate::render::Lang;

/// German or English after `Accept-Language` (highest weight first); English otherwise.
pub fn language(headers: &HeaderMap) -> Lang {
    headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .map_or(Lang::En, Lang::from_accept_language)
}

/// Text for the page: HTML-escaped.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn page(status: StatusCode, lang: Lang, title: &str, body: &str) -> Response {
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"{}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>body{{font-family:system-ui,sans-serif;max-width:36em;margin:3em auto;padding:0 1em;line-height:1.5}}\
         button{{font-size:1.1em;padding:.5em 1.2em}}button:focus{{outline:3px solid #1a5fb4}}</style></head>\
         <body><main><h1>{title}</h1>{body}</main></body></html>\n",
        match lang {
            Lang::De => "de",
            Lang::En => "en",
        }
    );
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    response
}

/// "the newsletter of Brand (Company)" in the page's words.
fn sender(lang: Lang, target: &UnsubscribeTarget) -> String {
    let company = escape(&target.company_name);
    match (&target.brand, lang) {
        (Some(brand), Lang::De) => format!("<strong>{}</strong> ({company})", escape(brand)),
        (Some(brand), Lang::En) => format!("<strong>{}</strong> ({company})", escape(brand)),
        (None, _) => format!("<strong>{company}</strong>"),
    }
}

fn invalid(lang: Lang) -> Response {
    match lang {
        Lang::De => page(
            StatusCode::BAD_REQUEST,
            lang,
            "Link ungültig",
            "<p>Dieser Abmeldelink ist ungültig oder abgelaufen. Es wurde nichts geändert. \
             Bitte nutzen Sie den Link aus einer neueren E-Mail oder antworten Sie auf die E-Mail.</p>",
        ),
        Lang::En => page(
            StatusCode::BAD_REQUEST,
            lang,
            "Link not valid",
            "<p>This unsubscribe link is not valid or has expired. Nothing was changed. \
             Please use the link in a more recent e-mail, or reply to the e-mail.</p>",
        ),
    }
}

fn unavailable(lang: Lang) -> Response {
    let mut response = match lang {
        Lang::De => page(
            StatusCode::SERVICE_UNAVAILABLE,
            lang,
            "Bitte später erneut versuchen",
            "<p>Die Abmeldung konnte gerade nicht gespeichert werden. Bitte versuchen Sie es in ein paar Minuten erneut.</p>",
        ),
        Lang::En => page(
            StatusCode::SERVICE_UNAVAILABLE,
            lang,
            "Please try again later",
            "<p>Your unsubscribe could not be saved just now. Please try again in a few minutes.</p>",
        ),
    };
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
    response
}

/// The confirmation page: names the sender, a button that POSTs; changes nothing.
pub async fn show(
    State(state): State<ApiState>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Response {
    let lang = language(&headers);
    let target = match state.service.unsubscribe_target(&token).await {
        Ok(Some(target)) => target,
        Ok(None) => return invalid(lang),
        Err(error) => {
            tracing::error!(error = %error, "one-click page: store failed");
            return unavailable(lang);
        }
    };
    let action = format!("/u/{}", escape(&token));
    let who = sender(lang, &target);
    let (title, text, button) = match lang {
        Lang::De => (
            "Abmelden",
            format!("<p>Keine weiteren Newsletter von {who} an diese Adresse?</p>"),
            "Jetzt abmelden",
        ),
        Lang::En => (
            "Unsubscribe",
            format!("<p>Stop newsletters from {who} to this address?</p>"),
            "Unsubscribe",
        ),
    };
    page(
        StatusCode::OK,
        lang,
        title,
        &format!(
            "{text}<form method=\"post\" action=\"{action}\">\
             <input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">\
             <button type=\"submit\">{button}</button></form>"
        ),
    )
}

/// The one-click POST: opts out at once, keeps the request as evidence, says so.
pub async fn unsubscribe(
    State(state): State<ApiState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let lang = language(&headers);
    // A body past the limit is cut, not refused: the click still counts.
    let body = read_limited(body, MAX_BODY).await;
    let text = |name: header::HeaderName| super::header_text(&headers, name.as_str());
    let request = OneClickRequest {
        peer: peer.to_string(),
        user_agent: text(header::USER_AGENT),
        content_type: text(header::CONTENT_TYPE),
        path: format!("/u/{token}"),
        body,
    };
    let (target, outcome) = match state.service.one_click(&token, &request).await {
        Ok(Some(done)) => done,
        Ok(None) => return invalid(lang),
        Err(error) => {
            tracing::error!(error = %error, "one-click unsubscribe: store failed");
            return unavailable(lang);
        }
    };
    crate::api::metrics::one_click(outcome);
    let who = sender(lang, &target);
    let (title, text) = match (lang, outcome) {
        (Lang::De, OneClickOutcome::Unsubscribed) => (
            "Abgemeldet",
            format!("<p>Sie erhalten keine Newsletter mehr von {who}.</p>"),
        ),
        (Lang::De, OneClickOutcome::AlreadyUnsubscribed) => (
            "Bereits abgemeldet",
            format!("<p>Sie waren bereits abgemeldet und erhalten keine Newsletter von {who}.</p>"),
        ),
        (Lang::En, OneClickOutcome::Unsubscribed) => (
            "Unsubscribed",
            format!("<p>You will get no more newsletters from {who}.</p>"),
        ),
        (Lang::En, OneClickOutcome::AlreadyUnsubscribed) => (
            "Already unsubscribed",
            format!("<p>You were already unsubscribed and get no newsletters from {who}.</p>"),
        ),
    };
    page(StatusCode::OK, lang, title, &text)
}

async fn read_limited(body: Body, limit: usize) -> Vec<u8> {
    use futures_util::StreamExt;
    let mut stream = body.into_data_stream();
    let mut kept = Vec::new();
    while let Some(Ok(chunk)) = stream.next().await {
        let room = limit.saturating_sub(kept.len());
        kept.extend_from_slice(&chunk[..room.min(chunk.len())]);
        if kept.len() >= limit {
            break;
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT_LANGUAGE,
            HeaderValue::from_str(value).unwrap(),
        );
        headers
    }

    #[test]
    fn language_follows_the_weights() {
        assert_eq!(language(&accept("de-DE,de;q=0.9,en;q=0.8")), Lang::De);
        assert_eq!(language(&accept("en-US,de;q=0.5")), Lang::En);
        assert_eq!(language(&accept("fr-FR,de;q=0.7,en;q=0.3")), Lang::De);
        assert_eq!(language(&accept("en;q=0.2,de;q=0.9")), Lang::De);
        assert_eq!(language(&accept("fr")), Lang::En);
        assert_eq!(language(&HeaderMap::new()), Lang::En);
    }

    #[test]
    fn names_are_escaped() {
        assert_eq!(
            escape("<b>\"A&B\"</b>"),
            "&lt;b&gt;&quot;A&amp;B&quot;&lt;/b&gt;"
        );
    }
}
