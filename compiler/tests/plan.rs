//! The plan's structure: dependency edges, scopes and types as the runtime
//! will see them.

use kflow_compiler::analysis::{analyze, Options};
use kflow_compiler::ir::{DepKind, Part, Plan, ScopeKind};
use kflow_compiler::types::Ty;

fn plan(src: &str) -> Plan {
    let a = analyze(src, &Options::default());
    assert!(a.diagnostics.is_empty(), "{:#?}", a.diagnostics);
    a.flows.into_iter().next().unwrap().plan
}

fn deps(p: &Plan, name: &str) -> Vec<(String, DepKind)> {
    let n = p.nodes.iter().find(|n| n.name == name).unwrap();
    let mut v: Vec<(String, DepKind)> = n.deps.iter().map(|d| (p.nodes[d.node].name.clone(), d.kind)).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn reading_a_task_inside_a_try_waits_for_the_whole_block() {
    let p = plan(
        r#"flow f {
  try {
    task a = log { message: "a" }
    task b = shell.run { cmd: ["true"] }
  } finally {
    task c = log { message: "${b.exit_code ?? 1}" }
  }
  task d = log { message: "${b.stdout}" }
}"#,
    );
    assert_eq!(
        deps(&p, "d"),
        [("a".into(), DepKind::Order), ("b".into(), DepKind::Data)]
    );
    // Inside the block's finally, only the data edge: finally waits for the
    // block to settle through the scope, not to succeed.
    assert_eq!(deps(&p, "c"), [("b".into(), DepKind::Data)]);
    let ScopeKind::Try { body, catch, finally } = &p.scopes[0].kind else {
        panic!()
    };
    assert_eq!((body.len(), catch.len(), finally.len()), (2, 0, 1));
    let c = p.nodes.iter().find(|n| n.name == "c").unwrap();
    assert_eq!(c.scope.unwrap().part, Part::Finally);
}

#[test]
fn after_when_and_lets_make_edges() {
    let p = plan(
        r#"flow f {
  task a = shell.run { cmd: ["true"] }
  let code = a.exit_code
  task b = log { message: "x", when: code == 0 }
  task c = log { message: "y", after: [b] }
}"#,
    );
    assert_eq!(deps(&p, "b"), [("a".into(), DepKind::Data)]);
    assert_eq!(deps(&p, "c"), [("b".into(), DepKind::Order)]);
    assert!(p.nodes[1].when.is_some());
}

#[test]
fn loops_are_scopes_and_their_outputs_lists() {
    let a = analyze(
        r#"flow f {
  input words: list<string> = ["a", "b"]
  task base = shell.run { cmd: ["true"] }
  for w in words {
    task each = shell.run { cmd: ["echo", w, base.stdout] }
  }
  output all = each.stdout
}"#,
        &Options::default(),
    );
    assert!(a.diagnostics.is_empty(), "{:#?}", a.diagnostics);
    let p = &a.flows[0].plan;
    let ScopeKind::For { var, body, .. } = &p.scopes[0].kind else {
        panic!()
    };
    assert_eq!(var, "w");
    assert_eq!(body, &[1]);
    assert_eq!(p.outputs[0].ty, Ty::list(Ty::String));
}

#[test]
fn property_types_come_from_the_catalog() {
    let p = plan(
        r#"flow f {
  task b = docker.build { context: "." }
  task push = docker.push { image: b.image, to: "127.0.0.1:5000/a:1" }
  task run = container.run { image: push.pinned, cmd: ["true"], pull: never }
}"#,
    );
    let run = p.nodes.iter().find(|n| n.name == "run").unwrap();
    assert_eq!(run.props["image"].ty.to_string(), "image|pinned|ref");
    assert_eq!(run.props["pull"].ty.to_string(), "never|missing|always");
    assert_eq!(run.kind, "container.run");
}

#[test]
fn a_let_cannot_read_a_loop_variable() {
    let a = analyze(
        "flow f {\n  for w in [\"a\"] {\n    let up = \"${w}!\"\n    task t = log { message: up }\n  }\n  task u = log { message: w }\n}\n",
        &Options::default(),
    );
    let msgs: Vec<&str> = a.diagnostics.iter().map(|d| d.message.as_str()).collect();
    assert_eq!(msgs, ["`w` is not in scope here", "`w` is not in scope here"]);
}

#[test]
fn a_task_read_several_times_is_one_data_dependency() {
    let p = plan(
        r#"flow f {
  task a = shell.run { cmd: ["true"] }
  task b = shell.run { cmd: ["echo", a.stdout, a.stderr], after: [a] }
  task c = shell.run { cmd: ["echo", "x"], after: [a] }
  task d = shell.run { cmd: ["echo", c.stdout], after: [c, a] }
}"#,
    );
    assert_eq!(deps(&p, "b"), [("a".into(), DepKind::Data)]);
    assert_eq!(deps(&p, "c"), [("a".into(), DepKind::Order)]);
    assert_eq!(
        deps(&p, "d"),
        [("a".into(), DepKind::Order), ("c".into(), DepKind::Data)]
    );
}

#[test]
fn scopes_are_listed_by_id() {
    let p = plan(
        r#"flow f {
  try {
    for x in ["a"] {
      try {
        task a = log { message: x }
      } finally {
        task b = log { message: "b" }
      }
    }
  } finally {
    task c = log { message: "c" }
  }
}"#,
    );
    for (i, s) in p.scopes.iter().enumerate() {
        assert_eq!(s.id, i);
    }
    assert!(matches!(p.scopes[1].kind, ScopeKind::For { .. }));
}
