#!/usr/bin/env python3
"""End-to-end check of a running signing gateway (compose or local processes).

Python 3.11 standard library only. It:

1. starts a webhook receiver (http.server in a thread) on --receiver-bind,
   recording every POST (webhook-id header, JSON body) and verifying the
   Standard Webhooks signature when --webhook-secret is given;
2. sends a burst of --count distinct messages (unique per run) at once to
   the api, each with webhook_url=--receiver-url (the receiver as the
   notifier reaches it), alternating GET and POST, timing every answer;
3. follows each 202's Location until the job is done and its webhook
   delivered, while printing `webhooks: k/n` progress lines;
4. checks the product's promises and prints a summary with figures:
   - every answer came within 2 s and is a 200 or a 202;
   - every 200 carries a signature the simulator verifies, and gets no webhook;
   - every 202 job ends `signed` with its webhook `delivered`, and got
     webhooks with exactly one distinct webhook-id (exactly one delivery
     unless --allow-redelivery), type signature.completed, data.id = the job
     id, data.signature verifying (and a valid webhook-signature);
   - the simulator's audit shows no rate-limit violation (merged with an
     audit saved earlier by --audit-before, for runs where the simulator
     restarts; the sliding-window rule is then re-applied across the merge).

Exit status 0 when every check passes, 1 otherwise, 2 on bad usage.

Machine-readable output for drivers (each line flushed):
  phase: receiver listening on HOST:PORT
  phase: burst sent: ...
  webhooks: K/N (...)          whenever K (202 jobs with a webhook) changes
  phase: checking
  SUMMARY {json}
  RESULT: PASS | RESULT: FAIL
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import http.server
import json
import math
import secrets
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

ANSWER_LIMIT_S = 2.0


def say(line: str) -> None:
    print(line, flush=True)


# --------------------------------------------------------------------- HTTP


@dataclass
class Response:
    status: int  # 0: no HTTP answer (connection error, timeout)
    headers: dict[str, str]
    body: Any  # parsed JSON, else text
    error: str | None = None


def request(method: str, url: str, body: Any = None, timeout: float = 10.0) -> Response:
    data = None
    headers = {"Accept": "application/json"}
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
            status, hdrs = r.status, {k.lower(): v for k, v in r.headers.items()}
    except urllib.error.HTTPError as e:
        raw = e.read()
        status, hdrs = e.code, {k.lower(): v for k, v in e.headers.items()}
    except Exception as e:  # noqa: BLE001 - any transport failure is an outcome
        return Response(0, {}, None, f"{type(e).__name__}: {e}")
    text = raw.decode("utf-8", "replace")
    try:
        parsed: Any = json.loads(text) if text else None
    except ValueError:
        parsed = text
    return Response(status, hdrs, parsed)


# ----------------------------------------------------------------- receiver


@dataclass
class Delivery:
    at: float  # time.monotonic()
    path: str
    webhook_id: str
    signature_ok: bool | None  # None: no secret to check with
    body: Any


class Receiver:
    """Records every POST; answers 204."""

    def __init__(self, bind: str, secret: bytes | None) -> None:
        host, _, port = bind.rpartition(":")
        self.secret = secret
        self.lock = threading.Lock()
        self.deliveries: list[Delivery] = []
        self.changed = threading.Condition(self.lock)
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - http.server API
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                receiver.record(self.path, self.headers, raw)
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self) -> None:  # noqa: N802 - reachability probe
                payload = b"e2e webhook receiver\n"
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer((host or "0.0.0.0", int(port)), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()

    def record(self, path: str, headers: Any, raw: bytes) -> None:
        webhook_id = headers.get("webhook-id", "")
        ok = None
        if self.secret is not None:
            ok = verify_standard_webhook(
                self.secret, webhook_id, headers.get("webhook-timestamp", ""), raw,
                headers.get("webhook-signature", ""),
            )
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw.decode("utf-8", "replace")
        with self.changed:
            self.deliveries.append(Delivery(time.monotonic(), path, webhook_id, ok, body))
            self.changed.notify_all()

    def snapshot(self) -> list[Delivery]:
        with self.lock:
            return list(self.deliveries)


def verify_standard_webhook(key: bytes, msg_id: str, timestamp: str, body: bytes, header: str) -> bool:
    """Standard Webhooks: base64(HMAC-SHA256(key, f"{id}.{timestamp}.{body}")),
    header `webhook-signature` = space-separated `v1,<sig>` entries."""
    if not msg_id or not timestamp:
        return False
    signed = msg_id.encode() + b"." + timestamp.encode() + b"." + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    for entry in header.split():
        version, _, sig = entry.partition(",")
        if version == "v1" and hmac.compare_digest(sig, expected):
            return True
    return False


def parse_secret(text: str) -> bytes:
    if not text.startswith("whsec_"):
        raise ValueError("--webhook-secret must look like whsec_<base64>")
    encoded = text[len("whsec_"):]
    return base64.b64decode(encoded + "=" * (-len(encoded) % 4))


# -------------------------------------------------------------------- burst


@dataclass
class Answer:
    index: int
    message: str
    method: str
    status: int
    latency: float
    body: Any
    location: str | None
    retry_after: str | None
    error: str | None

    @property
    def job_id(self) -> str | None:
        return self.body.get("id") if isinstance(self.body, dict) else None


def send_burst(apis: list[str], messages: list[str], webhook_url: str, methods: list[str]) -> list[Answer]:
    answers: list[Answer | None] = [None] * len(messages)
    gate = threading.Barrier(len(messages))

    def one(i: int, message: str) -> None:
        method = methods[i % len(methods)]
        api = apis[i % len(apis)]
        if method == "POST":
            url, body = f"{api}/crypto/sign", {"message": message, "webhook_url": webhook_url}
        else:
            query = urllib.parse.urlencode({"message": message, "webhook_url": webhook_url})
            url, body = f"{api}/crypto/sign?{query}", None
        try:
            gate.wait(timeout=30)
        except threading.BrokenBarrierError:
            pass
        started = time.monotonic()
        r = request(method, url, body, timeout=10)
        latency = time.monotonic() - started
        answers[i] = Answer(i, message, method, r.status, latency, r.body,
                            r.headers.get("location"), r.headers.get("retry-after"), r.error)

    threads = [threading.Thread(target=one, args=(i, m), daemon=True) for i, m in enumerate(messages)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [a for a in answers if a is not None]


# -------------------------------------------------------------------- audit


def sliding_window_figures(calls: list[dict], window_ms: int, limit: int) -> tuple[int, int]:
    """(violations, max_in_window) over counted calls, by the simulator's rules:
    a call is a violation if `limit` earlier counted calls arrived in
    (t - window, t]; max_in_window is the most counted calls in any [t, t + window)."""
    times = sorted(c["arrived_at_ms"] for c in calls if c.get("counted"))
    violations = 0
    lo = 0
    for i, t in enumerate(times):
        while times[lo] <= t - window_ms:
            lo += 1
        if i - lo >= limit:
            violations += 1
    most = 0
    hi = 0
    for i, t in enumerate(times):
        if hi < i:
            hi = i
        while hi + 1 < len(times) and times[hi + 1] < t + window_ms:
            hi += 1
        most = max(most, hi - i + 1)
    return violations, most


def load_calls(path: str, deadline: float) -> list[dict] | None:
    """The `calls` of a saved GET /admin/audit, waiting for the file."""
    while True:
        try:
            with open(path, encoding="utf-8") as f:
                return list(json.load(f)["calls"])
        except (OSError, ValueError, KeyError):
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.5)


# --------------------------------------------------------------------- main


def percentile(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)  # nearest rank
    rank = max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))
    return ordered[rank]


@dataclass
class Job:
    answer: Answer
    status_url: str
    last: dict | None = None
    done: bool = False
    poll_errors: int = 0


@dataclass
class Verdict:
    failures: list[str] = field(default_factory=list)

    def fail(self, text: str) -> None:
        self.failures.append(text)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--api", required=True,
                    help="api base URL, e.g. http://127.0.0.1:8080; several comma-separated (replicas): "
                         "the burst alternates between them, and each job's status is read from the last")
    ap.add_argument("--sim", required=True, help="simulator base URL, e.g. http://127.0.0.1:8081")
    ap.add_argument("--count", type=int, default=30, help="messages in the burst (default 30)")
    ap.add_argument("--receiver-bind", required=True, help="HOST:PORT the webhook receiver listens on")
    ap.add_argument("--receiver-url", required=True,
                    help="the receiver's URL as the notifier reaches it, e.g. http://host.docker.internal:PORT/hook")
    ap.add_argument("--timeout", type=float, default=180, help="seconds to wait for every job after the burst")
    ap.add_argument("--webhook-secret", help="whsec_<base64>: verify every webhook-signature with it")
    ap.add_argument("--allow-redelivery", action="store_true",
                    help="accept repeated deliveries if they carry the same webhook-id (crash scenarios)")
    ap.add_argument("--audit-before", metavar="FILE",
                    help="a GET /admin/audit saved before the simulator restarted; merged into the audit check "
                         "(waited for until --timeout)")
    ap.add_argument("--run-id", default=None, help="prefix making the messages unique (default: random)")
    ap.add_argument("--methods", default="GET,POST", help="request methods to alternate (default GET,POST)")
    ap.add_argument("--poll-interval", type=float, default=1.0, help="seconds between status polls of a job")
    ap.add_argument("--settle", type=float, default=3.0,
                    help="seconds to keep listening after the last expected webhook (late or duplicate deliveries)")
    ap.add_argument("--summary-json", metavar="FILE", help="also write the summary to FILE")
    args = ap.parse_args()

    if args.count < 1:
        ap.error("--count must be at least 1")
    methods = [m.strip().upper() for m in args.methods.split(",") if m.strip()]
    if not methods or any(m not in ("GET", "POST") for m in methods):
        ap.error("--methods takes GET and/or POST")
    secret = None
    if args.webhook_secret:
        try:
            secret = parse_secret(args.webhook_secret)
        except ValueError as e:
            ap.error(str(e))
    apis = [a.strip().rstrip("/") for a in args.api.split(",") if a.strip()]
    # Status is read from another replica than the one that took the
    # request (when there are several): any replica must know every job.
    api = apis[-1]
    sim = args.sim.rstrip("/")
    run_id = args.run_id or f"e2e-{time.strftime('%H%M%S')}-{secrets.token_hex(3)}"
    verdict = Verdict()

    receiver = Receiver(args.receiver_bind, secret)
    receiver.start()
    say(f"phase: receiver listening on {args.receiver_bind} (notifier sends to {args.receiver_url})")

    # ---- burst
    messages = [f"{run_id}-message-{i:03d}" for i in range(args.count)]
    burst_started = time.monotonic()
    answers = send_burst(apis, messages, args.receiver_url, methods)
    burst_took = time.monotonic() - burst_started
    by_status: dict[int, int] = {}
    for a in answers:
        by_status[a.status] = by_status.get(a.status, 0) + 1
    n200 = by_status.get(200, 0)
    n202 = by_status.get(202, 0)
    other = len(answers) - n200 - n202
    say(f"phase: burst sent: {len(answers)} answers (200: {n200}, 202: {n202}, other: {other}) "
        f"in {burst_took:.2f}s, run id {run_id}")

    verify_cache: dict[tuple[str, str], bool | None] = {}

    def verifies(message: str, signature: Any) -> bool | None:
        if not isinstance(signature, str) or not signature:
            return False
        key = (message, signature)
        if key not in verify_cache:
            q = urllib.parse.urlencode({"message": message, "signature": signature})
            r = None
            for _ in range(5):
                r = request("GET", f"{sim}/crypto/verify?{q}")
                if r.status == 200 and isinstance(r.body, dict):
                    break
                time.sleep(1)
            verify_cache[key] = r.body.get("valid") is True if r and r.status == 200 and isinstance(r.body, dict) else None
        return verify_cache[key]

    # ---- answers
    latencies = [a.latency for a in answers]
    for a in answers:
        what = f"{a.method} {a.message!r}"
        if a.status not in (200, 202):
            detail = a.error or json.dumps(a.body)[:300]
            verdict.fail(f"{what}: answered {a.status or 'nothing'} ({detail})")
        if a.latency >= ANSWER_LIMIT_S:
            verdict.fail(f"{what}: answered after {a.latency:.3f}s (limit {ANSWER_LIMIT_S}s)")
        if a.status in (200, 202) and not a.job_id:
            verdict.fail(f"{what}: {a.status} without a job id: {a.body}")
        if a.status == 202 and not a.location:
            verdict.fail(f"{what}: 202 without a Location header")

    immediate = {a.job_id: a for a in answers if a.status == 200 and a.job_id}
    jobs = {
        a.job_id: Job(a, urllib.parse.urljoin(api + "/", a.location))
        for a in answers
        if a.status == 202 and a.job_id and a.location
    }

    # ---- wait: statuses and webhooks
    deadline = time.monotonic() + args.timeout
    last_progress = None
    next_poll = 0.0

    def webhook_jobs(ds: list[Delivery]) -> dict[str, list[Delivery]]:
        out: dict[str, list[Delivery]] = {}
        for d in ds:
            jid = d.body.get("data", {}).get("id") if isinstance(d.body, dict) and isinstance(d.body.get("data"), dict) else None
            out.setdefault(jid or "<no data.id>", []).append(d)
        return out

    while True:
        ds = receiver.snapshot()
        got = webhook_jobs(ds)
        arrived = sum(1 for jid in jobs if jid in got)
        done = sum(1 for j in jobs.values() if j.done)
        progress = (arrived, done, len(ds))
        if progress != last_progress:
            say(f"webhooks: {arrived}/{len(jobs)} (deliveries {len(ds)}, jobs done {done}/{len(jobs)}, "
                f"t+{time.monotonic() - burst_started:.1f}s)")
            last_progress = progress
        if arrived == len(jobs) and done == len(jobs):
            break
        if time.monotonic() >= deadline:
            verdict.fail(f"timed out after {args.timeout:.0f}s: {arrived}/{len(jobs)} webhooks, "
                         f"{done}/{len(jobs)} jobs done")
            break
        if time.monotonic() >= next_poll:
            for j in jobs.values():
                if j.done:
                    continue
                r = request("GET", j.status_url, timeout=5)
                if r.status == 200 and isinstance(r.body, dict):
                    j.last = r.body
                    state = r.body.get("status")
                    hook = (r.body.get("webhook") or {}).get("state")
                    j.done = state in ("signed", "failed") and hook in ("delivered", "failed", "not_required")
                else:
                    j.poll_errors += 1
            next_poll = time.monotonic() + args.poll_interval
        with receiver.changed:
            receiver.changed.wait(timeout=0.25)

    # Late or duplicate deliveries.
    time.sleep(max(0.0, args.settle))
    say("phase: checking")
    ds = receiver.snapshot()
    got = webhook_jobs(ds)

    # ---- 200s: valid signature, no webhook
    for jid, a in immediate.items():
        sig = a.body.get("signature") if isinstance(a.body, dict) else None
        ok = verifies(a.message, sig)
        if ok is not True:
            verdict.fail(f"200 for {a.message!r}: signature {'does not verify' if ok is False else 'could not be checked'}")
        if jid in got:
            verdict.fail(f"200 job {jid} ({a.message!r}) still got {len(got[jid])} webhook(s)")

    # ---- 202s: done, one webhook id, valid content
    duplicates = 0
    bad_signatures = 0
    for jid, j in jobs.items():
        a = j.answer
        status = j.last or {}
        if not j.done:
            verdict.fail(f"202 job {jid} ({a.message!r}) not done: status {json.dumps(status)[:300]}")
        elif status.get("status") != "signed" or (status.get("webhook") or {}).get("state") != "delivered":
            verdict.fail(f"202 job {jid} ({a.message!r}) ended {status.get('status')}, "
                         f"webhook {(status.get('webhook') or {}).get('state')}: {json.dumps(status)[:300]}")
        elif verifies(a.message, status.get("signature")) is not True:
            verdict.fail(f"202 job {jid}: status signature does not verify")
        mine = got.get(jid, [])
        if not mine:
            verdict.fail(f"202 job {jid} ({a.message!r}) got no webhook")
            continue
        ids = {d.webhook_id for d in mine}
        duplicates += len(mine) - 1
        if len(ids) != 1:
            verdict.fail(f"202 job {jid} got webhooks with {len(ids)} different webhook-ids: {sorted(ids)}")
        if len(mine) > 1 and not args.allow_redelivery:
            verdict.fail(f"202 job {jid} got {len(mine)} deliveries (exactly one expected)")
        for d in mine:
            body = d.body if isinstance(d.body, dict) else {}
            data = body.get("data") if isinstance(body.get("data"), dict) else {}
            if not d.webhook_id:
                verdict.fail(f"webhook for {jid} has no webhook-id header")
            if d.signature_ok is False:
                bad_signatures += 1
                verdict.fail(f"webhook {d.webhook_id} for {jid}: webhook-signature does not verify")
            if body.get("type") != "signature.completed":
                verdict.fail(f"webhook {d.webhook_id} for {jid}: type {body.get('type')!r}")
            if data.get("message") not in (None, a.message):
                verdict.fail(f"webhook {d.webhook_id} for {jid}: data.message {data.get('message')!r}")
            if verifies(a.message, data.get("signature")) is not True:
                verdict.fail(f"webhook {d.webhook_id} for {jid}: data.signature does not verify")

    expected_ids = set(jobs) | set(immediate)
    strangers = {jid: len(v) for jid, v in got.items() if jid not in expected_ids}
    for jid, count in strangers.items():
        verdict.fail(f"{count} webhook(s) for unknown job {jid}")

    # ---- audit
    summary_resp = request("GET", f"{sim}/admin/audit/summary")
    calls_resp = request("GET", f"{sim}/admin/audit")
    audit: dict[str, Any] = {}
    if summary_resp.status != 200 or not isinstance(summary_resp.body, dict) or calls_resp.status != 200:
        verdict.fail(f"simulator audit unavailable: {summary_resp.status} {summary_resp.error or ''}")
    else:
        summary = summary_resp.body
        calls = list(calls_resp.body.get("calls", []))
        before: list[dict] = []
        if args.audit_before:
            loaded = load_calls(args.audit_before, deadline)
            if loaded is None:
                verdict.fail(f"--audit-before {args.audit_before}: no saved audit")
            else:
                before = loaded
        window_ms, limit = int(summary["window_ms"]), int(summary["limit"])
        seen: set[tuple] = set()
        merged: list[dict] = []
        for c in before + calls:
            key = (c.get("arrived_at_ms"), c.get("id"), c.get("message"), c.get("outcome"))
            if key not in seen:
                seen.add(key)
                merged.append(c)
        recomputed, max_in_window = sliding_window_figures(merged, window_ms, limit)
        flagged = sum(1 for c in merged if c.get("violation"))
        audit = {
            "upstream_calls": len(merged),
            "calls_before_restart": len(before),
            "signed_calls": sum(1 for c in merged if c.get("outcome") == "signed"),
            "by_outcome": {},
            "max_in_window": max_in_window,
            "simulator_max_in_window": summary.get("max_in_window"),
            "window_ms": window_ms,
            "limit": limit,
            "violations": max(recomputed, flagged, int(summary.get("violations") or 0)),
            "violations_simulator": int(summary.get("violations") or 0) + (sum(1 for c in before if c.get("violation"))),
            "violations_recomputed": recomputed,
        }
        for c in merged:
            audit["by_outcome"][c.get("outcome")] = audit["by_outcome"].get(c.get("outcome"), 0) + 1
        if audit["violations"]:
            verdict.fail(f"the upstream saw {audit['violations']} rate-limit violation(s): {json.dumps(audit)}")
        if max_in_window > limit:
            verdict.fail(f"{max_in_window} calls in one {window_ms} ms window (limit {limit})")

    # ---- summary
    expected_times = [d.at for jid in jobs for d in got.get(jid, [])]
    last_webhook = (max(expected_times) - burst_started) if expected_times else None
    figures = {
        "run_id": run_id,
        "count": len(answers),
        "answered_200": n200,
        "answered_202": n202,
        "answered_other": other,
        "latency_p50_s": round(percentile(latencies, 50), 3),
        "latency_p95_s": round(percentile(latencies, 95), 3),
        "latency_max_s": round(max(latencies), 3) if latencies else None,
        "webhooks_expected": len(jobs),
        "webhooks_received_jobs": sum(1 for jid in jobs if jid in got),
        "deliveries_raw": len(ds),
        "duplicate_deliveries": duplicates,
        "bad_webhook_signatures": bad_signatures,
        "last_webhook_after_s": round(last_webhook, 1) if last_webhook is not None else None,
        "status_poll_errors": sum(j.poll_errors for j in jobs.values()),
        "attempts_max": max((int((j.last or {}).get("attempts") or 0) for j in jobs.values()), default=0),
        **audit,
        "failures": len(verdict.failures),
    }
    say("")
    say(f"=== e2e summary ({run_id}) ===")
    say(f"answers        : {len(answers)} ({n200} x 200, {n202} x 202, {other} other)")
    say(f"answer latency : p50 {figures['latency_p50_s']}s, p95 {figures['latency_p95_s']}s, "
        f"max {figures['latency_max_s']}s (limit {ANSWER_LIMIT_S}s)")
    say(f"webhooks       : {figures['webhooks_received_jobs']}/{len(jobs)} jobs, {len(ds)} deliveries, "
        f"{duplicates} duplicate(s), last after {figures['last_webhook_after_s']}s")
    if audit:
        say(f"upstream       : {audit['upstream_calls']} calls "
            f"({', '.join(f'{k} {v}' for k, v in sorted(audit['by_outcome'].items()))}), "
            f"max {audit['max_in_window']} in a {audit['window_ms']} ms window (limit {audit['limit']}), "
            f"violations {audit['violations']}"
            + (f" [merged with {audit['calls_before_restart']} calls saved before a restart]" if args.audit_before else ""))
    say(f"status polls   : {figures['status_poll_errors']} transient error(s); most attempts for a job "
        f"{figures['attempts_max']}")
    for f in verdict.failures[:25]:
        say(f"FAIL: {f}")
    if len(verdict.failures) > 25:
        say(f"... and {len(verdict.failures) - 25} more failures")
    say("SUMMARY " + json.dumps(figures, sort_keys=True))
    if args.summary_json:
        with open(args.summary_json, "w", encoding="utf-8") as f:
            json.dump(figures, f, indent=2, sort_keys=True)
    say("RESULT: " + ("PASS" if not verdict.failures else "FAIL"))
    receiver.stop()
    return 0 if not verdict.failures else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
