//! Child processes of a test: nats-server and the built service binaries.
//!
//! Each test starts its own, on free ports with a temporary store, and kills
//! them when dropped. Nothing is shared with other tests or left running.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    // The listener is closed before the port is used, so the kernel may hand
    // the same port out again: never give one twice in this process (a
    // signer's health port once came back equal to its nats-server's).
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// Where cargo put the workspace binaries (next to this test's `deps/`).
/// `SYSTEM_TESTS_BIN_<NAME>` (e.g. `SYSTEM_TESTS_BIN_SIGNER`) points a run at
/// another build, to show that a test catches what an older one got wrong.
pub fn bin(name: &str) -> PathBuf {
    let var = format!("SYSTEM_TESTS_BIN_{}", name.to_uppercase().replace('-', "_"));
    if let Some(path) = std::env::var_os(var) {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("test exe path");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first (`cargo build --workspace --bins`, as scripts/test.sh does)",
        path.display()
    );
    path
}

/// A directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A fresh directory under the system temp dir.
    pub fn new(tag: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "sign-gw-{tag}-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&path).expect("temp dir");
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("KEEP_TEST_DIRS").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A child process that can be killed and started again with the same setup.
pub struct Proc {
    name: String,
    program: PathBuf,
    args: Vec<String>,
    env: BTreeMap<String, String>,
    log: PathBuf,
    child: Option<Child>,
}

impl Proc {
    /// Start `program` with `args` and `env`, logging to `log_dir/name.log`.
    pub fn start(
        name: &str,
        program: PathBuf,
        args: &[&str],
        env: BTreeMap<String, String>,
        log_dir: &Path,
    ) -> Self {
        let mut p = Self {
            name: name.to_owned(),
            program,
            args: args.iter().map(|s| s.to_string()).collect(),
            env,
            log: log_dir.join(format!("{name}.log")),
            child: None,
        };
        p.spawn();
        p
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let err = log.try_clone().expect("log file");
        let child = Command::new(&self.program)
            .args(&self.args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env(
                "RUST_LOG",
                std::env::var("TEST_RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .envs(&self.env)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.name));
        self.child = Some(child);
    }

    /// SIGKILL: no chance to clean up, like a crash or `docker kill`.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for the exit (bounded), like `docker stop`.
    pub fn terminate(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(30) {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start again with the same program, arguments and environment.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(Some(_))),
            None => true,
        }
    }

    /// Wait until this process's `url` answers 200; on failure, its log
    /// says why.
    pub async fn wait_ready(&self, http: &reqwest::Client, url: &str) {
        if let Err(last) = answers_ok_within_60s(http, url).await {
            panic!(
                "{} never became ready at {url}; last answer: {last}\n--- its log:\n{}",
                self.name,
                self.log_tail()
            );
        }
    }

    /// The log so far (for failure messages).
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Wait until a TCP port accepts connections.
pub async fn wait_for_port(port: u16, what: &str) {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{what} did not open port {port}");
}

/// Wait until `url` answers 200.
pub async fn wait_for_ok(http: &reqwest::Client, url: &str, what: &str) {
    if let Err(last) = answers_ok_within_60s(http, url).await {
        panic!("{what} never became ready at {url}; last answer: {last}");
    }
}

/// `Ok` once `url` answers 200, else (after 60 s) the last answer: it says
/// why.
async fn answers_ok_within_60s(http: &reqwest::Client, url: &str) -> Result<(), String> {
    let started = Instant::now();
    let mut last = String::from("no answer");
    while started.elapsed() < Duration::from_secs(60) {
        match http.get(url).send().await {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => last = format!("{}: {}", r.status(), r.text().await.unwrap_or_default()),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(last)
}
