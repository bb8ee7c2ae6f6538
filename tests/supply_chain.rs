//! Supply-chain tasks end to end: the Trivy gate through a test executable
//! that acts like Trivy's CLI, and cosign-compatible signing against a real
//! registry.

mod support;

use std::path::Path;

use support::*;

const IMG: &str = "127.0.0.1:5000/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn scan_flow(extra: &str) -> String {
    format!(
        "flow scan {{\n  input img: pinned\n  task scan = trivy.scan {{ image: img, fail_on: [critical, high]{extra} }}\n  output critical = scan.critical\n  output low = scan.low\n  output report = scan.report\n}}\n"
    )
}

fn run(dir: &Path, flow: &str, path: &str) -> (i32, String, String) {
    std::fs::write(dir.join("scan.kflow"), flow).unwrap();
    let input = format!("img={IMG}");
    let o = kflow(
        dir,
        &["run", "--state", "state", "scan.kflow", "-i", &input],
        &[("PATH", path)],
    );
    (o.status.code().unwrap_or(-1), text(&o.stdout), text(&o.stderr))
}

#[test]
fn the_trivy_gate_fails_on_listed_severities_and_keeps_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let path = fake_trivy(dir.path(), "debian-buster.json");
    let (code, out, err) = run(dir.path(), &scan_flow(""), &path);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("scan: 1 finding(s) at severities that fail the scan (critical, high):"),
        "{err}"
    );
    assert!(
        err.contains("CRITICAL CVE-2019-18224 in libidn2-0 2.0.5-1 (fixed in 2.0.5-1+deb10u1)"),
        "{err}"
    );
    assert!(
        out.contains("scan | 1 critical, 0 high, 0 medium, 1 low, 0 unknown (0 ignored)"),
        "{out}"
    );
    let calls = std::fs::read_to_string(dir.path().join("trivy-calls")).unwrap();
    assert_eq!(calls.lines().next().unwrap().split(' ').next_back().unwrap(), IMG);
    // The report is an artifact of the execution, even though the gate failed.
    let exec = last_execution(dir.path(), "state");
    let id = exec["id"].as_str().unwrap();
    let o = kflow(dir.path(), &["executions", "show", id, "--state", "state"], &[]);
    assert!(text(&o.stdout).contains("artifact   scan: "), "{}", text(&o.stdout));
    assert!(text(&o.stdout).contains("trivy-report.json"), "{}", text(&o.stdout));
}

#[test]
fn ignore_files_and_unfixed_findings_pass_the_gate_with_an_sbom() {
    let dir = tempfile::tempdir().unwrap();
    let path = fake_trivy(dir.path(), "debian-buster.json");
    std::fs::write(
        dir.path().join(".trivyignore"),
        "# accepted until the base image moves\nCVE-2019-18224\n",
    )
    .unwrap();
    let flow = scan_flow(", ignore_file: \".trivyignore\", ignore_unfixed: true, sbom: cyclonedx");
    let (code, out, err) = run(dir.path(), &flow, &path);
    assert_eq!(code, 0, "{out}{err}");
    // The CRITICAL one is ignored by the file, the LOW one has no fix.
    assert!(out.contains("critical = 0") && out.contains("low = 0"), "{out}");
    let calls = std::fs::read_to_string(dir.path().join("trivy-calls")).unwrap();
    assert!(
        calls.contains("--ignore-unfixed") && calls.contains("--ignorefile"),
        "{calls}"
    );
    assert!(calls.contains("--format cyclonedx"), "{calls}");
    let exec = last_execution(dir.path(), "state");
    let o = kflow(
        dir.path(),
        &[
            "executions",
            "show",
            exec["id"].as_str().unwrap(),
            "--state",
            "state",
            "--json",
        ],
        &[],
    );
    let shown: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let files: Vec<&str> = shown["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["path"].as_str().unwrap().rsplit('/').next().unwrap())
        .collect();
    assert_eq!(files, ["sbom.cdx.json", "trivy-report.json"]);
}

#[test]
fn without_trivy_the_task_says_how_to_get_it() {
    if !docker_or_skip("without_trivy_the_task_says_how_to_get_it") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // A PATH with the shell tools but no trivy.
    let (code, out, err) = run(dir.path(), &scan_flow(""), "/usr/bin:/bin");
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("Trivy is not available: put `trivy` on PATH") && err.contains("docker pull aquasec/trivy"),
        "{err}"
    );
}

/// A string where the catalog says `image|pinned|ref` type-checks (with the
/// unpinned-image lint), so it must run too.
#[test]
fn a_string_image_that_type_checks_also_runs() {
    let dir = tempfile::tempdir().unwrap();
    let path = fake_trivy(dir.path(), "debian-buster.json");
    let flow =
        "flow scan {\n  input img: string\n  task scan = trivy.scan { image: img }\n  output low = scan.low\n}\n";
    let (code, out, err) = run(dir.path(), flow, &path);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("low = 1"), "{out}");
    let calls = std::fs::read_to_string(dir.path().join("trivy-calls")).unwrap();
    assert_eq!(calls.lines().next().unwrap().split(' ').next_back().unwrap(), IMG);
}
