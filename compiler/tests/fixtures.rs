//! Tests as data: every diagnostic code has a fixture whose rendered report
//! is snapshotted; positive fixtures and the examples check clean; the
//! formatter is snapshotted, idempotent and meaning-preserving.

use std::path::{Path, PathBuf};

use kflow_compiler::analysis::{analyze, Analysis, Options};
use kflow_compiler::codes::CODES;
use kflow_compiler::render::{human, FileReport, HumanStyle};

fn fixtures(dir: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(dir)
}

fn analyze_file(path: &Path) -> (String, Analysis) {
    let src = std::fs::read_to_string(path).unwrap();
    let opts = Options::in_dir(path.parent().unwrap());
    let a = analyze(&src, &opts);
    (src, a)
}

fn rendered(path: &Path) -> String {
    let (src, a) = analyze_file(path);
    let name = path.file_name().unwrap().to_str().unwrap();
    let report = FileReport {
        path: name,
        src: &src,
        diagnostics: &a.diagnostics,
    };
    human(
        &report,
        HumanStyle {
            color: false,
            width: 80,
        },
    )
}

fn kflow_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "kflow"))
        .collect();
    v.sort();
    v
}

#[test]
fn every_code_has_a_fixture_that_raises_it() {
    for code in CODES {
        let file = fixtures("diagnostics").join(format!("{}.kflow", code.code.replace("::", ".")));
        assert!(
            file.exists(),
            "no fixture for {}: expected {}",
            code.code,
            file.display()
        );
        let (_, a) = analyze_file(&file);
        assert!(
            a.diagnostics
                .iter()
                .any(|d| d.code == code.code && d.severity == code.severity),
            "{} does not raise {} with its registered severity: {:#?}",
            file.display(),
            code.code,
            a.diagnostics
        );
    }
    // And no fixture for a code that does not exist.
    for file in kflow_files(&fixtures("diagnostics")) {
        let stem = file.file_stem().unwrap().to_str().unwrap().replace('.', "::");
        assert!(CODES.iter().any(|c| c.code == stem), "fixture for unknown code {stem}");
    }
}

#[test]
fn diagnostic_reports() {
    insta::glob!("fixtures/diagnostics/*.kflow", |path| {
        let src = std::fs::read_to_string(path).unwrap();
        // Long fixtures (the too-complex one) are summarised in the snapshot.
        let shown = if src.len() > 2_000 {
            format!("{}…\n", &src[..200])
        } else {
            src.clone()
        };
        insta::assert_snapshot!(format!("{shown}\n{}", rendered(path)));
    });
}

#[test]
fn positive_fixtures_check_clean() {
    for file in kflow_files(&fixtures("ok")) {
        let (_, a) = analyze_file(&file);
        assert!(a.diagnostics.is_empty(), "{}:\n{}", file.display(), rendered(&file));
        assert!(!a.flows.is_empty());
    }
}

#[test]
fn examples_check_clean() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let files = kflow_files(&dir);
    for name in ["supply-chain", "promote", "compose-tests", "task-runner"] {
        assert!(
            files.iter().any(|f| f.file_stem().unwrap() == name),
            "examples/{name}.kflow is missing"
        );
    }
    for file in files {
        let (_, a) = analyze_file(&file);
        assert!(a.diagnostics.is_empty(), "{}:\n{}", file.display(), rendered(&file));
    }
}

#[test]
fn formatter_output() {
    insta::glob!("fixtures/fmt/*.kflow", |path| {
        let src = std::fs::read_to_string(path).unwrap();
        let out = kflow_compiler::format::format(&src).expect("fmt fixtures parse");
        insta::assert_snapshot!(out);
    });
}

/// The plan with source lines removed: what the file means.
fn meaning(src: &str) -> (Vec<&'static str>, String) {
    let a = analyze(src, &Options::default());
    let codes = a.diagnostics.iter().map(|d| d.code).collect();
    let mut plans = serde_json::to_value(a.flows.iter().map(|f| &f.plan).collect::<Vec<_>>()).unwrap();
    for plan in plans.as_array_mut().unwrap() {
        for key in ["nodes", "triggers"] {
            for item in plan[key].as_array_mut().unwrap() {
                item.as_object_mut().unwrap().remove("line");
            }
        }
    }
    (codes, plans.to_string())
}

#[test]
fn formatting_is_idempotent_and_keeps_meaning() {
    let mut files = Vec::new();
    for dir in ["diagnostics", "ok", "fmt"] {
        files.extend(kflow_files(&fixtures(dir)));
    }
    files.extend(kflow_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")));
    let mut formatted = 0;
    for file in files {
        let src = std::fs::read_to_string(&file).unwrap();
        let Ok(once) = kflow_compiler::format::format(&src) else {
            continue;
        };
        formatted += 1;
        let twice = kflow_compiler::format::format(&once).unwrap();
        assert_eq!(once, twice, "formatting {} twice changes it", file.display());
        let (mut before, plan_before) = meaning(&src);
        let (mut after, plan_after) = meaning(&once);
        before.sort();
        after.sort();
        assert_eq!(before, after, "formatting {} changes its diagnostics", file.display());
        assert_eq!(
            plan_before,
            plan_after,
            "formatting {} changes its plan",
            file.display()
        );
        // Every comment survives.
        let count = |s: &str| kflow_grammar_comments(s);
        assert_eq!(
            count(&src),
            count(&once),
            "formatting {} loses comments",
            file.display()
        );
    }
    assert!(formatted > 30);
}

fn kflow_grammar_comments(src: &str) -> Vec<String> {
    let (file, _) = kflow_compiler::grammar::parse(src);
    let mut v: Vec<String> = file.comments.iter().map(|c| c.text.trim().to_string()).collect();
    v.sort();
    v
}

/// The plan `kflow graph --format json` prints reads back as the same plan
/// (the runtime may load it from a file).
#[test]
fn plans_survive_a_json_round_trip() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut files = kflow_files(&dir);
    files.extend(kflow_files(&fixtures("ok")));
    for file in files {
        let (_, a) = analyze_file(&file);
        for flow in &a.flows {
            let json = serde_json::to_string(&flow.plan).unwrap();
            let back: kflow_compiler::ir::Plan = serde_json::from_str(&json).unwrap();
            assert_eq!(serde_json::to_string(&back).unwrap(), json, "{}", file.display());
        }
    }
}

#[test]
fn duplicate_outputs_are_reported() {
    let a = analyze("flow f {\n  output x = 1\n  output x = 2\n}\n", &Options::default());
    let codes: Vec<&str> = a.diagnostics.iter().map(|d| d.code).collect();
    assert_eq!(codes, ["kflow::name::duplicate"]);
    assert_eq!(a.diagnostics[0].secondary.len(), 1, "points at both");
}

/// Every fix a diagnostic offers applies cleanly: the text still parses and
/// the diagnostic it answers is gone. The fixes are snapshotted as the lines
/// they change.
#[test]
fn fixes_apply_and_remove_their_diagnostic() {
    let mut shown = String::new();
    for path in kflow_files(&fixtures("diagnostics")) {
        let (src, a) = analyze_file(&path);
        let name = path.file_name().unwrap().to_str().unwrap();
        for d in &a.diagnostics {
            for fix in &d.fixes {
                let mut fixed = src.clone();
                let mut edits = fix.edits.clone();
                edits.sort_by_key(|e| std::cmp::Reverse(e.span.start));
                for e in &edits {
                    fixed.replace_range(e.span.start..e.span.end, &e.text);
                }
                let after = analyze(&fixed, &Options::in_dir(path.parent().unwrap()));
                let parse_errors: Vec<_> = after
                    .diagnostics
                    .iter()
                    .filter(|x| x.code.starts_with("kflow::parse") && !a.diagnostics.contains(x))
                    .collect();
                assert!(
                    parse_errors.is_empty(),
                    "{name}: `{}` breaks the syntax: {parse_errors:?}",
                    fix.title
                );
                let count = |ds: &[kflow_compiler::Diagnostic]| ds.iter().filter(|x| x.code == d.code).count();
                assert!(
                    count(&after.diagnostics) < count(&a.diagnostics),
                    "{name}: `{}` does not remove {}:\n{fixed}",
                    fix.title,
                    d.code
                );
                let first = edits.last().unwrap().span.start;
                let line_start = src[..first].rfind('\n').map_or(0, |i| i + 1);
                let old_lines = src[line_start..].lines().next().unwrap_or("");
                let new_end = fixed[line_start..].find("\n}").map_or(fixed.len(), |i| line_start + i);
                let new_lines = &fixed[line_start..new_end.max(line_start)];
                let new_lines: Vec<&str> = new_lines
                    .lines()
                    .take(1 + fix.edits[0].text.matches('\n').count())
                    .collect();
                shown.push_str(&format!(
                    "{name}: {}: {}\n  - {}\n{}\n",
                    d.code,
                    fix.title,
                    old_lines.trim_end(),
                    new_lines
                        .iter()
                        .map(|l| format!("  + {l}"))
                        .collect::<Vec<_>>()
                        .join("\n")
                ));
            }
        }
    }
    insta::assert_snapshot!(shown);
}

/// The all-kinds fixture holds a task of every kind in the catalog, so a new
/// kind is checked, formatted and lowered with the others.
#[test]
fn every_kind_is_in_the_all_kinds_fixture() {
    let (_, a) = analyze_file(&fixtures("ok").join("all-kinds.kflow"));
    let used: Vec<&str> = a
        .flows
        .iter()
        .flat_map(|f| f.plan.nodes.iter().map(|n| n.kind.as_str()))
        .collect();
    let missing: Vec<&str> = kflow_compiler::catalog::KINDS
        .iter()
        .map(|k| k.name)
        .filter(|k| !used.contains(k))
        .collect();
    assert!(missing.is_empty(), "add a task of each to all-kinds.kflow: {missing:?}");
}
