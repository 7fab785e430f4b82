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
        routes::report,
        routes::purge,
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
    components(schemas(
        super::error::ErrorBody,
        crate::model::MailClass,
        crate::model::Channel,
        crate::model::Reason,
        crate::model::Source,
        crate::model::ContactStatus,
        crate::service::bulk::Format,
        crate::service::bulk::RowError,
        crate::store::EventRecord,
        crate::store::BlockedRecord,
        crate::model::SuppressionRecord,
        crate::policy::Blocking,
        crate::service::CompanyStatus,
        crate::service::BrandStatus,
        routes::QueueCommand,
        routes::LiftBody,
        crate::service::AccessReport,
        crate::service::PurgeReport,
        crate::store::PurgeCount,
        crate::store::PurgeRule,
        crate::service::RetentionSummary,
        crate::store::HeldSuppression,
        crate::store::HeldEvent,
        crate::store::HeldConsent,
        crate::store::HeldEvidence,
        crate::store::HeldSend,
        crate::store::ErasureRecord,
        crate::store::Keep,
        crate::store::KeepRule,
        crate::store::LiftPath,
    )),
    modifiers(&BearerAuth, &CommonErrors),
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

/// The answers every operation can give besides its own: a bad request, a missing or wrong
/// token, a role too low, an unavailable store; and for JSON bodies, a wrong content type or a
/// body that does not fit.
struct CommonErrors;

impl Modify for CommonErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build()
        };
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                item.get.as_mut(),
                item.post.as_mut(),
                item.put.as_mut(),
                item.delete.as_mut(),
            ];
            for operation in operations.into_iter().flatten() {
                let json_body = operation
                    .request_body
                    .as_ref()
                    .is_some_and(|body| body.content.contains_key("application/json"));
                let mut add = vec![
                    (
                        "400",
                        "The request is malformed or names something not configured",
                    ),
                    ("401", "No token, or not a valid one"),
                    ("403", "The token's role may not do this"),
                    ("404", "Not found"),
                    ("503", "The database is not available; try again later"),
                ];
                if operation.request_body.is_some() {
                    add.push((
                        "415",
                        "The body's Content-Type is not one this operation takes",
                    ));
                }
                if json_body {
                    add.push(("422", "The JSON does not fit the request"));
                }
                for (status, description) in add {
                    operation
                        .responses
                        .responses
                        .entry(status.to_string())
                        .or_insert_with(|| error(description).into());
                }
            }
        }
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
