//! No input makes the compiler panic: arbitrary text and mutations of real
//! flows go through parsing, checking, every renderer and the formatter.
//! CI runs the default case count; a longer run:
//! `PROPTEST_CASES=20000 cargo test --release -p kflow-compiler --test no_panic`

use std::path::Path;

use kflow_compiler::analysis::{analyze, Options};
use kflow_compiler::render::{self, FileReport, HumanStyle};
use proptest::prelude::*;

fn corpus() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    for dir in [
        "tests/fixtures/ok",
        "tests/fixtures/fmt",
        "tests/fixtures/diagnostics",
        "../examples",
    ] {
        for e in std::fs::read_dir(root.join(dir)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "kflow") {
                let text = std::fs::read_to_string(&p).unwrap();
                if text.len() < 20_000 {
                    out.push(text);
                }
            }
        }
    }
    out.sort();
    out
}

fn exercise(src: &str) {
    // NOPANIC_DUMP=FILE keeps the input being tried, to find the one that crashes.
    if let Ok(p) = std::env::var("NOPANIC_DUMP") {
        std::fs::write(p, src).unwrap();
    }
    let a = analyze(src, &Options::default());
    let report = FileReport {
        path: "fuzz.kflow",
        src,
        diagnostics: &a.diagnostics,
    };
    let _ = render::human(
        &report,
        HumanStyle {
            color: false,
            width: 80,
        },
    );
    let _ = render::json(std::slice::from_ref(&report));
    let _ = render::sarif(std::slice::from_ref(&report));
    let _ = render::github(&report);
    for f in &a.flows {
        let _ = kflow_compiler::graph::dot(&f.plan);
        let _ = kflow_compiler::graph::mermaid(&f.plan);
        let _ = serde_json::to_string(&f.plan).unwrap();
    }
    if let Ok(once) = kflow_compiler::format::format(src) {
        let twice = kflow_compiler::format::format(&once).expect("formatted output parses");
        assert_eq!(once, twice, "formatting is idempotent");
        assert_eq!(comments(src), comments(&once), "formatting keeps every comment");
    }
}

fn comments(src: &str) -> Vec<String> {
    let (file, _) = kflow_compiler::grammar::parse(src);
    let mut v: Vec<String> = file.comments.iter().map(|c| c.text.trim().to_string()).collect();
    v.sort();
    v
}

#[derive(Debug, Clone)]
enum Edit {
    Insert(usize, String),
    Delete(usize, usize),
    Duplicate(usize, usize),
    Truncate(usize),
}

const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    "(",
    ")",
    "\"",
    "\"\"\"",
    "${",
    ":",
    ",",
    ".",
    "=",
    "==",
    "!",
    "??",
    "@",
    "&&",
    "||",
    "//",
    "/*",
    "*/",
    "\n",
    "task",
    "flow",
    "try",
    "catch",
    "finally",
    "for",
    "in",
    "input",
    "let",
    "secret",
    "output",
    "assert",
    "on",
    "after",
    "5m",
    "-1",
    "é",
    "🚀",
    "\\",
    "\u{0}",
    "digest(\"sha256:",
    "docker.build",
    "x.y",
    "?",
];

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), prop::sample::select(TOKENS)).prop_map(|(i, t)| Edit::Insert(i, t.to_string())),
        (any::<usize>(), "\\PC{0,6}").prop_map(|(i, s)| Edit::Insert(i, s)),
        (any::<usize>(), 0usize..40).prop_map(|(i, n)| Edit::Delete(i, n)),
        (any::<usize>(), 0usize..60).prop_map(|(i, n)| Edit::Duplicate(i, n)),
        any::<usize>().prop_map(Edit::Truncate),
    ]
}

fn floor(s: &str, i: usize) -> usize {
    let mut i = i % (s.len() + 1);
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn apply(mut s: String, e: &Edit) -> String {
    match e {
        Edit::Insert(i, t) => {
            let i = floor(&s, *i);
            s.insert_str(i, t);
        }
        Edit::Delete(i, n) => {
            let a = floor(&s, *i);
            let b = floor(&s, (a + n).min(s.len()));
            if a <= b {
                s.replace_range(a..b, "");
            }
        }
        Edit::Duplicate(i, n) => {
            let a = floor(&s, *i);
            let b = floor(&s, (a + n).min(s.len()));
            if a <= b {
                let chunk = s[a..b].to_string();
                s.insert_str(b, &chunk);
            }
        }
        Edit::Truncate(i) => {
            let i = floor(&s, *i);
            s.truncate(i);
        }
    }
    s
}

proptest! {
    // 256 cases unless PROPTEST_CASES says otherwise.
    #[test]
    fn mutated_flows(pick in any::<prop::sample::Index>(), edits in prop::collection::vec(edit(), 1..8)) {
        let corpus = corpus();
        let mut src = corpus[pick.index(corpus.len())].clone();
        for e in &edits {
            src = apply(src, e);
        }
        exercise(&src);
    }

    #[test]
    fn arbitrary_text(src in "\\PC{0,400}") {
        exercise(&src);
    }

    #[test]
    fn token_soup(tokens in prop::collection::vec(prop::sample::select(TOKENS), 0..120)) {
        exercise(&tokens.join(" "));
    }
}

/// `n` tasks, each after the one before (and the first after the last when
/// `cycle`).
fn chain(n: usize, cycle: bool) -> String {
    let mut src = String::from("flow chain {\n");
    let first_after = if cycle {
        format!(", after: [t{}]", n - 1)
    } else {
        String::new()
    };
    src.push_str(&format!("  task t0 = log {{ message: \"x\"{first_after} }}\n"));
    for i in 1..n {
        src.push_str(&format!(
            "  task t{i} = log {{ message: \"x\", after: [t{}] }}\n",
            i - 1
        ));
    }
    src.push_str("}\n");
    src
}

/// Depth is no danger: a 100,000-task chain checks (and graphs) on a test
/// thread's 2 MiB stack, and a 10,000-task cycle is one short diagnostic.
#[test]
fn long_chains_and_cycles_need_no_deep_stack() {
    let a = analyze(&chain(100_000, false), &Options::default());
    assert!(a.diagnostics.is_empty(), "{:?}", a.diagnostics.first());
    let plan = &a.flows[0].plan;
    assert_eq!(plan.nodes.len(), 100_000);
    assert!(!kflow_compiler::graph::dot(plan).is_empty());
    let src = chain(10_000, true);
    let a = analyze(&src, &Options::default());
    assert_eq!(a.diagnostics.len(), 1);
    let d = &a.diagnostics[0];
    assert_eq!(d.code, "kflow::graph::cycle");
    assert!(d.message.contains("… 9988 more …"), "{}", d.message);
    assert!(d.secondary.len() <= 12);
    let report = FileReport {
        path: "chain.kflow",
        src: &src,
        diagnostics: &a.diagnostics,
    };
    assert!(render::human(
        &report,
        HumanStyle {
            color: false,
            width: 80
        }
    )
    .contains("dependency cycle"));
}
