//! The operators' rules and dashboard, checked without a running system:
//! `promtool check rules` and `promtool test rules` (the unit tests in
//! ops/prometheus/tests), every alert with a unit test and a runbook, and a
//! dashboard built from exactly the recording rules. The real Prometheus
//! against real services is `prometheus_alerts`.
//!
//! The rule files are read line by line (`- alert:`, `- record:`, `expr:`),
//! which is all their format here uses; promtool checks the YAML itself.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

/// The repository's root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn rules_dir() -> PathBuf {
    repo().join("ops/prometheus")
}

pub const RULE_FILES: [&str; 2] = ["recording-rules.yml", "alert-rules.yml"];

fn read(path: PathBuf) -> String {
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The values of `key:` items (`- alert: X`, `alertname: X`) in `text`.
fn values_of(text: &str, key: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim_start().trim_start_matches("- ");
            l.strip_prefix(key)?.strip_prefix(':')
        })
        .map(|v| v.trim().trim_matches('\'').trim_matches('"').to_owned())
        .collect()
}

pub fn alert_names() -> BTreeSet<String> {
    values_of(&read(rules_dir().join("alert-rules.yml")), "alert")
}

pub fn recorded_names() -> BTreeSet<String> {
    values_of(&read(rules_dir().join("recording-rules.yml")), "record")
}

/// Every `expr:` of `text`, inline or as a block scalar (`|`, `>-`).
pub fn exprs_of(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(rest) = line.trim_start().strip_prefix("expr:") else {
            continue;
        };
        let rest = rest.trim();
        if !rest.starts_with('|') && !rest.starts_with('>') {
            out.push(rest.to_owned());
            continue;
        }
        let block: Vec<&str> = lines[i + 1..]
            .iter()
            .take_while(|l| l.trim().is_empty() || indent(l) > indent(line))
            .map(|l| l.trim())
            .collect();
        out.push(block.join(" "));
    }
    out
}

/// Every rule expression of both rule files.
pub fn rule_exprs() -> Vec<String> {
    RULE_FILES
        .iter()
        .flat_map(|f| exprs_of(&read(rules_dir().join(f))))
        .collect()
}

/// Every query of the dashboard's panels.
pub fn dashboard_exprs() -> Vec<String> {
    let path = repo().join("ops/grafana/gateway.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&read(path)).expect("gateway.json is JSON");
    let panels = dashboard["panels"].as_array().cloned().unwrap_or_default();
    panels
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| {
            t["expr"]
                .as_str()
                .expect("every target has an expr")
                .to_owned()
        })
        .collect()
}

/// The series names a PromQL expression reads: identifiers outside label
/// matchers, ranges, strings and grouping lists that are neither functions
/// nor keywords. Enough for the expressions written here (checked below).
pub fn metric_names(expr: &str) -> BTreeSet<String> {
    const KEYWORDS: [&str; 12] = [
        "and",
        "or",
        "unless",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "offset",
        "inf",
    ];
    // Aggregations may put `by (...)` before their parentheses.
    const AGGREGATIONS: [&str; 12] = [
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
    ];
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let mut after_grouping = false;
    while i < chars.len() {
        let c = chars[i];
        let skip_to = |close: char, from: usize| {
            (from + 1..chars.len())
                .find(|&j| chars[j] == close)
                .unwrap_or(chars.len())
        };
        match c {
            '"' | '\'' | '`' => i = skip_to(c, i) + 1,
            '{' => i = skip_to('}', i) + 1,
            '[' => i = skip_to(']', i) + 1,
            '(' if after_grouping => {
                after_grouping = false;
                i = skip_to(')', i) + 1;
            }
            c if c.is_ascii_digit() || c == '.' => {
                // A number (1.5, 1e3): its letters are not a name.
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let next = chars[i..].iter().find(|c| !c.is_whitespace());
                let lower = word.to_ascii_lowercase();
                if KEYWORDS.contains(&lower.as_str()) {
                    after_grouping = matches!(
                        lower.as_str(),
                        "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
                    );
                } else if next != Some(&'(') && !AGGREGATIONS.contains(&lower.as_str()) {
                    names.insert(word);
                }
            }
            _ => i += 1,
        }
    }
    names
}

fn promtool(args: &[&str]) -> (bool, String) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(rules_dir())
        .output()
        .unwrap_or_else(|e| {
            panic!("promtool: {e} (scripts/install-prometheus.sh installs Debian's prometheus)")
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn prometheus_rules_pass_promtool_check_and_their_unit_tests() {
    let (ok, text) = promtool(&["check", "rules", RULE_FILES[0], RULE_FILES[1]]);
    assert!(ok, "promtool check rules:\n{text}");
    let mut tests: Vec<String> = std::fs::read_dir(rules_dir().join("tests"))
        .expect("ops/prometheus/tests")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yml"))
        .map(|p| {
            format!(
                "tests/{}",
                p.file_name().unwrap_or_default().to_string_lossy()
            )
        })
        .collect();
    tests.sort();
    assert!(!tests.is_empty(), "no unit tests in ops/prometheus/tests");
    let mut args = vec!["test", "rules"];
    args.extend(tests.iter().map(String::as_str));
    let (ok, text) = promtool(&args);
    assert!(ok, "promtool test rules:\n{text}");
    eprintln!("promtool test rules {}:\n{text}", tests.join(" "));
}

/// The alerts that unit tests in `text` expect to fire at least once: an
/// `alertname:` whose `exp_alerts:` is a list of alerts, not `[]`.
fn firing_in(text: &str) -> BTreeSet<String> {
    let mut firing = BTreeSet::new();
    let mut alert: Option<String> = None;
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix("alertname:") {
            alert = Some(name.trim().trim_matches('\'').trim_matches('"').to_owned());
        } else if let Some(expected) = line.strip_prefix("exp_alerts:")
            && let Some(name) = alert.take()
            && expected.trim().is_empty()
        {
            firing.insert(name);
        }
    }
    firing
}

#[test]
fn prometheus_every_alert_has_a_unit_test_and_a_runbook() {
    let alerts = alert_names();
    assert!(alerts.len() >= 10, "alerts found: {alerts:?}");
    let tests_dir = rules_dir().join("tests");
    let test_texts: Vec<String> = std::fs::read_dir(&tests_dir)
        .expect("ops/prometheus/tests")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yml"))
        .map(read)
        .collect();
    let tested: BTreeSet<String> = test_texts
        .iter()
        .flat_map(|t| values_of(t, "alertname"))
        .collect();
    // A test that only expects silence passes for an alert that never fires.
    let firing: BTreeSet<String> = test_texts.iter().flat_map(|t| firing_in(t)).collect();
    let never_fired: Vec<&String> = alerts.difference(&firing).collect();
    assert!(
        never_fired.is_empty(),
        "alerts no unit test expects to fire: {never_fired:?}"
    );
    let untested: Vec<&String> = alerts.difference(&tested).collect();
    assert!(
        untested.is_empty(),
        "alerts without a unit test: {untested:?}"
    );
    let unknown: Vec<&String> = tested.difference(&alerts).collect();
    assert!(
        unknown.is_empty(),
        "unit tests of alerts that do not exist: {unknown:?}"
    );
    let runbooks = read(repo().join("docs/alerts.md"));
    let rules = read(rules_dir().join("alert-rules.yml"));
    for alert in &alerts {
        assert!(
            runbooks.contains(&format!("\n### {alert}\n")),
            "docs/alerts.md has no `### {alert}` runbook"
        );
        let url = format!("runbook_url: docs/alerts.md#{}", alert.to_ascii_lowercase());
        assert!(rules.contains(&url), "{alert} lacks `{url}`");
    }
}

#[test]
fn prometheus_dashboard_is_built_from_exactly_the_recording_rules() {
    let recorded = recorded_names();
    let used: BTreeSet<String> = dashboard_exprs()
        .iter()
        .flat_map(|e| metric_names(e))
        .collect();
    let unknown: Vec<&String> = used.difference(&recorded).collect();
    assert!(
        unknown.is_empty(),
        "dashboard queries name series that are no recording rule: {unknown:?}"
    );
    let unused: Vec<&String> = recorded.difference(&used).collect();
    assert!(
        unused.is_empty(),
        "recording rules not on the dashboard: {unused:?}"
    );
}

#[test]
fn prometheus_firing_cases_are_told_from_quiet_ones() {
    let text = "
      - eval_time: 2m
        alertname: Quiet
        exp_alerts: []
      - eval_time: 5m
        alertname: Fires
        exp_alerts:
          - exp_labels:
              severity: warning
      - eval_time: 9m
        alertname: 'AlsoQuiet'
        exp_alerts: []
";
    let firing: Vec<String> = firing_in(text).into_iter().collect();
    assert_eq!(firing, ["Fires"]);
}

#[test]
fn prometheus_metric_names_are_found_in_promql() {
    let names = |e: &str| metric_names(e).into_iter().collect::<Vec<_>>();
    assert_eq!(
        names(r#"sum by (le) (rate(a_bucket{route="/x", le="1.8"}[5m])) / on() max(b)"#),
        ["a_bucket", "b"]
    );
    assert_eq!(
        names("gateway:x:ratio > 0.8 and on() sum(rate(c[5m])) > 1e3 unless d offset 5m"),
        ["c", "d", "gateway:x:ratio"]
    );
    assert_eq!(
        names("nats_ready == 0 unless on() gateway:n:max == 0"),
        ["gateway:n:max", "nats_ready"]
    );
    assert_eq!(names(r#"up{job=~"api|signer"} == 0"#), ["up"]);
}
