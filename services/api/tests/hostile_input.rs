//! Hostile input: the request parsers never panic, and every answer they
//! give is one a caller can act on.
//!
//! `api::input::from_query` and `api::input::from_json` see whatever a
//! client sends. Over arbitrary strings and bytes, percent-encoded garbage,
//! escapes of invalid UTF-8, huge and empty values, repeated parameters, the
//! `callback_url` alias and odd or nested JSON, each property checks that:
//!
//! - nothing panics (proptest turns a panic into a failing, shrunk case);
//! - an `Ok` carries a non-empty message within the byte limit and, if any, a
//!   webhook URL that is absolute `http`/`https` with a host and no
//!   credentials;
//! - an `Err` renders, through `IntoResponse`, a 4xx with content-type
//!   `application/problem+json` and a JSON body whose `status` is the HTTP
//!   status.
//!
//! Two further properties pin meaning, not just shape: well-formed input
//! round-trips to the very message sent, and the query decoder agrees with
//! a strict reference decoder.
//!
//! The number of cases is `HOSTILE_CASES`, in total across the properties
//! (default 48,000, a few seconds in the debug profile). For a long run:
//! `HOSTILE_CASES=1000000 cargo test -p api --test hostile_input`.
//! Failures are not persisted to a regressions file; the failing input is in
//! the panic message.

use api::input::{Rules, SignInput, from_json, from_query};
use api::problem::ApiError;
use axum::http::header;
use axum::response::IntoResponse;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Properties sharing the `HOSTILE_CASES` total.
const PROPERTIES: u32 = 8;
/// Default total when `HOSTILE_CASES` is unset.
const DEFAULT_TOTAL: u32 = 48_000;

fn config() -> ProptestConfig {
    let total = std::env::var("HOSTILE_CASES")
        .ok()
        .and_then(|v| v.trim().replace('_', "").parse::<u32>().ok())
        .unwrap_or(DEFAULT_TOTAL);
    ProptestConfig {
        cases: total.div_ceil(PROPERTIES).max(1),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------- checks

/// The contract every outcome must meet, whatever the input.
fn check(outcome: Result<SignInput, ApiError>, rules: &Rules) -> Result<(), TestCaseError> {
    match outcome {
        Ok(input) => check_accepted(&input, rules),
        Err(error) => check_problem(error),
    }
}

fn check_accepted(input: &SignInput, rules: &Rules) -> Result<(), TestCaseError> {
    prop_assert!(!input.message.is_empty(), "accepted an empty message");
    prop_assert!(
        input.message.len() <= rules.max_message_bytes,
        "accepted {} bytes over a limit of {}",
        input.message.len(),
        rules.max_message_bytes
    );
    if let Some(hook) = &input.webhook_url {
        let url = url::Url::parse(hook)
            .map_err(|e| TestCaseError::fail(format!("webhook {hook:?} is not absolute: {e}")))?;
        prop_assert!(
            matches!(url.scheme(), "http" | "https"),
            "webhook scheme of {hook:?}"
        );
        prop_assert!(
            url.host_str().is_some_and(|h| !h.is_empty()),
            "webhook {hook:?} has no host"
        );
        prop_assert!(
            url.username().is_empty() && url.password().is_none(),
            "webhook {hook:?} has credentials"
        );
        // The SSRF oracle, independent of the guard's own range table: an
        // accepted literal address is public or explicitly allowed, and no
        // accepted name is a local one unless loopback is allowed (then the
        // names are checked by what they resolve to, at delivery).
        match url.host() {
            Some(url::Host::Ipv4(ip)) => prop_assert!(
                public_v4(ip) || allowed(rules, IpAddr::V4(ip)),
                "accepted a webhook to {ip} ({hook:?})"
            ),
            Some(url::Host::Ipv6(ip)) => prop_assert!(
                public_v6(ip) || allowed(rules, IpAddr::V6(ip)),
                "accepted a webhook to {ip} ({hook:?})"
            ),
            Some(url::Host::Domain(name)) => {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                let loopback_allowed = allowed(rules, IpAddr::V4(std::net::Ipv4Addr::LOCALHOST))
                    || allowed(rules, IpAddr::V6(std::net::Ipv6Addr::LOCALHOST));
                prop_assert!(
                    loopback_allowed || (name != "localhost" && !name.ends_with(".localhost")),
                    "accepted a webhook to {name} ({hook:?})"
                );
            }
            None => {}
        }
    }
    Ok(())
}

fn allowed(rules: &Rules, ip: IpAddr) -> bool {
    rules.allowed_cidrs.iter().any(|net| net.contains(&ip))
}

fn public_v4(ip: Ipv4Addr) -> bool {
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.octets()[0] == 0
        || ip.octets()[0] >= 224
        || (ip.octets()[0] == 100 && (64..128).contains(&ip.octets()[1])))
}

fn public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return public_v4(v4);
    }
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        || (first & 0xff00) == 0xff00)
}

/// Known ways to reach the machine's own or its cloud's private services
/// are each refused with a problem (the property above only checks what is
/// accepted; this checks that these are not).
#[test]
fn known_ssrf_targets_are_refused() {
    let rules = Rules {
        max_message_bytes: 1024,
        allowed_cidrs: vec![],
    };
    for hook in [
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/",
        "http://127.0.0.1/",
        "http://127.1/",
        "http://2130706433/",
        "http://0x7f000001/",
        "http://0177.0.0.1/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://10.0.0.1/",
        "http://192.168.1.1/",
        "http://0.0.0.0/",
        "http://[fe80::1]/",
        "http://localhost/",
        "http://LOCALHOST./",
        "http://a.localhost./",
        "http://user:pw@example.com/",
        "file:///etc/passwd",
        "gopher://example.com/",
    ] {
        let query = format!("message=hi&webhook_url={}", urlencode(hook));
        let outcome = from_query(Some(&query), &rules);
        assert!(outcome.is_err(), "{hook} was accepted: {outcome:?}");
    }
    let fine = from_query(
        Some("message=hi&webhook_url=https%3A%2F%2Fexample.com%2Fh"),
        &rules,
    );
    assert!(fine.is_ok(), "a public https URL was refused: {fine:?}");
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn check_problem(error: ApiError) -> Result<(), TestCaseError> {
    let shown = format!("{error:?}");
    let response = error.into_response();
    let status = response.status();
    prop_assert!(status.is_client_error(), "{shown} answered {status}");
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    prop_assert_eq!(content_type, Some("application/problem+json"), "{}", shown);
    let body = futures::executor::block_on(axum::body::to_bytes(response.into_body(), usize::MAX))
        .map_err(|e| TestCaseError::fail(format!("{shown}: body unreadable: {e}")))?;
    let json: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| TestCaseError::fail(format!("{shown}: body is not JSON: {e}")))?;
    prop_assert_eq!(
        json["status"].as_u64(),
        Some(u64::from(status.as_u16())),
        "{}",
        shown
    );
    prop_assert!(
        json["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("/problems/")),
        "{shown}: type"
    );
    prop_assert!(
        json["title"].is_string() && json["detail"].is_string(),
        "{shown}: title/detail"
    );
    Ok(())
}

// ------------------------------------------------------------ strategies

/// Limits from the smallest possible to the largest the config allows, and
/// allow-lists from none (the default) to everything.
fn rules() -> impl Strategy<Value = Rules> {
    let limit = prop_oneof![Just(1usize), Just(2), Just(16), Just(4096), Just(65_536)];
    let cidrs = prop_oneof![
        Just(vec![]),
        Just(vec!["127.0.0.0/8".parse().expect("cidr")]),
        Just(vec![
            "0.0.0.0/0".parse().expect("cidr"),
            "::/0".parse().expect("cidr")
        ]),
    ];
    (limit, cidrs).prop_map(|(max_message_bytes, allowed_cidrs)| Rules {
        max_message_bytes,
        allowed_cidrs,
    })
}

/// Every byte as `%XX`, upper or lower hex.
fn pct(bytes: &[u8], lower: bool) -> String {
    bytes
        .iter()
        .map(|b| {
            if lower {
                format!("%{b:02x}")
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Encode like a careful client: unreserved bytes as is, space as `+`,
/// everything else `%XX`.
fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Webhook-shaped strings: schemes, separators, credentials, hosts in every
/// spelling the SSRF guard must see through, ports and paths.
fn webhook_text() -> impl Strategy<Value = String> {
    let scheme = prop::sample::select(vec![
        "http",
        "https",
        "HTTPS",
        "hTTp",
        "ftp",
        "file",
        "javascript",
        "data",
        "ws",
        "gopher",
        "",
    ]);
    let sep = prop::sample::select(vec![
        "://", ":", ":/", ":///", "//", ":\\\\", "://\t", ": //",
    ]);
    let userinfo = prop::sample::select(vec![
        "", "", "", "user@", "user:pw@", ":@", "@", "a%40b@", "x:@",
    ]);
    let host = prop::sample::select(vec![
        "example.com",
        "EXAMPLE.com.",
        "127.0.0.1",
        "127.1",
        "2130706433",
        "0x7f000001",
        "0177.0.0.1",
        "[::1]",
        "[::ffff:127.0.0.1]",
        "[::ffff:169.254.169.254]",
        "169.254.169.254",
        "10.0.0.1",
        "192.168.1.1",
        "localhost",
        "LOCALHOST.",
        "a.localhost.",
        "xn--nxasmq6b",
        "bücher.de",
        "",
        "%00",
        "%2e%2e",
        "exa mple.com",
        "[fe80::1%25eth0]",
        "1.1.1.1",
        "[2606:4700::1111]",
        "0.0.0.0",
        "255.255.255.255",
        "[::]",
        "999.1.1.1",
        "[::1",
        "a..b",
    ]);
    let port = prop::sample::select(vec![
        "", "", ":80", ":0", ":65535", ":65536", ":-1", ":abc", ":",
    ]);
    let path = "[ -~]{0,24}";
    (scheme, sep, userinfo, host, port, path)
        .prop_map(|(s, sep, u, h, p, path)| format!("{s}{sep}{u}{h}{p}{path}"))
}

/// Raw text for a query value: as sent on the wire, possibly malformed.
fn query_value() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => Just(String::new()),
        // Printable ASCII as is, including stray `%`, `&`, `=`, `+`.
        6 => "[ -~]{0,40}",
        // Percent escapes of arbitrary bytes: invalid UTF-8, NUL, overlongs.
        6 => (prop::collection::vec(any::<u8>(), 0..48), any::<bool>()).prop_map(|(b, l)| pct(&b, l)),
        // Broken escapes: `%`, `%4`, `%zz`, `%+f`, `%%`, mixed with text.
        6 => "(%[0-9a-fA-Fg-zG-Z+\\-%. ]{0,2}|[a-z+]|%E2%82|%C0%AF|%ED%A0%80|%F4%90%80%80){0,16}",
        // Mostly valid ASCII escapes with near misses: one hex digit, a sign
        // (`%+f`, which `u8::from_str_radix` would take), a non-hex letter.
        4 => "([a-z]|%[2-7][0-9a-fA-F]|%[+\\-][0-9a-fA-F]|%[0-9a-f]|%g1|%0x){0,8}",
        // Any Unicode text, form-encoded properly.
        4 => any::<String>().prop_map(|s| form_encode(&s)),
        // Any Unicode text, raw (a lenient client).
        2 => any::<String>(),
        // Webhook-shaped, raw or encoded.
        4 => webhook_text(),
        4 => webhook_text().prop_map(|s| form_encode(&s)),
        // Huge: around and far past every limit, one- and multi-byte.
        1 => (0usize..70_000).prop_map(|n| "x".repeat(n)),
        1 => (0usize..20_000).prop_map(|n| "%C3%A9".repeat(n)),
        1 => prop::sample::select(vec![1usize, 2, 3, 15, 16, 17, 4095, 4096, 4097, 65_535, 65_536, 65_537])
            .prop_map(|n| "y".repeat(n)),
    ]
}

/// Parameter names: the real ones, spelled oddly, and anything else.
fn query_name() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => Just("message".to_owned()),
        3 => Just("webhook_url".to_owned()),
        3 => Just("callback_url".to_owned()),
        1 => prop::sample::select(vec![
            "mess%61ge", "%6D%65%73%73%61%67%65", "webhook%5Furl", "callback%5furl", "message+", "+message",
            "MESSAGE", "message[]", "message%00", "%", "%zz", "%ff", "", "=", "message%",
        ])
        .prop_map(str::to_owned),
        2 => "[ -~&&[^&=]]{0,12}",
    ]
}

/// A whole raw query: pairs with or without `=`, empty segments, repeats.
fn hostile_query() -> impl Strategy<Value = String> {
    let pair =
        (query_name(), prop::option::weighted(0.9, query_value())).prop_map(|(n, v)| match v {
            Some(v) => format!("{n}={v}"),
            None => n,
        });
    let joiner = prop::sample::select(vec!["&", "&", "&", "&&", "&=&", ";"]);
    (prop::collection::vec((pair, joiner), 0..7), any::<bool>()).prop_map(|(pairs, lead)| {
        let mut q = if lead {
            String::from("&")
        } else {
            String::new()
        };
        for (i, (p, j)) in pairs.into_iter().enumerate() {
            if i > 0 {
                q.push_str(j);
            }
            q.push_str(&p);
        }
        q
    })
}

/// JSON text for a value: every type, strings with hostile escapes (lone
/// surrogates, NUL), huge strings and deep nesting.
fn json_value_text() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(
            |f| serde_json::Number::from_f64(f).map_or(serde_json::Value::Null, Into::into)
        ),
        any::<String>().prop_map(serde_json::Value::from),
    ];
    let nested = leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            prop::collection::btree_map("message|webhook_url|\\PC{0,6}", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    });
    prop_oneof![
        6 => any::<String>().prop_map(|s| serde_json::to_string(&s).expect("string")),
        4 => webhook_text().prop_map(|s| serde_json::to_string(&s).expect("string")),
        3 => nested.prop_map(|v| v.to_string()),
        3 => prop::sample::select(vec![
            "\"\\ud800\"", "\"\\udc00\\ud800\"", "\"\\ud83d\\ude00\"", "\"\\u0000\"", "\"\\u00\"", "\"\\x41\"",
            "\"a\\\"", "\"\"", "\" \"", "\"\t\"", "\"\u{0}\"", "1e999999", "-0", "01", "NaN", "Infinity", "tru",
            "nul", "[]", "{}", "[", "{", "\"", "'single'", "\"\u{feff}\"", "\"\\/\\b\\f\\n\\r\\t\"",
        ])
        .prop_map(str::to_owned),
        1 => (1usize..300).prop_map(|d| format!("{}\"x\"{}", "[".repeat(d), "]".repeat(d))),
        1 => (1usize..300).prop_map(|d| format!("{}1{}", "{\"message\":".repeat(d), "}".repeat(d))),
        1 => (0usize..70_000).prop_map(|n| format!("\"{}\"", "z".repeat(n))),
        1 => (0usize..12_000).prop_map(|n| format!("\"{}\"", "\\u00e9".repeat(n))),
    ]
}

/// A JSON-ish body: objects with the real keys (escaped, aliased, repeated)
/// and odd ones, wrapped in odd framing.
fn hostile_json() -> impl Strategy<Value = Vec<u8>> {
    let key = prop_oneof![
        6 => Just("message".to_owned()),
        3 => Just("webhook_url".to_owned()),
        3 => Just("callback_url".to_owned()),
        2 => prop::sample::select(vec![
            "mess\\u0061ge", "Message", "message ", "", "extra", "__proto__", "webhook_url\\u0000", "\\ud800",
        ])
        .prop_map(str::to_owned),
        1 => "\\PC{0,8}".prop_map(|s| serde_json::to_string(&s).expect("string").trim_matches('"').to_owned()),
    ];
    let member = (key, json_value_text()).prop_map(|(k, v)| format!("\"{k}\":{v}"));
    let object = (
        prop::collection::vec(member, 0..5),
        prop::sample::select(vec![",", ",", ", ", ",,", " , "]),
    )
        .prop_map(|(members, sep)| format!("{{{}}}", members.join(sep)));
    let framing = prop::sample::select(vec![
        ("", ""),
        ("", ""),
        ("", ""),
        (" \n\t", " \r\n"),
        ("\u{feff}", ""),
        ("[", "]"),
        ("", "garbage"),
        ("", "{}"),
        ("", "\u{0}"),
        ("{\"outer\":", "}"),
    ]);
    let text = prop_oneof![
        8 => (object, framing).prop_map(|(o, (pre, post))| format!("{pre}{o}{post}")),
        2 => json_value_text(),
    ];
    // Sometimes corrupt the UTF-8 of an otherwise plausible body.
    (
        text,
        prop::option::weighted(0.1, (any::<prop::sample::Index>(), any::<u8>())),
    )
        .prop_map(|(t, corrupt)| {
            let mut bytes = t.into_bytes();
            if let Some((at, byte)) = corrupt
                && !bytes.is_empty()
            {
                let i = at.index(bytes.len());
                bytes[i] = byte | 0x80;
            }
            bytes
        })
}

// ------------------------------------------------------- reference decoder

/// What the query *should* decode to, by a strict reading of the format:
/// `%` must be followed by exactly two hex digits, `+` is a space, names are
/// always decoded, values only for the names we read, UTF-8 is required and
/// a parameter (counting the alias) may appear once.
fn reference_query(raw: &str) -> Result<(Option<String>, Option<String>), ()> {
    fn decode(s: &str) -> Result<String, ()> {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' => {
                    let (Some(h), Some(l)) = (b.get(i + 1), b.get(i + 2)) else {
                        return Err(());
                    };
                    let hex = |c: u8| (c as char).to_digit(16).ok_or(());
                    out.push((hex(*h)? * 16 + hex(*l)?) as u8);
                    i += 2;
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8(out).map_err(|_| ())
    }
    let (mut message, mut hook) = (None, None);
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let slot = match decode(name)?.as_str() {
            "message" => &mut message,
            "webhook_url" | "callback_url" => &mut hook,
            _ => continue,
        };
        if slot.is_some() {
            return Err(());
        }
        *slot = Some(decode(value)?);
    }
    Ok((message, hook))
}

// ------------------------------------------------------------ properties

proptest! {
    #![proptest_config(config())]

    /// Any text at all as the raw query, or none.
    #[test]
    fn query_of_any_text_is_answered(rules in rules(), raw in prop::option::weighted(0.97, any::<String>())) {
        check(from_query(raw.as_deref(), &rules), &rules)?;
    }

    /// Structured but hostile queries: odd names, broken escapes, invalid
    /// UTF-8, huge and empty values, repeats and the alias.
    #[test]
    fn hostile_query_is_answered(rules in rules(), raw in hostile_query()) {
        check(from_query(Some(&raw), &rules), &rules)?;
    }

    /// Arbitrary bytes, percent-encoded whole or as a `message` value.
    #[test]
    fn query_of_any_bytes_is_answered(
        rules in rules(),
        bytes in prop::collection::vec(any::<u8>(), 0..256),
        as_message in any::<bool>(),
        lower in any::<bool>(),
    ) {
        let encoded = pct(&bytes, lower);
        let raw = if as_message { format!("message={encoded}") } else { encoded };
        check(from_query(Some(&raw), &rules), &rules)?;
    }

    /// Any bytes as a JSON body.
    #[test]
    fn json_of_any_bytes_is_answered(rules in rules(), body in prop::collection::vec(any::<u8>(), 0..512)) {
        check(from_json(&body, &rules), &rules)?;
    }

    /// JSON-shaped hostility: wrong types, nesting, escaped and repeated
    /// keys, the alias, lone surrogates, huge strings, odd framing.
    #[test]
    fn hostile_json_is_answered(rules in rules(), body in hostile_json()) {
        check(from_json(&body, &rules), &rules)?;
    }

    /// A well-formed query carries the exact message, however it is encoded.
    #[test]
    fn any_message_round_trips_through_the_query(
        rules in rules(),
        message in prop_oneof![4 => any::<String>(), 1 => "\\PC{1,3}".prop_map(|s| s.repeat(3000))],
        encoding in 0u8..3,
        alias in any::<bool>(),
        hook in prop::option::of(prop::sample::select(vec!["https://example.com/h?a=1&b=2", "http://1.1.1.1:8080/x"])),
    ) {
        let encoded = match encoding {
            0 => form_encode(&message),
            1 => pct(message.as_bytes(), false),
            _ => pct(message.as_bytes(), true),
        };
        let mut raw = format!("message={encoded}");
        if let Some(h) = hook {
            let name = if alias { "callback_url" } else { "webhook_url" };
            raw = format!("{name}={}&{raw}", form_encode(h));
        }
        let outcome = from_query(Some(&raw), &rules);
        if message.is_empty() || message.len() > rules.max_message_bytes {
            prop_assert!(outcome.is_err(), "accepted {} bytes with a limit of {}", message.len(), rules.max_message_bytes);
            check(outcome, &rules)?;
        } else {
            let input = outcome.map_err(|e| TestCaseError::fail(format!("refused a valid query {raw:?}: {e:?}")))?;
            prop_assert_eq!(&input.message, &message);
            prop_assert_eq!(input.webhook_url.is_some(), hook.is_some());
            check_accepted(&input, &rules)?;
        }
    }

    /// A well-formed JSON body carries the exact message, under either key
    /// for the webhook.
    #[test]
    fn any_message_round_trips_through_json(
        rules in rules(),
        message in any::<String>(),
        alias in any::<bool>(),
        hook in prop::option::of(prop::sample::select(vec!["https://example.com/h", "http://[2606:4700::1111]/"])),
    ) {
        let mut body = serde_json::json!({ "message": message });
        if let Some(h) = hook {
            body[if alias { "callback_url" } else { "webhook_url" }] = serde_json::json!(h);
        }
        let outcome = from_json(body.to_string().as_bytes(), &rules);
        if message.is_empty() || message.len() > rules.max_message_bytes {
            prop_assert!(outcome.is_err());
            check(outcome, &rules)?;
        } else {
            let input = outcome.map_err(|e| TestCaseError::fail(format!("refused a valid body {body}: {e:?}")))?;
            prop_assert_eq!(&input.message, &message);
            prop_assert_eq!(input.webhook_url.is_some(), hook.is_some());
            check_accepted(&input, &rules)?;
        }
    }
}

proptest! {
    #![proptest_config(config())]

    /// The decoder accepts exactly what a strict reference decoder accepts,
    /// and reads the same message.
    ///
    /// Escapes with a sign (`%+f`) are left out here: see
    /// `a_signed_percent_escape_is_refused`.
    #[test]
    fn query_decoding_agrees_with_a_strict_reference(rules in rules(), raw in hostile_query()) {
        let outcome = from_query(Some(&raw), &rules);
        match (reference_query(&raw), &outcome) {
            (Err(()), Ok(input)) => {
                return Err(TestCaseError::fail(format!("accepted malformed query {raw:?} as {input:?}")));
            }
            (Ok((Some(message), _)), Ok(input)) => prop_assert_eq!(&input.message, &message, "query {:?}", raw),
            (Ok((None, _)), Ok(input)) => {
                return Err(TestCaseError::fail(format!("query {raw:?} has no message but gave {input:?}")));
            }
            (_, Err(_)) => {}
        }
        check(outcome, &rules)?;
    }
}

/// Cases found worth keeping as plain examples.
#[test]
fn known_hostile_queries() {
    let rules = Rules {
        max_message_bytes: 4096,
        allowed_cidrs: vec![],
    };
    for raw in [
        "",
        "&",
        "&&&",
        "=",
        "message",
        "message=",
        "message=%",
        "message=%4",
        "message=%zz",
        "message=%C0%AF",
        "message=%ED%A0%80",
        "message=%F4%90%80%80",
        "message=a&message=a",
        "message=a&callback_url=x&webhook_url=y",
        "mess%61ge=a&message=b",
        "%zz=1&message=a",
        "message=a&webhook_url=http://2130706433/",
        "message=a&webhook_url=http://[::ffff:169.254.169.254]/",
        "message=a&webhook_url=https://u:p@example.com/",
        "message=a&webhook_url=javascript:alert(1)",
    ] {
        check(from_query(Some(raw), &rules), &rules).unwrap_or_else(|e| panic!("{raw:?}: {e}"));
    }
    for body in [
        &b""[..], b"null", b"[]", b"{}", b"{\"message\":null}", b"{\"message\":\"\\ud800\"}",
        b"{\"message\":\"a\",\"message\":\"b\"}", b"{\"message\":\"a\",\"webhook_url\":\"https://example.com/\",\"callback_url\":\"https://example.com/\"}",
        b"{\"mess\\u0061ge\":\"a\"}", b"\xef\xbb\xbf{\"message\":\"a\"}", b"{\"message\":\"a\"}garbage",
    ] {
        check(from_json(body, &rules), &rules).unwrap_or_else(|e| panic!("{:?}: {e}", String::from_utf8_lossy(body)));
    }
}

/// `%` must be followed by two hex digits; `u8::from_str_radix` also takes
/// a leading `+`, so `%+f` decodes to byte 0x0f instead of being refused.
/// Found by the reference property above (now fixed in `input.rs`).
#[test]
fn a_signed_percent_escape_is_refused() {
    let rules = Rules {
        max_message_bytes: 4096,
        allowed_cidrs: vec![],
    };
    for raw in [
        "message=%+f",
        "message=a%+4b",
        "message=x&%+6=y",
        "message=x&webhook_url=https://example.com/%+1",
    ] {
        assert!(
            reference_query(raw).is_err(),
            "{raw:?}: the reference refuses it"
        );
        let outcome = from_query(Some(raw), &rules);
        assert!(outcome.is_err(), "{raw:?} was accepted as {outcome:?}");
    }
}
