//! The live status page, opened in a real headless Chromium.

use crate::client::burst;
use crate::system::{Options, spawn_system};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

fn artifacts_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test exe");
    // target/<profile>/deps/it-… -> target/test-artifacts
    let target = exe.ancestors().nth(3).expect("target dir").to_path_buf();
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("artifacts dir");
    dir
}

fn chromium(args: &[&str]) -> String {
    let program = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|p| Command::new(p).arg("--version").output().is_ok())
        .expect(
            "headless Chromium is needed (Debian package `chromium`; scripts/test.sh installs it)",
        );
    let out = Command::new(program)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
        ])
        .args(args)
        .output()
        .expect("chromium runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Text of the element with `id` in a dumped DOM.
fn text_of(dom: &str, id: &str) -> String {
    let marker = format!("id=\"{id}\">");
    dom.split_once(&marker)
        .and_then(|(_, rest)| rest.split_once('<'))
        .map(|(text, _)| text.trim().to_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn the_status_page_shows_live_figures() {
    // Real-time degradation (1-5 minutes) and no first-try successes: the
    // work stays pending while the page is looked at.
    let sys = spawn_system(Options {
        first_try_success: 0.0,
        time_scale: 1.0,
        ..Options::default()
    })
    .await;
    let msgs: Vec<String> = (0..15).map(|i| format!("page-{i}")).collect();
    let answers = burst(&sys, &msgs).await;
    assert!(answers.iter().all(|a| a.status == 202));
    // Await the figures the page should show: all 15 pending, calls made.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        let s: serde_json::Value = sys
            .http
            .get(format!("{}/status.json", sys.api_url))
            .send()
            .await
            .expect("status")
            .json()
            .await
            .expect("json");
        if s["pending"]["messages"] == 15
            && s["upstream_calls"]
                .as_array()
                .is_some_and(|c| c.len() >= 10)
        {
            break s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "status never showed the burst: {s}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let url = format!("{}/status", sys.api_url);
    let dom = chromium(&["--virtual-time-budget=5000", "--dump-dom", &url]);
    assert_eq!(
        text_of(&dom, "pending"),
        "15",
        "page shows the pending messages\n{dom}"
    );
    assert_eq!(text_of(&dom, "limit"), "10");
    // Slots come and go every few seconds here; the figure must be a live number.
    let used: u64 = text_of(&dom, "used").parse().unwrap_or(99);
    assert!(used <= 10, "page shows the budget's used slots\n{dom}");
    let boxes = dom.matches("class=\"slot\"").count() + dom.matches("class=\"slot used\"").count();
    assert_eq!(boxes, 10, "one box per slot\n{dom}");
    assert!(
        dom.contains("retry_later"),
        "page lists the failed upstream calls\n{dom}"
    );
    assert!(
        !text_of(&dom, "updated").contains("never"),
        "page refreshed itself"
    );
    let shot = artifacts_dir().join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    chromium(&[
        "--virtual-time-budget=5000",
        "--window-size=1500,900",
        &format!("--screenshot={}", shot.display()),
        &url,
    ]);
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(
        size > 10_000,
        "screenshot written to {} ({size} bytes)",
        shot.display()
    );
    eprintln!(
        "status page screenshot: {} (status.json: {} pending, {} calls in window)",
        shot.display(),
        status["pending"]["messages"],
        status["budget"]["used"]
    );
}
