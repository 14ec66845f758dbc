//! `scripts/run-local.sh`, the one command that runs the whole system without
//! Docker, used as a person would: started in the background (on free ports,
//! with a state directory of its own and no `.env`), it answers the README's
//! curl and delivers the webhook to the simulator's inbox; SIGTERM stops
//! every process it started; a second run without `--fresh` serves the first
//! run's signature from the JetStream store it kept.

use crate::procs::{TempDir, bin, free_port};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;
use tokio::time::{Instant, sleep};

const MESSAGE: &str = "hello from run-local";
const SERVICES: [&str; 5] = ["nats", "upstream-sim", "signer", "notifier", "api"];

/// Every port the script takes, chosen free.
struct Ports {
    api: u16,
    sim: u16,
    nats: u16,
    nats_monitor: u16,
    signer: u16,
    notifier: u16,
}

impl Ports {
    fn free() -> Self {
        Self {
            api: free_port(),
            sim: free_port(),
            nats: free_port(),
            nats_monitor: free_port(),
            signer: free_port(),
            notifier: free_port(),
        }
    }
}

/// One run of the script.
struct Run {
    child: Option<Child>,
    output: PathBuf,
    local_dir: PathBuf,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/run-local.sh")
}

impl Run {
    fn start(dir: &Path, ports: &Ports, fresh: bool, n: u32) -> Self {
        let local_dir = dir.join("local");
        let output = dir.join(format!("run-{n}.out"));
        let out = std::fs::File::create(&output).expect("output file");
        let err = out.try_clone().expect("output file");
        let bin_dir = bin("api").parent().expect("bin dir").to_owned();
        let mut args = vec!["--no-build"];
        if fresh {
            args.push("--fresh");
        }
        let child = Command::new("bash")
            .arg(script())
            .args(&args)
            // Nothing from the developer's shell or `.env`: only what is set here.
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", std::env::var("HOME").unwrap_or_else(|_| "/".into()))
            .env("ENV_FILE", dir.join("no-such.env"))
            .env("LOCAL_DIR", &local_dir)
            // Built by `cargo build --workspace --bins` before the tests, as
            // every system test expects; not rebuilt here.
            .env("BIN_DIR", bin_dir)
            .env("API_PORT", ports.api.to_string())
            .env("SIM_PORT", ports.sim.to_string())
            .env("NATS_PORT", ports.nats.to_string())
            .env("NATS_MONITOR_PORT", ports.nats_monitor.to_string())
            .env("SIGNER_HEALTH_PORT", ports.signer.to_string())
            .env("NOTIFIER_HEALTH_PORT", ports.notifier.to_string())
            .env("READY_TIMEOUT", "30")
            .env("STOP_TIMEOUT", "15")
            // Compressed time through compose's variables, as
            // scripts/compose-test.sh does: simulator minutes are seconds,
            // a 6 s window. Every first try fails and a failing message
            // recovers after 3-4 s, so the answer is a 202 and a webhook follows.
            .envs([
                ("SIM_TIME_SCALE", "60"),
                ("SIM_SEED", "16"),
                ("SIM_FIRST_TRY_SUCCESS", "0"),
                ("SIM_DEGRADED_MIN", "3m"),
                ("SIM_DEGRADED_MAX", "4m"),
                ("SIM_AUDIT_WINDOW", "6s"),
                ("UPSTREAM_RATE_WINDOW", "6s"),
                ("UPSTREAM_RATE_MARGIN", "500ms"),
                ("UPSTREAM_TIMEOUT", "3s"),
                ("RETRY_MIN_BACKOFF", "1s"),
                ("RETRY_SETTLE", "5s"),
                ("WEBHOOK_RETRY_SCHEDULE", "0s,200ms,500ms,1s,2s,2s,2s,2s"),
                ("WEBHOOK_RETRY_JITTER", "0"),
                ("WEBHOOK_TIMEOUT", "2s"),
                ("WEBHOOK_CIRCUIT_OPEN", "1s"),
                ("WEBHOOK_CIRCUIT_OPEN_MAX", "2s"),
                ("REPLY_GRACE", "3s"),
                ("NOTIFIER_DRAIN_TIMEOUT", "5s"),
            ])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("starting scripts/run-local.sh");
        Self {
            child: Some(child),
            output,
            local_dir,
        }
    }

    /// The script's output and the tail of every service log, for failures.
    fn report(&self) -> String {
        let mut text = format!(
            "--- run-local.sh output ---\n{}",
            std::fs::read_to_string(&self.output).unwrap_or_default()
        );
        for s in SERVICES {
            let log = std::fs::read_to_string(self.local_dir.join(format!("logs/{s}.log")))
                .unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            text.push_str(&format!(
                "\n--- {s}.log ---\n{}",
                lines[lines.len().saturating_sub(15)..].join("\n")
            ));
        }
        text
    }

    /// Wait for the script's "ready" line: it prints it once every service
    /// answered its readiness probe.
    async fn ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(45);
        loop {
            let out = std::fs::read_to_string(&self.output).unwrap_or_default();
            if out.contains("run-local: ready in") {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "run-local.sh exited ({status}) before ready\n{}",
                    self.report()
                );
            }
            assert!(
                Instant::now() < deadline,
                "run-local.sh not ready within 45 s\n{}",
                self.report()
            );
            sleep(Duration::from_millis(100)).await;
        }
    }

    /// `$LOCAL_DIR/pids`: every process the script started, by name.
    fn pids(&self) -> Vec<(String, u32)> {
        std::fs::read_to_string(self.local_dir.join("pids"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let (name, pid) = l.split_once(' ')?;
                Some((name.to_owned(), pid.trim().parse().ok()?))
            })
            .collect()
    }

    /// SIGTERM to the script alone (as `kill <pid>` or a service manager
    /// would), then wait for it to exit.
    async fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        signal("-TERM", child.id());
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "run-local.sh still running 40 s after SIGTERM\n{}",
                    self.report()
                );
            }
            sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Run {
    /// A failed test still leaves nothing running: SIGTERM the script (SIGKILL
    /// if it does not stop), then SIGKILL whatever it started that is still
    /// there (only processes with the expected name, in case a pid was reused).
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal("-TERM", child.id());
            let started = std::time::Instant::now();
            while started.elapsed() < Duration::from_secs(30) {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        for (name, pid) in self.pids() {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let expected = if name == "nats" {
                "nats-server"
            } else {
                name.as_str()
            };
            if comm.trim() == expected {
                signal("-KILL", pid);
            }
        }
    }
}

fn signal(sig: &str, pid: u32) {
    let _ = Command::new("kill")
        .args([sig, &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

fn alive(pid: u32) -> bool {
    Command::new("kill")
        .args(["-0", &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Every service is in the pids file and running.
fn assert_all_running(run: &Run) -> Vec<(String, u32)> {
    let pids = run.pids();
    let names: Vec<&str> = pids.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, SERVICES, "pids file\n{}", run.report());
    for (name, pid) in &pids {
        assert!(
            alive(*pid),
            "{name} ({pid}) is not running\n{}",
            run.report()
        );
    }
    pids
}

/// SIGTERM, then: the script exited through its trap, and nothing it started
/// is left, nor listening.
async fn stop_and_check(run: &mut Run, pids: &[(String, u32)], ports: &Ports) {
    let started = Instant::now();
    let status = run.terminate().await;
    eprintln!("run-local.sh stopped in {:?}: {status}", started.elapsed());
    assert_eq!(status.code(), Some(143), "exit status\n{}", run.report());
    let left: Vec<_> = pids.iter().filter(|(_, pid)| alive(*pid)).collect();
    assert!(left.is_empty(), "left running: {left:?}\n{}", run.report());
    let out = std::fs::read_to_string(&run.output).unwrap_or_default();
    let order: Vec<usize> = ["api", "notifier", "signer", "upstream-sim", "nats"]
        .iter()
        .map(|s| {
            out.find(&format!("run-local: stopping {s} "))
                .unwrap_or_else(|| panic!("{s} not stopped by the script\n{out}"))
        })
        .collect();
    assert!(
        order.is_sorted(),
        "stopped in reverse order of start\n{out}"
    );
    assert!(
        !out.contains("SIGKILL"),
        "every service stopped on SIGTERM\n{}",
        run.report()
    );
    for port in [
        ports.api,
        ports.sim,
        ports.nats,
        ports.nats_monitor,
        ports.signer,
        ports.notifier,
    ] {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "port {port} still open after the stop"
        );
    }
}

#[tokio::test]
async fn run_local_sh_serves_the_readme_curl_stops_cleanly_and_keeps_state_across_runs() {
    let test_started = Instant::now();
    let dir = TempDir::new("run-local");
    let ports = Ports::free();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let api = format!("http://127.0.0.1:{}", ports.api);
    let sim = format!("http://127.0.0.1:{}", ports.sim);
    let inbox = format!("{sim}/webhooks/inbox");

    // First run, from scratch.
    let mut run = Run::start(&dir.0, &ports, true, 1);
    run.ready().await;
    eprintln!("first run ready after {:?}", test_started.elapsed());
    let out = std::fs::read_to_string(&run.output).unwrap_or_default();
    assert!(
        out.contains(&format!(
            "curl -s '{api}/crypto/sign?message=hello&webhook_url={inbox}'"
        )),
        "the ready-to-paste curl\n{out}"
    );
    let pids = assert_all_running(&run);

    // The README's curl, with the simulator's inbox as the webhook receiver.
    let answer = http
        .get(format!("{api}/crypto/sign"))
        .query(&[("message", MESSAGE), ("webhook_url", inbox.as_str())])
        .send()
        .await
        .expect("the api answers");
    assert_eq!(answer.status(), 202, "{}", run.report());
    let body: serde_json::Value = answer.json().await.expect("json");
    let job = body["id"].as_str().expect("job id").to_owned();

    // The webhook lands in the simulator's inbox.
    let deadline = Instant::now() + Duration::from_secs(30);
    let webhook = loop {
        let list: serde_json::Value = http
            .get(&inbox)
            .send()
            .await
            .expect("inbox")
            .json()
            .await
            .expect("inbox json");
        let found = list["deliveries"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|d| d["body"]["data"]["id"] == job.as_str())
            .cloned();
        if let Some(d) = found {
            break d;
        }
        assert!(
            Instant::now() < deadline,
            "no webhook for {job} in the inbox within 30 s: {list}\n{}",
            run.report()
        );
        sleep(Duration::from_millis(100)).await;
    };
    eprintln!("webhook received after {:?}", test_started.elapsed());
    assert_eq!(webhook["body"]["type"], "signature.completed", "{webhook}");
    let signature = webhook["body"]["data"]["signature"]
        .as_str()
        .expect("signature")
        .to_owned();
    let verified: serde_json::Value = http
        .get(format!("{sim}/crypto/verify"))
        .query(&[("message", MESSAGE), ("signature", signature.as_str())])
        .send()
        .await
        .expect("verify")
        .json()
        .await
        .expect("verify json");
    assert_eq!(verified["valid"], true, "{verified}");
    for s in SERVICES {
        let log = run.local_dir.join(format!("logs/{s}.log"));
        assert!(
            std::fs::metadata(&log).is_ok_and(|m| m.len() > 0),
            "{} is empty",
            log.display()
        );
    }

    stop_and_check(&mut run, &pids, &ports).await;
    eprintln!("first run stopped after {:?}", test_started.elapsed());

    // Second run, same state directory, no --fresh: the signature is served
    // from the JetStream store, with no upstream call.
    let mut run = Run::start(&dir.0, &ports, false, 2);
    run.ready().await;
    let pids = assert_all_running(&run);
    let again = http
        .get(format!("{api}/crypto/sign"))
        .query(&[("message", MESSAGE), ("webhook_url", inbox.as_str())])
        .send()
        .await
        .expect("the api answers");
    assert_eq!(again.status(), 200, "{}", run.report());
    let body: serde_json::Value = again.json().await.expect("json");
    assert_eq!(body["signature"], signature.as_str(), "{body}");
    let calls: serde_json::Value = http
        .get(format!("{sim}/admin/audit"))
        .send()
        .await
        .expect("audit")
        .json()
        .await
        .expect("audit json");
    assert!(
        calls["calls"]
            .as_array()
            .is_some_and(|c| c.iter().all(|c| c["message"] != MESSAGE)),
        "answered from the store, not the upstream: {calls}"
    );
    let status: serde_json::Value = http
        .get(format!("{api}/crypto/sign/jobs/{job}"))
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("status json");
    assert_eq!(status["status"], "signed", "{status}");
    assert_eq!(status["reply"], "202", "{status}");
    assert_eq!(status["webhook"]["state"], "delivered", "{status}");

    stop_and_check(&mut run, &pids, &ports).await;
    eprintln!("whole test: {:?}", test_started.elapsed());
}
