//! A demo webhook receiver, so one `docker compose up` shows the whole loop.
//!
//! The gateway answers slow sign requests with 202 and later POSTs the result
//! to a caller-supplied webhook URL. Pointing that URL at the simulator's
//! `/webhooks/inbox` lets a demo (or a system test) see the delivery without
//! running another service. Deliveries are kept in memory, bounded.

use std::collections::{BTreeMap, VecDeque};

use axum::http::HeaderMap;
use serde::Serialize;

/// How many deliveries are kept; older ones are dropped first.
pub const CAPACITY: usize = 1000;

/// One received webhook.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Delivery {
    /// Receipt time, RFC 3339.
    pub received_at: String,
    /// Receipt time, Unix milliseconds.
    pub received_at_ms: u64,
    /// Every request header, lower-case name to value; repeated headers are
    /// joined with `", "`.
    pub headers: BTreeMap<String, String>,
    /// The body as JSON if it parses, otherwise as a (lossy UTF-8) string.
    pub body: serde_json::Value,
}

impl Delivery {
    /// Builds a delivery from the parts of a request.
    pub fn new(received_at_ms: u64, received_at: String, headers: &HeaderMap, body: &[u8]) -> Self {
        let mut map: BTreeMap<String, String> = BTreeMap::new();
        for (name, value) in headers {
            let value = String::from_utf8_lossy(value.as_bytes());
            map.entry(name.as_str().to_owned())
                .and_modify(|v| {
                    v.push_str(", ");
                    v.push_str(&value);
                })
                .or_insert_with(|| value.into_owned());
        }
        let body = serde_json::from_slice(body).unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(body).into_owned())
        });
        Self {
            received_at,
            received_at_ms,
            headers: map,
            body,
        }
    }
}

/// The bounded list of deliveries, oldest first.
#[derive(Debug, Default)]
pub struct Inbox {
    deliveries: VecDeque<Delivery>,
}

impl Inbox {
    /// Stores a delivery, dropping the oldest beyond [`CAPACITY`].
    pub fn push(&mut self, delivery: Delivery) {
        if self.deliveries.len() == CAPACITY {
            self.deliveries.pop_front();
        }
        self.deliveries.push_back(delivery);
    }

    /// All deliveries, newest last.
    pub fn list(&self) -> Vec<Delivery> {
        self.deliveries.iter().cloned().collect()
    }

    /// Forgets every delivery.
    pub fn clear(&mut self) {
        self.deliveries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn keeps_json_bodies_as_json_and_others_as_text() {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        headers.append("x-multi", HeaderValue::from_static("a"));
        headers.append("x-multi", HeaderValue::from_static("b"));
        let json = Delivery::new(1, "t".into(), &headers, br#"{"signature":"abc"}"#);
        assert_eq!(json.body["signature"], "abc");
        assert_eq!(json.headers["x-multi"], "a, b");
        let text = Delivery::new(1, "t".into(), &headers, b"not json");
        assert_eq!(text.body, serde_json::Value::String("not json".into()));
    }

    #[test]
    fn is_bounded() {
        let mut inbox = Inbox::default();
        for i in 0..(CAPACITY as u64 + 5) {
            inbox.push(Delivery::new(i, String::new(), &HeaderMap::new(), b""));
        }
        let list = inbox.list();
        assert_eq!(list.len(), CAPACITY);
        assert_eq!(list[0].received_at_ms, 5);
        assert_eq!(list[CAPACITY - 1].received_at_ms, CAPACITY as u64 + 4);
    }
}
