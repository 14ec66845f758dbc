//! Parsing and validating a sign request, from a query string or a JSON body.
//!
//! Parsing is by hand over the raw query so that every malformed input gets
//! a precise problem+json answer (a repeated parameter, bad percent-encoding,
//! invalid UTF-8) instead of a framework's plain-text rejection.

use crate::problem::ApiError;
use ipnet::IpNet;
use serde::Deserialize;

/// A validated sign request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignInput {
    /// The message to sign (non-empty, within the size limit).
    pub message: String,
    /// Where to POST the result if it is not ready within the wait.
    pub webhook_url: Option<String>,
}

/// Limits and policy applied to every input.
#[derive(Debug, Clone)]
pub struct Rules {
    /// Largest message in bytes.
    pub max_message_bytes: usize,
    /// Private ranges webhooks may reach.
    pub allowed_cidrs: Vec<IpNet>,
}

/// Parse `GET /crypto/sign?message=…&webhook_url=…` (`callback_url` is an alias).
pub fn from_query(raw: Option<&str>, rules: &Rules) -> Result<SignInput, ApiError> {
    let raw = raw.unwrap_or("");
    let mut message: Option<String> = None;
    let mut webhook: Option<String> = None;
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = decode_component(name, "parameter name")?;
        let slot = match name.as_str() {
            "message" => &mut message,
            "webhook_url" | "callback_url" => &mut webhook,
            _ => continue,
        };
        if slot.is_some() {
            let shown = if name == "message" {
                "message"
            } else {
                "webhook_url"
            };
            return Err(ApiError::bad_request(
                "repeated-parameter",
                format!("{shown} is given more than once"),
            ));
        }
        *slot = Some(decode_component(value, &name)?);
    }
    validate(message, webhook, rules)
}

/// Body of `POST /crypto/sign`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"message": "hello", "webhook_url": "https://example.com/hook"}))]
pub struct SignRequest {
    /// The message to sign (at most `MAX_MESSAGE_BYTES` bytes, default 4096).
    /// Optional here only so that its absence gets our own problem answer.
    #[schema(value_type = String, required = true, min_length = 1)]
    message: Option<String>,
    /// Where to POST the outcome if the answer is a `202` (see
    /// [`webhook_url_schema`]). `callback_url` is accepted as an alias.
    #[serde(alias = "callback_url")]
    #[schema(schema_with = webhook_url_or_null_schema)]
    webhook_url: Option<String>,
}

/// The schema of a `webhook_url` parameter: an absolute URL, or empty for
/// none (as [`validate`] takes it).
pub fn webhook_url_schema() -> utoipa::openapi::Schema {
    webhook_url_any_of().into()
}

/// [`webhook_url_schema`], or `null` (a JSON body may say so).
fn webhook_url_or_null_schema() -> utoipa::openapi::Schema {
    let null =
        utoipa::openapi::schema::ObjectBuilder::new().schema_type(utoipa::openapi::Type::Null);
    let mut schema = webhook_url_any_of();
    schema.items.push(null.into());
    schema.into()
}

fn webhook_url_any_of() -> utoipa::openapi::schema::AnyOf {
    use utoipa::openapi::schema::{AnyOfBuilder, KnownFormat, ObjectBuilder, SchemaFormat, Type};
    AnyOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(Type::String).format(Some(SchemaFormat::KnownFormat(KnownFormat::Uri))))
        .item(ObjectBuilder::new().schema_type(Type::String).max_length(Some(0)))
        .description(Some(
            "Absolute `http(s)` URL to POST the outcome to (a `WebhookEvent`, see the document's `webhooks`) \
             if the answer is a `202`; empty for none. Credentials and refused addresses (see SSRF in the \
             README) are a `400`.",
        ))
        .build()
}

/// Parse a JSON body `{"message": …, "webhook_url": …}`.
pub fn from_json(body: &[u8], rules: &Rules) -> Result<SignInput, ApiError> {
    let parsed: SignRequest = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(
            "invalid-json",
            format!("the body is not a valid sign request: {e}"),
        )
    })?;
    validate(parsed.message, parsed.webhook_url, rules)
}

fn validate(
    message: Option<String>,
    webhook: Option<String>,
    rules: &Rules,
) -> Result<SignInput, ApiError> {
    let message = message.unwrap_or_default();
    if message.is_empty() {
        return Err(ApiError::bad_request(
            "missing-message",
            "the message parameter is required and must not be empty",
        ));
    }
    if message.len() > rules.max_message_bytes {
        return Err(ApiError::MessageTooLong {
            actual: message.len(),
            limit: rules.max_message_bytes,
        });
    }
    let webhook_url = match webhook.filter(|w| !w.is_empty()) {
        None => None,
        Some(w) => match egress_policy::check_url(&w, &rules.allowed_cidrs) {
            Ok(url) => Some(url.to_string()),
            Err(refusal) => {
                return Err(ApiError::bad_request(
                    "invalid-webhook-url",
                    format!("webhook_url is not acceptable: {refusal}"),
                ));
            }
        },
    };
    Ok(SignInput {
        message,
        webhook_url,
    })
}

/// Percent-decode a query component (`+` is a space), requiring UTF-8.
fn decode_component(raw: &str, what: &str) -> Result<String, ApiError> {
    let mut bytes = Vec::with_capacity(raw.len());
    let input = raw.as_bytes();
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'+' => bytes.push(b' '),
            b'%' => {
                // Two hex digits exactly: `from_str_radix` alone would take `%+f`.
                let hex = input
                    .get(i + 1..i + 3)
                    .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                    .and_then(|h| std::str::from_utf8(h).ok());
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        bytes.push(b);
                        i += 2;
                    }
                    None => {
                        return Err(ApiError::bad_request(
                            "bad-encoding",
                            format!("{what} has an invalid percent-escape"),
                        ));
                    }
                }
            }
            b => bytes.push(b),
        }
        i += 1;
    }
    String::from_utf8(bytes)
        .map_err(|_| ApiError::bad_request("bad-encoding", format!("{what} is not valid UTF-8")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Rules {
        Rules {
            max_message_bytes: 16,
            allowed_cidrs: vec![],
        }
    }

    fn kind(e: ApiError) -> &'static str {
        match e {
            ApiError::BadRequest { kind, .. } => kind,
            ApiError::MessageTooLong { .. } => "too-long",
            _ => "other",
        }
    }

    #[test]
    fn decodes_percent_and_plus_and_takes_the_alias() {
        let i = from_query(
            Some("message=a%2Bb+c%26&callback_url=https%3A%2F%2Fexample.com%2Fh"),
            &rules(),
        )
        .expect("valid");
        assert_eq!(i.message, "a+b c&");
        assert_eq!(i.webhook_url.as_deref(), Some("https://example.com/h"));
    }

    #[test]
    fn every_bad_input_has_its_own_problem() {
        let r = rules();
        assert_eq!(
            kind(from_query(None, &r).expect_err("bad")),
            "missing-message"
        );
        assert_eq!(
            kind(from_query(Some("message="), &r).expect_err("bad")),
            "missing-message"
        );
        assert_eq!(
            kind(from_query(Some("message=a&message=b"), &r).expect_err("bad")),
            "repeated-parameter"
        );
        assert_eq!(
            kind(from_query(Some("message=%zz"), &r).expect_err("bad")),
            "bad-encoding"
        );
        assert_eq!(
            kind(from_query(Some("message=%ff%fe"), &r).expect_err("bad")),
            "bad-encoding"
        );
        assert_eq!(
            kind(from_query(Some("message=%"), &r).expect_err("bad")),
            "bad-encoding"
        );
        assert_eq!(
            kind(from_query(Some(&format!("message={}", "x".repeat(17))), &r).expect_err("bad")),
            "too-long"
        );
        assert_eq!(
            kind(from_query(Some("message=a&webhook_url=ftp://x.example/"), &r).expect_err("bad")),
            "invalid-webhook-url"
        );
        assert_eq!(
            kind(from_query(Some("message=a&webhook_url=/relative"), &r).expect_err("bad")),
            "invalid-webhook-url"
        );
        assert_eq!(
            kind(from_query(Some("message=a&webhook_url=http://127.0.0.1/"), &r).expect_err("bad")),
            "invalid-webhook-url"
        );
        assert_eq!(kind(from_json(b"{", &r).expect_err("bad")), "invalid-json");
        assert_eq!(
            kind(from_json(br#"{"message": 5}"#, &r).expect_err("bad")),
            "invalid-json"
        );
        assert_eq!(
            kind(from_json(br#"{"message": "a", "extra": 1}"#, &r).expect_err("bad")),
            "invalid-json"
        );
    }

    #[test]
    fn allowed_ranges_open_private_webhooks() {
        let r = Rules {
            max_message_bytes: 16,
            allowed_cidrs: vec!["127.0.0.0/8".parse().expect("cidr")],
        };
        let i = from_json(
            br#"{"message":"hi","webhook_url":"http://127.0.0.1:9/h"}"#,
            &r,
        )
        .expect("valid");
        assert_eq!(i.webhook_url.as_deref(), Some("http://127.0.0.1:9/h"));
    }
}
