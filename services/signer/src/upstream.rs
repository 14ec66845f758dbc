//! The upstream signing API: one call, and what its answer means.

use std::time::Duration;

/// What one upstream call told us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallOutcome {
    /// 2xx with a plausible signature.
    Signed(String),
    /// 502, other 5xx, 429, a timeout, a connection error or a garbage body:
    /// the message may succeed later.
    RetryLater(String),
    /// 401/403: our credentials are wrong. Keep the jobs, pause, alert.
    Misconfigured(String),
    /// Any other 4xx: this message will never be signed.
    Rejected(String),
}

/// Classify an HTTP answer (pure, unit tested).
pub fn classify(status: u16, body: &str) -> CallOutcome {
    match status {
        200..=299 => {
            let sig = body.trim();
            if looks_like_signature(sig) {
                CallOutcome::Signed(sig.to_owned())
            } else {
                CallOutcome::RetryLater(format!("{status} with a body that is not a signature"))
            }
        }
        401 | 403 => {
            CallOutcome::Misconfigured(format!("upstream refused our credentials ({status})"))
        }
        429 => CallOutcome::RetryLater("429 rate limited".to_owned()),
        400..=499 => CallOutcome::Rejected(format!(
            "upstream rejected the message ({status}): {}",
            clip(body)
        )),
        _ => CallOutcome::RetryLater(format!("{status}")),
    }
}

/// A base64/base64url string of sensible length (an RSA signature is 344
/// characters for 2048-bit keys); anything else, e.g. an HTML error page
/// sent with 200, is not a signature.
fn looks_like_signature(s: &str) -> bool {
    (16..=4096).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'+' | b'/' | b'='))
}

fn clip(s: &str) -> String {
    s.chars().take(200).collect()
}

/// HTTP client for the upstream.
#[derive(Clone)]
pub struct Upstream {
    http: reqwest::Client,
    sign_url: String,
    api_key: String,
}

impl Upstream {
    /// A client for `base_url` with a per-call `timeout`.
    pub fn new(base_url: &str, api_key: &str, timeout: Duration) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            http,
            sign_url: format!("{}/crypto/sign", base_url.trim_end_matches('/')),
            api_key: api_key.to_owned(),
        })
    }

    /// Ask the upstream to sign `message`, all over by `deadline`: the
    /// limiter counts the call as able to arrive until then, and no later.
    /// `None` when the deadline had passed before anything was sent. Never
    /// fails otherwise: transport errors are a [`CallOutcome::RetryLater`].
    pub async fn sign(&self, message: &str, deadline: tokio::time::Instant) -> Option<CallOutcome> {
        let left = deadline.checked_duration_since(tokio::time::Instant::now())?;
        if left < Duration::from_millis(50) {
            return None;
        }
        let call = async {
            let response = self
                .http
                .get(&self.sign_url)
                .query(&[("message", message)])
                .header("Authorization", &self.api_key)
                .timeout(left)
                .send()
                .await;
            let response = match response {
                Ok(r) => r,
                Err(e) if e.is_timeout() => return CallOutcome::RetryLater("timed out".to_owned()),
                Err(e) => return CallOutcome::RetryLater(format!("transport error: {e}")),
            };
            let status = response.status().as_u16();
            match response.text().await {
                Ok(body) => classify(status, &body),
                Err(e) => CallOutcome::RetryLater(format!("{status}, body unreadable: {e}")),
            }
        };
        // reqwest's timeout covers connect, send and body; this one also
        // covers anything before the first poll.
        Some(
            tokio::time::timeout_at(deadline, call)
                .await
                .unwrap_or_else(|_| CallOutcome::RetryLater("timed out".to_owned())),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_every_outcome_class() {
        let sig = "a".repeat(342) + "-_";
        assert_eq!(classify(200, &format!("{sig}\n")), CallOutcome::Signed(sig));
        assert!(matches!(
            classify(200, "<html>oops</html>"),
            CallOutcome::RetryLater(_)
        ));
        assert!(matches!(classify(200, ""), CallOutcome::RetryLater(_)));
        assert!(matches!(
            classify(502, "bad gateway"),
            CallOutcome::RetryLater(_)
        ));
        assert!(matches!(classify(500, ""), CallOutcome::RetryLater(_)));
        assert!(matches!(classify(503, ""), CallOutcome::RetryLater(_)));
        assert!(matches!(classify(429, ""), CallOutcome::RetryLater(_)));
        assert!(matches!(classify(401, ""), CallOutcome::Misconfigured(_)));
        assert!(matches!(classify(403, ""), CallOutcome::Misconfigured(_)));
        assert!(matches!(
            classify(400, "too long"),
            CallOutcome::Rejected(_)
        ));
        assert!(matches!(classify(404, ""), CallOutcome::Rejected(_)));
    }
}
