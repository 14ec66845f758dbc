//! A small HTTP/1.1 load generator for `scripts/bench-hot-path.sh`.
//!
//! Two modes:
//!
//! - fixed rate (`--rate R`): request *i* is due at `start + i/R`; its
//!   latency is counted from when it was due, not from when a connection
//!   was free to send it, so a stall shows up in the percentiles instead of
//!   quietly lowering the rate (wrk2's correction for coordinated omission);
//! - closed loop (`--rate 0`): each connection sends its next request as
//!   soon as the previous answer is in.
//!
//! Requests stop after `--count` or `--duration`, whichever comes first;
//! answers still out at `duration + timeout` are counted as errors, so a
//! run always ends. `{n}` in the URL is replaced by the request's number
//! (distinct messages per request). Only plain `http://` is supported, and
//! the script points it only at 127.0.0.1.
//!
//! Run: `cargo run --release -p api --example load -- --url
//! 'http://127.0.0.1:8080/crypto/sign?message=bench' --rate 1000 --duration
//! 10s --connections 50`. Prints one line of `key=value`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// What to send, how fast, for how long.
#[derive(Debug, Clone)]
struct Plan {
    /// `host:port` to connect to.
    addr: String,
    /// Value of the `Host` header.
    host: String,
    /// Path and query; `{n}` is replaced by the request number.
    path: String,
    /// Requests per second; 0 for closed loop.
    rate: f64,
    /// Most requests to send.
    count: u64,
    /// Longest time to keep sending.
    duration: Duration,
    /// Concurrent keep-alive connections.
    connections: usize,
    /// Longest wait for one answer.
    timeout: Duration,
    /// Printed first on the result line.
    label: String,
}

/// What one connection saw.
#[derive(Default)]
struct Tally {
    /// Latencies in microseconds of answered requests.
    latencies_us: Vec<u64>,
    /// The same answers' latencies from when the request was written, its
    /// connection open (time in the server's accept queue included, the
    /// handshake and its SYN retries left out).
    from_write_us: Vec<u64>,
    /// Answers by HTTP status.
    statuses: BTreeMap<u16, u64>,
    /// Requests without an answer (connect error, timeout, bad response).
    errors: u64,
}

fn usage() -> ! {
    eprintln!(
        "usage: load --url http://HOST:PORT/PATH [--rate R] [--count N] [--duration 10s] \
         [--connections C] [--timeout 10s] [--label NAME]"
    );
    std::process::exit(2)
}

fn parse_args() -> Plan {
    let mut args = std::env::args().skip(1);
    let mut url = None;
    let mut plan = Plan {
        addr: String::new(),
        host: String::new(),
        path: String::new(),
        rate: 0.0,
        count: u64::MAX,
        duration: Duration::from_secs(10),
        connections: 50,
        timeout: Duration::from_secs(10),
        label: "load".into(),
    };
    while let Some(flag) = args.next() {
        let Some(value) = args.next() else { usage() };
        let bad = |what: &str| -> ! {
            eprintln!("{flag}: {value:?} is not {what}");
            std::process::exit(2)
        };
        match flag.as_str() {
            "--url" => url = Some(value.clone()),
            "--rate" => plan.rate = value.parse().unwrap_or_else(|_| bad("a number")),
            "--count" => plan.count = value.parse().unwrap_or_else(|_| bad("a whole number")),
            "--duration" => {
                plan.duration =
                    humantime::parse_duration(&value).unwrap_or_else(|_| bad("a duration"))
            }
            "--connections" => {
                plan.connections = value.parse().unwrap_or_else(|_| bad("a whole number"))
            }
            "--timeout" => {
                plan.timeout =
                    humantime::parse_duration(&value).unwrap_or_else(|_| bad("a duration"))
            }
            "--label" => plan.label = value.clone(),
            _ => usage(),
        }
    }
    let Some(url) = url else { usage() };
    let Some(rest) = url.strip_prefix("http://") else {
        eprintln!("--url must start with http://");
        std::process::exit(2)
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    plan.host = authority.to_owned();
    plan.addr = if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    plan.path = if path.is_empty() {
        "/".into()
    } else {
        path.to_owned()
    };
    plan.connections = plan.connections.max(1);
    plan
}

#[tokio::main]
async fn main() {
    let plan = Arc::new(parse_args());
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let workers: Vec<_> = (0..plan.connections)
        .map(|_| tokio::spawn(connection(plan.clone(), next.clone(), start)))
        .collect();
    let mut total = Tally::default();
    for w in workers {
        match w.await {
            Ok(t) => {
                total.latencies_us.extend(t.latencies_us);
                total.from_write_us.extend(t.from_write_us);
                for (s, n) in t.statuses {
                    *total.statuses.entry(s).or_default() += n;
                }
                total.errors += t.errors;
            }
            Err(_) => total.errors += 1,
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let mut l = total.latencies_us;
    l.sort_unstable();
    let pct = |p: f64| -> f64 {
        if l.is_empty() {
            return f64::NAN;
        }
        let i = ((p * l.len() as f64).ceil() as usize).clamp(1, l.len()) - 1;
        l[i] as f64 / 1000.0
    };
    let mut w = std::mem::take(&mut total.from_write_us);
    w.sort_unstable();
    let write_max = w.last().map_or(f64::NAN, |us| *us as f64 / 1000.0);
    let write_p99 = if w.is_empty() {
        f64::NAN
    } else {
        w[((0.99 * w.len() as f64).ceil() as usize).clamp(1, w.len()) - 1] as f64 / 1000.0
    };
    let statuses: Vec<String> = total
        .statuses
        .iter()
        .map(|(s, n)| format!("{s}:{n}"))
        .collect();
    println!(
        "{} requests={} rps={:.1} p50_ms={:.2} p99_ms={:.2} max_ms={:.2} write_p99_ms={:.2} write_max_ms={:.2} status={} errors={} elapsed_s={:.2}",
        plan.label,
        l.len() as u64 + total.errors,
        l.len() as f64 / elapsed,
        pct(0.50),
        pct(0.99),
        pct(1.0),
        write_p99,
        write_max,
        if statuses.is_empty() {
            "-".into()
        } else {
            statuses.join(",")
        },
        total.errors,
        elapsed,
    );
}

/// One keep-alive connection taking request numbers until the plan is done.
async fn connection(plan: Arc<Plan>, next: Arc<AtomicU64>, start: Instant) -> Tally {
    let mut tally = Tally::default();
    let mut stream: Option<TcpStream> = None;
    let mut buf = Vec::with_capacity(8192);
    let stop_sending = start + plan.duration;
    let hard_stop = stop_sending + plan.timeout;
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= plan.count {
            break;
        }
        let due = if plan.rate > 0.0 {
            start + Duration::from_secs_f64(i as f64 / plan.rate)
        } else {
            Instant::now()
        };
        if due >= stop_sending {
            break;
        }
        tokio::time::sleep_until(due).await;
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: bench-load\r\n\r\n",
            plan.path.replace("{n}", &i.to_string()),
            plan.host
        );
        let deadline = (Instant::now() + plan.timeout).min(hard_stop);
        match tokio::time::timeout_at(
            deadline,
            exchange(&plan.addr, &mut stream, &request, &mut buf),
        )
        .await
        {
            Ok(Ok((status, wrote))) => {
                tally.latencies_us.push(due.elapsed().as_micros() as u64);
                tally.from_write_us.push(wrote.elapsed().as_micros() as u64);
                *tally.statuses.entry(status).or_default() += 1;
            }
            Ok(Err(_)) | Err(_) => {
                tally.errors += 1;
                stream = None;
            }
        }
        if Instant::now() >= hard_stop {
            break;
        }
    }
    tally
}

/// Send one request on the connection (opening it if needed) and read the
/// answer; returns its status.
async fn exchange(
    addr: &str,
    stream: &mut Option<TcpStream>,
    request: &str,
    buf: &mut Vec<u8>,
) -> std::io::Result<(u16, Instant)> {
    if stream.is_none() {
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        *stream = Some(s);
    }
    let Some(s) = stream.as_mut() else {
        return Err(std::io::Error::other("no connection"));
    };
    let wrote = Instant::now();
    s.write_all(request.as_bytes()).await?;
    buf.clear();
    let head_end = loop {
        if let Some(p) = find(buf, b"\r\n\r\n") {
            break p + 4;
        }
        read_more(s, buf).await?;
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(std::io::Error::other)?;
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other("bad status line"))?;
    let mut length = None;
    let mut close = false;
    for line in head.lines().skip(1) {
        if let Some((name, value)) = line.split_once(':') {
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
            match name.as_str() {
                "content-length" => length = value.parse::<usize>().ok(),
                "transfer-encoding" => {
                    return Err(std::io::Error::other("chunked answers are not supported"));
                }
                "connection" => close = value.eq_ignore_ascii_case("close"),
                _ => {}
            }
        }
    }
    let want = head_end + length.unwrap_or(0);
    while buf.len() < want {
        read_more(s, buf).await?;
    }
    if close {
        *stream = None;
    }
    Ok((status, wrote))
}

async fn read_more(s: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<()> {
    let mut chunk = [0u8; 8192];
    let n = s.read(&mut chunk).await?;
    if n == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "connection closed",
        ));
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
