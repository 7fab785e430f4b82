//! The OpenAPI 3.1 document, generated from the handlers' annotations (utoipa).

use axum::Json;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{bulk, routes};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "bouncegate",
        description = "Suppression database of the bouncegate SMTP gateway: check, status, suppress, lift, consent, erase, events, evidence, bulk filter/import/export and the relay's queue. Bearer tokens from [[http.tokens]] with role read, write or admin.",
    ),
    paths(
        routes::check,
        routes::status,
        routes::suppressions,
        routes::suppress,
        routes::lift,
        routes::consent,
        routes::erase,
        routes::events,
        routes::blocked,
        routes::evidence,
        routes::queue,
        routes::queue_item,
        routes::queue_act,
        bulk::filter,
        bulk::import,
        bulk::export,
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The document.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// `GET /openapi.json` (no token needed: it holds no data).
pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(document())
}
