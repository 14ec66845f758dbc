//! The cluster compose file writes its second api out in full (Compose
//! cannot `extends` a service with `depends_on`), so it must be kept in step
//! with docker-compose.yml's api by hand: a setting missing there would run
//! that replica differently, e.g. without caller keys, open to anyone.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(name: &str) -> String {
    let path = repo().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The keys of the mapping that starts after the line `header` (exact, as
/// indented in the file) at `indent` spaces; comments and merge keys skipped.
fn keys_under(text: &str, header: &str, indent: usize) -> BTreeSet<String> {
    let mut lines = text.lines().skip_while(|l| *l != header).skip(1);
    let mut keys = BTreeSet::new();
    for line in lines.by_ref() {
        let depth = line.len() - line.trim_start().len();
        let body = line.trim_start();
        if body.is_empty() || body.starts_with('#') {
            continue;
        }
        if depth < indent {
            break;
        }
        if depth == indent
            && let Some((key, _)) = body.split_once(':')
            && key != "<<"
        {
            keys.insert(key.to_owned());
        }
    }
    keys
}

/// The environment keys of service `service` in compose file `text`.
fn environment_of(text: &str, service: &str) -> BTreeSet<String> {
    let service_block: String = text
        .lines()
        .skip_while(|l| *l != format!("  {service}:"))
        .take_while(|l| {
            !(l.starts_with("  ")
                && !l.starts_with("   ")
                && !l.starts_with(&format!("  {service}:")))
        })
        .collect::<Vec<_>>()
        .join("\n");
    keys_under(&service_block, "    environment:", 6)
}

#[test]
fn api_2_has_every_setting_of_api() {
    let single = read("docker-compose.yml");
    let cluster = read("docker-compose.cluster.yml");
    let api = environment_of(&single, "api");
    assert!(
        api.contains("CALLERS") && api.contains("API_ADDR"),
        "{api:?}"
    );
    let mut api_2 = environment_of(&cluster, "api-2");
    api_2.extend(keys_under(&cluster, "x-cluster-env: &cluster-env", 2));
    let missing: Vec<&String> = api.difference(&api_2).collect();
    assert!(
        missing.is_empty(),
        "docker-compose.cluster.yml's api-2 lacks {missing:?}, which docker-compose.yml's api sets"
    );
}
