//! The Trivy gate on Trivy's own reports (copied from aquasecurity/trivy's
//! integration golden files, see fixtures/trivy/README.md).

use kflow_runtime::scan::trivy::{gate, parse, parse_ignore};

fn report(name: &str) -> kflow_runtime::scan::trivy::Report {
    let path = format!("{}/tests/fixtures/trivy/{name}", env!("CARGO_MANIFEST_DIR"));
    parse(&std::fs::read(path).unwrap()).unwrap()
}

fn counts(v: &kflow_runtime::scan::trivy::Verdict) -> [i64; 5] {
    ["CRITICAL", "HIGH", "MEDIUM", "LOW", "UNKNOWN"].map(|s| v.counts[s])
}

#[test]
fn every_report_is_counted_per_severity() {
    let expected: &[(&str, [i64; 5])] = &[
        ("alpine-310.json", [0, 0, 4, 0, 0]),
        ("alpine-310-ignore-unfixed.json", [0, 0, 6, 2, 0]),
        ("alpine-310-medium-high.json", [0, 0, 6, 0, 0]),
        ("alpine-39-high-critical.json", [2, 0, 0, 0, 0]),
        ("alpine-39-ignore-cveids.json", [0, 0, 2, 0, 0]),
        ("busybox-with-lockfile.json", [0, 1, 1, 0, 0]),
        ("debian-buster.json", [1, 0, 0, 1, 0]),
        ("debian-buster-ignore-unfixed.json", [1, 0, 0, 0, 0]),
        ("distroless-base.json", [0, 0, 2, 2, 0]),
    ];
    for (name, want) in expected {
        let v = gate(&report(name), &[], false, &[]);
        assert_eq!(counts(&v), *want, "{name}");
        assert!(v.blocking.is_empty());
    }
}

#[test]
fn fail_on_blocks_and_names_the_findings() {
    let v = gate(
        &report("debian-buster.json"),
        &["critical".into(), "high".into()],
        false,
        &[],
    );
    assert_eq!(v.blocking.len(), 1);
    let f = &v.blocking[0];
    assert_eq!(f.id, "CVE-2019-18224");
    assert_eq!(
        f.to_string(),
        format!(
            "CRITICAL CVE-2019-18224 in {} {} (fixed in {})",
            f.package,
            f.installed,
            f.fixed.clone().unwrap()
        )
    );
    // Lang-pkg findings count like OS ones.
    let v = gate(&report("busybox-with-lockfile.json"), &["high".into()], false, &[]);
    assert_eq!(v.blocking.len(), 1);
}

#[test]
fn ignore_unfixed_drops_findings_without_a_fix() {
    // distroless-base: the two MEDIUM findings have no fixed version.
    let v = gate(&report("distroless-base.json"), &["medium".into()], true, &[]);
    assert_eq!(counts(&v), [0, 0, 0, 2, 0]);
    assert_eq!(v.ignored, 2);
    assert!(v.blocking.is_empty());
    // debian-buster: the LOW finding has none, the CRITICAL one has.
    let v = gate(&report("debian-buster.json"), &["critical".into()], true, &[]);
    assert_eq!(counts(&v), [1, 0, 0, 0, 0]);
    assert_eq!(v.blocking.len(), 1);
}

#[test]
fn trivyignore_entries_are_skipped() {
    let ids = parse_ignore("# accepted\nCVE-2019-14697\n", "2026-11-28");
    let v = gate(
        &report("alpine-39-high-critical.json"),
        &["critical".into()],
        false,
        &ids,
    );
    assert_eq!(v.blocking.len(), 0);
    assert_eq!(v.ignored, 2);
}

#[test]
fn a_cyclonedx_bom_is_not_mistaken_for_a_report() {
    let path = format!(
        "{}/tests/fixtures/trivy/centos-7-cyclonedx.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let e = parse(&std::fs::read(path).unwrap()).err().unwrap();
    assert!(e.starts_with("this is not a Trivy JSON report"), "{e}");
}
