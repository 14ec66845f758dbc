//! `GET /openapi.json`: the api described as OpenAPI 3.1, generated from the
//! handlers' `#[utoipa::path]` annotations and the body types' schemas, so
//! the description changes with the code (scripts/schemathesis.sh checks the
//! running api against it).
//!
//! The webhook a `202`ed job's caller receives is described under the
//! document's `webhooks`, with its body as the `WebhookEvent` schema.

use crate::bodies::{JobStatus, PendingBody, SignedBody, WebhookEvent};
use crate::problem::Problem;
use axum::http::header;
use axum::response::IntoResponse;
use std::sync::OnceLock;
use utoipa::OpenApi;
use utoipa::openapi::path::{
    HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::{ContentBuilder, PathsBuilder, Ref, Required, ResponseBuilder, Type};

/// The document's static part; [`document`] adds what the macros cannot.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Signing gateway",
        description = "Signs messages through a flaky, rate-limited signing API. Every request is answered \
                       within 2 s: `200` with the signature, or `202` with a status monitor and, when a \
                       `webhook_url` was given, a webhook (see `webhooks`) once the job ends. Errors are \
                       `application/problem+json` (RFC 9457)."
    ),
    paths(
        crate::sign::get,
        crate::sign::post,
        crate::jobs::show,
        crate::healthz,
        crate::ready,
        metrics,
        openapi_json,
    ),
    components(schemas(SignedBody, PendingBody, JobStatus, Problem, WebhookEvent)),
    tags(
        (name = "signing", description = "Signing messages and following jobs"),
        (name = "operations", description = "Health, readiness, metrics, this document"),
    )
)]
struct ApiDoc;

/// `GET /metrics`, served by `service_kit::metrics_router`; described here.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    summary = "Prometheus metrics",
    responses((status = 200, description = "Prometheus text exposition format 0.0.4", body = String, content_type = "text/plain"))
)]
#[allow(dead_code)]
fn metrics() {}

/// `GET /openapi.json`: this document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    summary = "This OpenAPI document",
    responses((status = 200, description = "OpenAPI 3.1", body = Object, content_type = "application/json"))
)]
pub async fn openapi_json() -> impl IntoResponse {
    static JSON: OnceLock<String> = OnceLock::new();
    let json = JSON.get_or_init(|| document().to_json().unwrap_or_default());
    ([(header::CONTENT_TYPE, "application/json")], json.as_str())
}

/// The full document: the derived part plus the webhook.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.webhooks = Some(
        PathsBuilder::new()
            .path("signatureEvent", webhook())
            .build(),
    );
    doc
}

/// The POST the notifier makes to a job's `webhook_url` (Standard Webhooks).
fn webhook() -> PathItem {
    let header = |name: &str, description: &str| {
        ParameterBuilder::new()
            .name(name)
            .parameter_in(ParameterIn::Header)
            .required(Required::True)
            .description(Some(description))
            .schema(Some(
                utoipa::openapi::ObjectBuilder::new().schema_type(Type::String),
            ))
            .build()
    };
    let body = RequestBodyBuilder::new()
        .required(Some(Required::True))
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("WebhookEvent")))
                .build(),
        )
        .build();
    let operation = OperationBuilder::new()
        .operation_id(Some("signature_event"))
        .summary(Some("The outcome of a job answered 202"))
        .description(Some(
            "POSTed to the job's `webhook_url` when it ends, signed as Standard Webhooks \
             (HMAC-SHA256 with each `WEBHOOK_SECRET` key over `<webhook-id>.<webhook-timestamp>.<body>`). \
             Only a 2xx within `WEBHOOK_TIMEOUT` counts as delivered; otherwise the delivery is retried on \
             `WEBHOOK_RETRY_SCHEDULE` (redirects are not followed).",
        ))
        .parameter(header("webhook-id", "The job id, the same on every retry: deduplicate on it"))
        .parameter(header("webhook-timestamp", "Unix seconds of this attempt"))
        .parameter(header("webhook-signature", "Space-separated `v1,<base64 HMAC-SHA256>` entries"))
        .request_body(Some(body))
        .response("200", ResponseBuilder::new().description("Any 2xx: delivered, no more attempts"))
        .response("410", ResponseBuilder::new().description("Gone: no more attempts (dead-lettered)"))
        .response(
            "429",
            ResponseBuilder::new().description("With `Retry-After`: the next attempt waits that long (at most 1 h)"),
        )
        .response("default", ResponseBuilder::new().description("Anything else: the next attempt in the schedule"))
        .build();
    PathItem::new(HttpMethod::Post, operation)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn parsed() -> Value {
        let json = document().to_pretty_json().expect("serialises");
        serde_json::from_str(&json).expect("the document is JSON")
    }

    #[test]
    fn the_document_describes_every_route() {
        let doc = parsed();
        assert!(
            doc["openapi"]
                .as_str()
                .is_some_and(|v| v.starts_with("3.1")),
            "{}",
            doc["openapi"]
        );
        let paths: Vec<&str> = doc["paths"]
            .as_object()
            .expect("paths")
            .keys()
            .map(String::as_str)
            .collect();
        for path in [
            "/crypto/sign",
            "/crypto/sign/jobs/{id}",
            "/healthz",
            "/readyz",
            "/metrics",
            "/openapi.json",
        ] {
            assert!(paths.contains(&path), "{path} missing from {paths:?}");
        }
        assert!(doc["paths"]["/crypto/sign"]["get"].is_object());
        assert!(doc["paths"]["/crypto/sign"]["post"].is_object());
    }

    #[test]
    fn sign_answers_and_problems_are_typed() {
        let doc = parsed();
        let get = &doc["paths"]["/crypto/sign"]["get"];
        let body_ref = |status: &str, media: &str| {
            get["responses"][status]["content"][media]["schema"]["$ref"].clone()
        };
        assert_eq!(
            body_ref("200", "application/json"),
            "#/components/schemas/SignedBody"
        );
        assert_eq!(
            body_ref("202", "application/json"),
            "#/components/schemas/PendingBody"
        );
        for status in ["400", "413", "422", "503"] {
            assert_eq!(
                body_ref(status, "application/problem+json"),
                "#/components/schemas/Problem",
                "{status}"
            );
        }
        let headers = get["responses"]["202"]["headers"]
            .as_object()
            .expect("202 headers");
        assert!(
            headers.contains_key("Location") && headers.contains_key("Retry-After"),
            "{headers:?}"
        );
        assert!(get["responses"]["503"]["headers"]["Retry-After"].is_object());
        let names: Vec<&str> = get["parameters"]
            .as_array()
            .expect("params")
            .iter()
            .filter_map(|p| p["name"].as_str())
            .collect();
        assert_eq!(names, ["message", "webhook_url", "callback_url"]);
        assert_eq!(
            doc["paths"]["/crypto/sign/jobs/{id}"]["get"]["responses"]["404"]["content"]["application/problem+json"]
                ["schema"]["$ref"],
            "#/components/schemas/Problem"
        );
        assert_eq!(
            doc["components"]["schemas"]["SignedBody"]["properties"]["status"]["enum"],
            serde_json::json!(["signed"])
        );
    }

    #[test]
    fn the_webhook_is_described_with_its_body() {
        let doc = parsed();
        let schemas = doc["components"]["schemas"].as_object().expect("schemas");
        for name in [
            "SignedBody",
            "PendingBody",
            "JobStatus",
            "Problem",
            "WebhookEvent",
            "WebhookEventData",
        ] {
            assert!(schemas.contains_key(name), "{name} missing");
        }
        assert_eq!(
            doc["webhooks"]["signatureEvent"]["post"]["requestBody"]["content"]["application/json"]
                ["schema"]["$ref"],
            "#/components/schemas/WebhookEvent"
        );
    }

    #[test]
    fn the_document_round_trips_through_the_openapi_model() {
        let json = document().to_json().expect("serialises");
        let back: utoipa::openapi::OpenApi =
            serde_json::from_str(&json).expect("parses as OpenAPI");
        let again: Value =
            serde_json::from_str(&back.to_json().expect("serialises")).expect("JSON");
        assert_eq!(again, serde_json::from_str::<Value>(&json).expect("JSON"));
    }
}
