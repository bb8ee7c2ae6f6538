//! Parser properties: errors are reported per task without hiding the rest
//! of the file, and no input makes it fail or crash.

use kflow_grammar::ast::{BinOp, ExprKind, Item, StrPart};
use kflow_grammar::diag::codes;
use kflow_grammar::parse;

fn tasks(src: &str) -> Vec<String> {
    let (file, _) = parse(src);
    file.flows
        .iter()
        .flat_map(|f| &f.items)
        .filter_map(|i| match i {
            Item::Task(t) => Some(t.name.name.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn three_broken_tasks_give_three_errors_and_the_rest_parses() {
    let src = r#"
flow release {
  input version: string
  task one = docker.build { context: ./app }
  task two = docker.push { image: one.image, to: "r/app:${version" }
  task good = log { message: "fine" }
  task three = log { message: "a" "b" }
  task also_good = sleep { duration: 1s }
  output x = good
}
"#;
    let (file, diags) = parse(src);
    assert_eq!(diags.len(), 3, "{diags:#?}");
    assert!(diags.iter().all(|d| d.code.starts_with("kflow::parse::")));
    let lines: Vec<usize> = diags.iter().map(|d| src[..d.span.start].lines().count()).collect();
    assert_eq!(lines, vec![4, 5, 7]);
    assert_eq!(tasks(src), vec!["one", "two", "good", "three", "also_good"]);
    assert_eq!(file.flows[0].items.len(), 7);
}

#[test]
fn a_broken_task_header_keeps_its_name() {
    let src = "flow f {\n  task build docker.build { context: \".\" }\n  task b = log { message: \"x\" }\n}\n";
    let (file, diags) = parse(src);
    assert_eq!(diags.len(), 1);
    assert!(diags[0].message.contains("`=`"), "{}", diags[0].message);
    match &file.flows[0].items[0] {
        Item::Error(e) => assert_eq!(e.name.as_ref().unwrap().name, "build"),
        other => panic!("expected an error item, got {other:?}"),
    }
}

#[test]
fn keywords_are_property_and_key_names() {
    let src = r#"flow f {
  task t = log { message: "x", task: 1, for: 2, output: { in: 3, try: 4 } }
}"#;
    let (file, diags) = parse(src);
    assert!(diags.is_empty(), "{diags:#?}");
    let Item::Task(t) = &file.flows[0].items[0] else {
        panic!()
    };
    let names: Vec<&str> = t.props.iter().map(|p| p.name.name.as_str()).collect();
    assert_eq!(names, ["message", "task", "for", "output"]);
}

#[test]
fn literals() {
    let src = r#"flow f {
  let a = -42
  let b = 1h30m
  let c = """
      line one
        indented ${x}
      """
  let d = "tab\t\u{1F680}\$"
}"#;
    let (file, diags) = parse(src);
    assert!(diags.is_empty(), "{diags:#?}");
    let values: Vec<&ExprKind> = file.flows[0]
        .items
        .iter()
        .map(|i| match i {
            Item::Let(l) => &l.value.kind,
            _ => panic!(),
        })
        .collect();
    assert_eq!(values[0], &ExprKind::Int(-42));
    assert_eq!(values[1], &ExprKind::Duration(5_400_000));
    match values[2] {
        ExprKind::Str(parts) => {
            assert_eq!(parts.len(), 2, "{parts:?}");
            assert!(matches!(&parts[0], StrPart::Text(t) if t == "line one\n  indented "));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(values[3], ExprKind::Str(p) if matches!(&p[0], StrPart::Text(t) if t == "tab\t🚀$")));
}

#[test]
fn operator_precedence() {
    let (file, _) = parse("flow f { let x = !a || b && c == d ?? e }");
    let Item::Let(l) = &file.flows[0].items[0] else {
        panic!()
    };
    // `||` is loosest: (!a) || (b && (c == (d ?? e)))
    let ExprKind::Binary(op, left, right) = &l.value.kind else {
        panic!()
    };
    assert_eq!(*op, BinOp::Or);
    assert!(matches!(left.kind, ExprKind::Not(_)));
    let ExprKind::Binary(op2, _, eq) = &right.kind else {
        panic!()
    };
    assert_eq!(*op2, BinOp::And);
    let ExprKind::Binary(op3, _, co) = &eq.kind else {
        panic!()
    };
    assert_eq!(*op3, BinOp::Eq);
    assert!(matches!(co.kind, ExprKind::Binary(BinOp::Coalesce, _, _)));
}

#[test]
fn doc_comments_attach_to_the_next_item() {
    let src = "/// The flow.\nflow f {\n  /// Version.\n  /// Second line.\n  input v: string\n  // not a doc\n  input w: string\n}\n";
    let (file, _) = parse(src);
    assert_eq!(file.flows[0].doc.as_deref(), Some("The flow."));
    assert_eq!(file.flows[0].items[0].doc(), Some("Version.\nSecond line."));
    assert_eq!(file.flows[0].items[1].doc(), None);
}

fn only_codes(src: &str) -> Vec<&'static str> {
    let (_, diags) = parse(src);
    diags.iter().map(|d| d.code).collect()
}

#[test]
fn hundred_thousand_nested_brackets() {
    for (open, close) in [("[", "]"), ("(", ")"), ("{", "}")] {
        let src = format!(
            "flow f {{\n  let x = {}{}\n  task t = log {{ message: \"ok\" }}\n}}\n",
            open.repeat(100_000),
            close.repeat(100_000)
        );
        let codes = only_codes(&src);
        assert!(codes.contains(&codes::TOO_DEEP), "{open}: {codes:?}");
        assert!(
            tasks(&src).contains(&"t".to_string()),
            "the rest of the file still parses"
        );
    }
    let unbalanced = format!("flow f {{ let x = {} }}", "[".repeat(100_000));
    assert!(only_codes(&unbalanced).contains(&codes::TOO_DEEP));
    let interp = format!("flow f {{ let x = {}{} }}", "\"${".repeat(50_000), "}\"".repeat(50_000));
    assert!(only_codes(&interp).contains(&codes::TOO_DEEP));
    let types = format!(
        "flow f {{ input x: {}string{} }}",
        "list<".repeat(100_000),
        ">".repeat(100_000)
    );
    assert!(only_codes(&types).contains(&codes::TOO_DEEP));
    let nots = format!("flow f {{ let x = {}true }}", "!".repeat(100_000));
    assert!(only_codes(&nots).contains(&codes::TOO_COMPLEX));
}

#[test]
fn fifty_megabyte_lines() {
    const MB50: usize = 50 * 1024 * 1024;
    // A huge string value: parses, no diagnostic.
    let s = format!("flow f {{ let x = \"{}\" }}", "a".repeat(MB50));
    assert!(only_codes(&s).is_empty());
    // A huge run of garbage: one syntax error.
    let g = format!(
        "flow f {{\n  {}\n  task t = log {{ message: \"ok\" }}\n}}",
        "#".repeat(MB50)
    );
    assert_eq!(only_codes(&g), vec![codes::SYNTAX]);
    assert_eq!(tasks(&g), vec!["t"]);
    // A huge operator chain: refused before pest builds millions of nodes.
    let chain = format!(
        "flow f {{\n  let x = a{}\n  task t = log {{ message: \"ok\" }}\n}}",
        ".a".repeat(MB50 / 2)
    );
    assert!(only_codes(&chain).contains(&codes::TOO_COMPLEX));
    assert_eq!(tasks(&chain), vec!["t"]);
}

#[test]
fn large_flows_parse_the_same_on_several_threads() {
    // Large enough to be cut into chunks, with broken items, comments, doc
    // comments and nested blocks spread over the whole body.
    let mut src = String::from("// head\n/// The flow.\nflow big {\n  input v: string = \"1\"\n");
    for i in 0..7000 {
        match i % 7 {
            0 => src.push_str(&format!("  /// Task {i}.\n  task t{i} = docker.build {{ context: \".\" }} // trailing\n")),
            1 => src.push_str(&format!("  task t{i} = log {{ message: \"${{t{}.image}} \\n\" }}\n", i - 1)),
            2 => src.push_str(&format!("  try {{\n    task t{i} = sleep {{ duration: 1s }}\n  }} finally {{\n    task f{i} = log {{ message: \"x\" }}\n  }}\n")),
            3 => src.push_str(&format!("  task t{i} = log {{ message: ./broken }}\n")),
            4 => src.push_str(&format!("  let l{i} = [1, 2, {{ a: !true || false }}]\n")),
            5 => src.push_str(&format!("  /* block {i} */ for x{i} in [\"a\"] {{ task t{i} = log {{ message: x{i} }} }}\n")),
            _ => src.push_str(&format!("  tsk t{i} = log {{}}\n")),
        }
    }
    src.push_str("  output o = t1.image\n}\n// tail\n");
    assert!(src.len() > 256 * 1024);
    if std::thread::available_parallelism().is_ok_and(|n| n.get() > 1) {
        assert!(kflow_grammar::parse_pieces(&src) > 1, "the input is parsed in pieces");
    }
    let (par_file, par_diags) = kflow_grammar::parse(&src);
    let (seq_file, seq_diags) = kflow_grammar::parse_sequential(&src);
    assert_eq!(format!("{par_file:?}"), format!("{seq_file:?}"));
    assert_eq!(par_diags, seq_diags);
    assert_eq!(par_diags.len(), 7000 / 7 * 2);
}
