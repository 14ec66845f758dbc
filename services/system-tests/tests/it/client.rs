//! Calling the api as a user would, timing each answer.

use crate::system::System;
use std::time::{Duration, Instant};

/// SHA-256 of a caller key in hex, as `CALLERS` holds it.
pub fn key_sha256(key: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One answer of the api.
#[derive(Debug, Clone)]
pub struct Answer {
    pub message: String,
    pub status: u16,
    pub elapsed: Duration,
    pub content_type: String,
    pub location: Option<String>,
    pub retry_after: Option<String>,
    pub body: serde_json::Value,
}

impl Answer {
    /// The job id in the body.
    pub fn id(&self) -> String {
        self.body["id"].as_str().unwrap_or_default().to_owned()
    }
}

/// `GET /crypto/sign?message=…&webhook_url=…` with the test's receiver, to
/// send as it is ([`sign`]) or with more headers.
pub fn sign_request(sys: &System, message: &str) -> reqwest::RequestBuilder {
    sys.http
        .get(format!("{}/crypto/sign", sys.api_url))
        .query(&[
            ("message", message),
            ("webhook_url", sys.receiver.url.as_str()),
        ])
}

/// `GET /crypto/sign?message=…&webhook_url=…`
pub async fn sign(sys: &System, message: &str) -> Answer {
    send(message, sign_request(sys, message)).await
}

/// Send any request and time it.
pub async fn send(message: &str, request: reqwest::RequestBuilder) -> Answer {
    let started = Instant::now();
    let response = request.send().await.expect("the api answers");
    let elapsed = started.elapsed();
    let header = |n: &str| {
        response
            .headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let status = response.status().as_u16();
    let content_type = header("content-type").unwrap_or_default();
    let location = header("location");
    let retry_after = header("retry-after");
    let body = response.json().await.unwrap_or(serde_json::Value::Null);
    Answer {
        message: message.to_owned(),
        status,
        elapsed,
        content_type,
        location,
        retry_after,
        body,
    }
}

/// Send `messages` all at once.
pub async fn burst(sys: &System, messages: &[String]) -> Vec<Answer> {
    futures::future::join_all(messages.iter().map(|m| sign(sys, m))).await
}

/// GET a status URL (relative to the api).
pub async fn status(sys: &System, location: &str) -> serde_json::Value {
    sys.http
        .get(format!("{}{}", sys.api_url, location))
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("status json")
}
