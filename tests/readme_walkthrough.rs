//! README's "Writing and testing policies" walkthrough, run as written:
//! its `sh` blocks in order, with the real `wisp` binary on the PATH, in an
//! empty directory; every line of its `text` blocks (the outputs it shows,
//! `…` marking elisions) must appear in what the commands printed.

use std::path::Path;
use std::process::Command;

const SECTION: &str = "## Writing and testing policies";
/// Where the walkthrough's own commands end.
const END: &str = "**With real signed tokens**";

/// The fenced blocks of `kind` (`sh`, `text`) in `text`.
fn blocks(text: &str, kind: &str) -> Vec<String> {
    let open = format!("```{kind}\n");
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(&open) {
        let body = &rest[start + open.len()..];
        let end = body.find("```\n").expect("a closed code block");
        found.push(body[..end].to_owned());
        rest = &body[end..];
    }
    found
}

#[test]
fn the_readme_walkthrough_runs_as_written_and_prints_what_it_shows() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let start = readme.find(SECTION).expect("the walkthrough section");
    let section = &readme[start..];
    let section = &section[..section.find(END).expect("the walkthrough's end")];
    let script = blocks(section, "sh").join("\n");
    assert!(script.contains("wisp test"), "{script}");

    let dir = tempfile::tempdir().unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_wisp")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let output = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(dir.path())
        .env("PATH", path)
        .output()
        .expect("run bash");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{script}\n---\n{stdout}\n{stderr}");

    let printed: Vec<&str> = stdout.lines().map(str::trim_end).collect();
    for shown in blocks(section, "text") {
        for line in shown.lines().map(str::trim_end) {
            if line == "…" || line.is_empty() {
                continue;
            }
            assert!(
                printed.contains(&line),
                "README shows {line:?}, which the commands did not print:\n{stdout}"
            );
        }
    }
}
