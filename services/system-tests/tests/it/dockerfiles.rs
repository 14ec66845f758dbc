//! The four Dockerfiles share one build stage, word for word: the classic
//! builder's layer cache then compiles the workspace once for all four
//! images (see the comment in the stage). A stage edited in one file only
//! would silently compile the workspace four times, or build the images
//! from different code.

use std::path::{Path, PathBuf};

const SERVICES: [&str; 4] = ["api", "signer", "notifier", "upstream-sim"];
const BEGIN: &str = "# ---- build stage:";
const END: &str = "# ---- end of the build stage";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The lines from `BEGIN` to `END`, both included.
fn build_stage(dockerfile: &str) -> Option<String> {
    let start = dockerfile.find(BEGIN)?;
    let end = start + dockerfile[start..].find(END)?;
    Some(dockerfile[start..end].to_owned())
}

#[test]
fn the_four_dockerfiles_share_one_build_stage() {
    let stages: Vec<(String, String)> = SERVICES
        .iter()
        .map(|s| {
            let path = repo().join(format!("Dockerfile.{s}"));
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let stage = build_stage(&text)
                .unwrap_or_else(|| panic!("{}: no build stage marked {BEGIN:?}", path.display()));
            (s.to_string(), stage)
        })
        .collect();
    let (first, reference) = &stages[0];
    for (name, stage) in &stages[1..] {
        assert_eq!(
            stage, reference,
            "Dockerfile.{name}'s build stage differs from Dockerfile.{first}'s"
        );
    }
    // The stage builds every binary, so each runtime stage finds its own.
    assert!(reference.contains("cargo build --release --locked --workspace --bins"));
}

#[test]
fn each_runtime_stage_copies_its_own_binary_and_runs_it_as_non_root() {
    for s in SERVICES {
        let text = std::fs::read_to_string(repo().join(format!("Dockerfile.{s}"))).expect("read");
        let runtime = &text[text.find(END).expect("end marker")..];
        for want in [
            format!("COPY --from=build /usr/local/bin/{s} /usr/local/bin/{s}"),
            "USER 10001:10001".to_owned(),
            format!("CMD [\"/usr/local/bin/{s}\", \"healthcheck\"]"),
            format!("ENTRYPOINT [\"/usr/local/bin/{s}\"]"),
        ] {
            assert!(
                runtime.contains(&want),
                "Dockerfile.{s}: no `{want}` after the build stage"
            );
        }
    }
}
