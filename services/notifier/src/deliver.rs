//! One webhook attempt over HTTP, and how its result is classified.
//!
//! Only a 2xx counts as delivered. Redirects are not followed (a 3xx is a
//! failure: following one would let a receiver point us at an internal
//! address). 410 Gone means "stop sending". 429/503 may carry `Retry-After`.
//! Everything else, including timeouts and connection errors, is retried on
//! the schedule. A target the egress policy refuses is never retried.

use crate::config::Config;
use crate::resolver::EgressResolver;
use crate::retry::Failure;
use crate::signing::{SigningKey, signature_header};
use egress_policy::{ResolveRefusal, UrlRefusal};
use ipnet::IpNet;
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use std::error::Error as _;
use std::sync::Arc;
use std::time::{Duration, Instant};
use url::Url;
use wire_contract::UnixMillis;

/// `user-agent` of every webhook request.
pub const USER_AGENT: &str = concat!("signing-gateway-webhooks/", env!("CARGO_PKG_VERSION"));

/// How much of a failed response's body is kept in the attempt's error.
const BODY_SNIPPET: usize = 256;

/// What an attempt amounted to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A 2xx: done.
    Delivered,
    /// Not delivered; whether and when to retry is the schedule's call.
    Failed(Failure),
}

/// The result of one attempt, as recorded in the delivery record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptReport {
    /// HTTP status, if a response came.
    pub status: Option<u16>,
    /// What went wrong, if anything.
    pub error: Option<String>,
    /// Time from sending to the response (or the failure).
    pub latency_ms: u64,
    /// Delivered or failed, and how.
    pub verdict: Verdict,
}

impl AttemptReport {
    /// The report of an attempt the egress policy stopped before sending.
    pub fn refused(reason: impl std::fmt::Display) -> Self {
        Self {
            status: None,
            error: Some(format!("refused target: {reason}")),
            latency_ms: 0,
            verdict: Verdict::Failed(Failure::Permanent),
        }
    }

    /// What the attempt says of the receiver: `Some(false)` if it is
    /// failing (5xx, 429, timeout, connection error), `Some(true)` if it
    /// answered otherwise (it is up, even if it refused this webhook),
    /// `None` if nothing was sent.
    pub fn receiver_health(&self) -> Option<bool> {
        match (self.status, &self.verdict) {
            (Some(status), _) => Some(status < 500 && status != 429),
            (None, Verdict::Failed(Failure::Transient { .. })) => Some(false),
            (None, _) => None,
        }
    }

    /// The report of an attempt not made because its destination's circuit
    /// is open until `until` after `failures` failures in a row. A failure
    /// like any other for the schedule, except that the next attempt is not
    /// due before the circuit is half open again (as a `Retry-After`).
    pub fn circuit_open(until: UnixMillis, failures: u32, now: UnixMillis) -> Self {
        Self {
            status: None,
            error: Some(format!(
                "not sent: the destination failed {failures} times in a row; its circuit is open until {}",
                until.to_rfc3339()
            )),
            latency_ms: 0,
            verdict: Verdict::Failed(Failure::Transient {
                retry_after: Some(until.since(now)),
            }),
        }
    }
}

/// One webhook to send.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    /// Where to (already checked with [`Sender::check`]).
    pub url: &'a Url,
    /// The job id: the `webhook-id`, stable across retries.
    pub job_id: &'a str,
    /// Request id for the receiver's logs (`x-request-id`).
    pub request_id: &'a str,
    /// The JSON body.
    pub body: &'a [u8],
    /// When the attempt is made (`webhook-timestamp`).
    pub now: UnixMillis,
    /// The job's caller: its own signing keys, if it has any, sign it.
    pub caller: Option<&'a str>,
}

/// Sends webhooks: an HTTP client that dials only vetted addresses, plus the
/// signing keys.
#[derive(Debug, Clone)]
pub struct Sender {
    client: reqwest::Client,
    keys: Arc<[SigningKey]>,
    caller_keys: Arc<std::collections::HashMap<String, Vec<SigningKey>>>,
    allowed: Arc<[IpNet]>,
    timeout: Duration,
}

impl Sender {
    /// A sender configured from `config`.
    ///
    /// # Errors
    ///
    /// If the TLS backend cannot be initialised.
    pub fn new(config: &Config) -> Result<Self, reqwest::Error> {
        let allowed: Arc<[IpNet]> = config.allowed_cidrs.clone().into();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would do the resolving, out of the egress policy's reach.
            .no_proxy()
            .dns_resolver(Arc::new(EgressResolver::new(Arc::clone(&allowed))))
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .user_agent(USER_AGENT)
            .build()?;
        Ok(Self {
            client,
            keys: config.signing_keys.clone().into(),
            caller_keys: Arc::new(config.caller_keys.clone()),
            allowed,
            timeout: config.timeout,
        })
    }

    /// Request-time style check of a webhook URL, repeated before every
    /// attempt: IP-literal hosts bypass the resolver, so this is their check.
    ///
    /// # Errors
    ///
    /// [`UrlRefusal`] if the URL may not be called.
    pub fn check(&self, url: &str) -> Result<Url, UrlRefusal> {
        egress_policy::check_url(url, &self.allowed)
    }

    /// The address `host` resolves to (first vetted one), to bound a
    /// destination by address as well as by name. `None` if it does not
    /// resolve to an allowed address: the attempt then fails on its own.
    pub async fn resolve(&self, host: &str, port: u16) -> Option<std::net::SocketAddr> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<std::net::IpAddr>() {
            return Some(std::net::SocketAddr::new(ip, port));
        }
        let addrs = egress_policy::resolve_allowed(host, port, &self.allowed).await;
        addrs.ok()?.into_iter().next()
    }

    /// Make one attempt. Never fails: every outcome is a report.
    pub async fn send(&self, delivery: Delivery<'_>) -> AttemptReport {
        let timestamp = delivery.now.0 / 1000;
        let keys = delivery
            .caller
            .and_then(|c| self.caller_keys.get(c))
            .map_or(&self.keys[..], |k| &k[..]);
        let signature = signature_header(keys, delivery.job_id, timestamp, delivery.body);
        let mut request = self
            .client
            .post(delivery.url.clone())
            .header(CONTENT_TYPE, "application/json")
            .header("webhook-id", delivery.job_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(delivery.body.to_vec());
        if let Ok(value) = HeaderValue::from_str(delivery.request_id) {
            request = request.header("x-request-id", value);
        }
        let started = Instant::now();
        let result = request.send().await;
        let elapsed = |started: Instant| started.elapsed().as_millis() as u64;
        match result {
            Err(err) => self.transport_failure(err, elapsed(started)),
            Ok(mut response) => {
                let status = response.status().as_u16();
                let retry_after = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let verdict = classify(status, retry_after.as_deref());
                let error = match verdict {
                    Verdict::Delivered => None,
                    Verdict::Failed(_) => Some(failure_text(status, &mut response).await),
                };
                AttemptReport {
                    status: Some(status),
                    error,
                    latency_ms: elapsed(started),
                    verdict,
                }
            }
        }
    }

    fn transport_failure(&self, err: reqwest::Error, latency_ms: u64) -> AttemptReport {
        if let Some(refusal) = blocked_by_resolver(&err) {
            return AttemptReport {
                latency_ms,
                ..AttemptReport::refused(refusal)
            };
        }
        let error = if err.is_timeout() {
            format!(
                "timed out after {}",
                humantime::format_duration(self.timeout)
            )
        } else {
            error_chain(&err.without_url())
        };
        AttemptReport {
            status: None,
            error: Some(error),
            latency_ms,
            verdict: Verdict::Failed(Failure::Transient { retry_after: None }),
        }
    }
}

/// Classify a response by status code and `Retry-After` (delay in seconds).
pub fn classify(status: u16, retry_after: Option<&str>) -> Verdict {
    match status {
        200..=299 => Verdict::Delivered,
        410 => Verdict::Failed(Failure::Permanent),
        429 | 503 => Verdict::Failed(Failure::Transient {
            retry_after: retry_after
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs),
        }),
        _ => Verdict::Failed(Failure::Transient { retry_after: None }),
    }
}

/// `HTTP 500 Internal Server Error: <start of the body>`.
async fn failure_text(status: u16, response: &mut reqwest::Response) -> String {
    let reason = response.status().canonical_reason().unwrap_or("");
    let mut snippet = Vec::new();
    while snippet.len() < BODY_SNIPPET {
        match response.chunk().await {
            Ok(Some(chunk)) => snippet.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    snippet.truncate(BODY_SNIPPET);
    let body = String::from_utf8_lossy(&snippet);
    let body = body.trim();
    let head = format!("HTTP {status} {reason}");
    let head = head.trim_end();
    if body.is_empty() {
        head.to_owned()
    } else {
        format!("{head}: {body}")
    }
}

/// The resolver's refusal, if that is what failed the request.
fn blocked_by_resolver(err: &reqwest::Error) -> Option<&ResolveRefusal> {
    let mut source = err.source();
    while let Some(e) = source {
        if let Some(refusal) = e.downcast_ref::<ResolveRefusal>()
            && refusal.is_blocked()
        {
            return Some(refusal);
        }
        source = e.source();
    }
    None
}

/// An error and its causes, `: `-separated (reqwest's own message is vague).
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let next = e.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const RETRY: Verdict = Verdict::Failed(Failure::Transient { retry_after: None });

    #[test]
    fn only_2xx_is_delivered() {
        for status in [200, 201, 202, 204, 299] {
            assert_eq!(classify(status, None), Verdict::Delivered, "{status}");
        }
        for status in [100, 301, 302, 307, 308, 400, 401, 404, 500, 502, 504] {
            assert_eq!(classify(status, None), RETRY, "{status}");
        }
    }

    #[test]
    fn gone_stops_retries() {
        assert_eq!(
            classify(410, Some("5")),
            Verdict::Failed(Failure::Permanent)
        );
    }

    #[test]
    fn retry_after_is_read_on_429_and_503_only() {
        let asked = |s| {
            Verdict::Failed(Failure::Transient {
                retry_after: Some(Duration::from_secs(s)),
            })
        };
        assert_eq!(classify(429, Some("120")), asked(120));
        assert_eq!(classify(503, Some(" 7 ")), asked(7));
        assert_eq!(classify(429, Some("Wed, 21 Oct 2015 07:28:00 GMT")), RETRY);
        assert_eq!(classify(429, None), RETRY);
        assert_eq!(classify(500, Some("120")), RETRY);
    }

    #[tokio::test]
    async fn names_resolving_to_blocked_addresses_are_refused_at_connect_time() {
        // `send` skips the URL check on purpose here: the resolver must refuse
        // on its own, since it is what guards the address actually dialled.
        let env = crate::config::Env::from_map([("WEBHOOK_TIMEOUT", "2s")]);
        let config = Config::from_env_with(&env).expect("config");
        let sender = Sender::new(&config).expect("client");
        let url = Url::parse("http://localhost:9/hook").expect("url");
        let delivery = Delivery {
            url: &url,
            job_id: "j",
            request_id: "r",
            body: b"{}",
            now: UnixMillis(0),
            caller: None,
        };
        let report = sender.send(delivery).await;
        assert_eq!(report.verdict, Verdict::Failed(Failure::Permanent));
        let error = report.error.unwrap_or_default();
        assert!(
            error.starts_with("refused target: localhost resolves to"),
            "{error}"
        );
        assert!(error.contains("loopback"), "{error}");
    }

    #[test]
    fn refused_targets_are_permanent_and_say_why() {
        let report = AttemptReport::refused("webhook address 10.0.0.1 is not allowed (private)");
        assert_eq!(report.verdict, Verdict::Failed(Failure::Permanent));
        assert_eq!(
            report.error.as_deref(),
            Some("refused target: webhook address 10.0.0.1 is not allowed (private)")
        );
    }
}
