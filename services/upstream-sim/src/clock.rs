//! Wall-clock readings for the audit and the inbox.
//!
//! Only the HTTP shell reads the clock; the decision modules take time as an
//! argument. The audit uses wall-clock Unix milliseconds because tests compare
//! them with their own clocks; degradations use a monotonic offset instead
//! (see [`crate::failure_model`]).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX)
}

/// RFC 3339 rendering (UTC, millisecond precision) of Unix milliseconds.
pub fn rfc3339(ms: u64) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(ms);
    humantime::format_rfc3339_millis(at).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_rfc3339_with_millis() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
    }
}
