//! The `kflow` binary as users run it: exit codes, output formats, files
//! that do not exist, formatting in place.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn kflow(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kflow"))
        .args(args)
        .env_remove("NO_COLOR")
        .env("COLUMNS", "100")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("kflow runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

const BROKEN: &str = r#"flow release {
  secret key = env("KEY")
  task build = docker.build { context: "." }
  task sign = cosign.sign { image: build.image, key: key }
  task say = log { message: "key is ${key}" }
}
"#;

const WARNS: &str = r#"flow release {
  input unused: string = "x"
  task say = log { message: "hi" }
}
"#;

#[test]
fn examples_check_clean_with_exit_0() {
    let o = kflow(&["check", "examples"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).contains("checked: 0 errors, 0 warnings"));
}

#[test]
fn errors_exit_1_and_are_all_reported() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "broken.kflow", BROKEN);
    let o = kflow(&["check", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(out.contains("kflow::type::image-not-digest"), "{out}");
    assert!(out.contains("kflow::type::secret-leak"), "{out}");
    assert!(out.contains("2 errors"), "{out}");
    // Not a terminal: no colour codes.
    assert!(!out.contains('\u{1b}'), "escape codes in piped output");
}

#[test]
fn warnings_pass_unless_denied() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "warns.kflow", WARNS);
    let f = f.to_str().unwrap();
    assert_eq!(kflow(&["check", f]).status.code(), Some(0));
    assert_eq!(kflow(&["check", "--deny-warnings", f]).status.code(), Some(1));
    let o = kflow(&["check", "--deny-warnings", "--allow", "unused", f]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let o = kflow(&["check", "--allow", "no-such-lint", f]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("`no-such-lint` is not a lint"));
}

#[test]
fn json_format() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "broken.kflow", BROKEN);
    let o = kflow(&["check", "--format", "json", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["errors"], 2);
    let d = &v["diagnostics"][0];
    assert_eq!(d["code"], "kflow::type::image-not-digest");
    assert_eq!(d["start"]["line"], 4);
    assert_eq!(d["start"]["column"], 36);
    assert!(d["help"].as_str().unwrap().contains("push"));
    assert!(!d["labels"].as_array().unwrap().is_empty());
}

#[test]
fn sarif_format() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "broken.kflow", BROKEN);
    let o = kflow(&["check", "--format", "sarif", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["version"], "2.1.0");
    let run = &v["runs"][0];
    assert_eq!(run["tool"]["driver"]["name"], "kflow");
    let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
    let results = run["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    for r in results {
        let idx = r["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(rules[idx]["id"], r["ruleId"], "ruleIndex points at the rule");
        assert_eq!(r["level"], "error");
        let region = &r["locations"][0]["physicalLocation"]["region"];
        assert!(region["startLine"].as_u64().unwrap() >= 1);
        assert!(region["startColumn"].as_u64().unwrap() >= 1);
    }
}

#[test]
fn github_format() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "broken.kflow", BROKEN);
    let name = f.to_str().unwrap();
    let o = kflow(&["check", "--format", "github", name]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].starts_with(&format!(
            "::error file={},line=4,col=36,endLine=4,endColumn=47,title=kflow%3A%3Atype%3A%3Aimage-not-digest::",
            name.replace(':', "%3A").replace(',', "%2C")
        )),
        "{}",
        lines[0]
    );
    assert!(lines[0].contains("%0Ahelp: "), "help follows on its own line");
}

#[test]
fn missing_file_is_one_clear_line_and_exit_2() {
    let o = kflow(&["check", "no-such-file.kflow"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        "error: cannot read no-such-file.kflow: No such file or directory\n"
    );
    assert!(stdout(&o).is_empty());
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(kflow(&["check"]).status.code(), Some(2));
    assert_eq!(kflow(&["check", "--format", "xml", "examples"]).status.code(), Some(2));
    assert_eq!(kflow(&["frobnicate"]).status.code(), Some(2));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.kflow"), [0xff, 0xfe, 0x00]).unwrap();
    let o = kflow(&["check", dir.path().join("bad.kflow").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("is not UTF-8"));
}

#[test]
fn stdin_is_checked() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kflow"))
        .args(["check", "--format", "json", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(BROKEN.as_bytes()).unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["diagnostics"][0]["file"], "<stdin>");
}

#[test]
fn fmt_rewrites_checks_and_refuses_broken_files() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "ugly.kflow", "flow f{task a=log{message:\"x\"}}\n");
    let name = f.to_str().unwrap();
    let o = kflow(&["fmt", "--check", name]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("would reformat"));
    assert_eq!(kflow(&["fmt", name]).status.code(), Some(0));
    assert_eq!(
        std::fs::read_to_string(&f).unwrap(),
        "flow f {\n  task a = log { message: \"x\" }\n}\n"
    );
    assert_eq!(kflow(&["fmt", "--check", name]).status.code(), Some(0));

    let broken = write(dir.path(), "broken.kflow", "flow f { task a = log { message: } }\n");
    let o = kflow(&["fmt", broken.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("was not formatted"));
    assert_eq!(
        std::fs::read_to_string(&broken).unwrap(),
        "flow f { task a = log { message: } }\n"
    );
}

#[test]
fn examples_are_formatted() {
    let o = kflow(&["fmt", "--check", "examples"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
}

#[test]
fn graph_formats() {
    let dot = kflow(&["graph", "examples/compose-tests.kflow", "--format", "dot"]);
    assert_eq!(dot.status.code(), Some(0));
    let dot = stdout(&dot);
    assert!(dot.starts_with("digraph \"compose_tests\""));
    assert!(dot.contains("\"stack\" -> \"ready\";"));
    assert!(dot.contains("subgraph \"cluster_0_finally\""));

    let mermaid = stdout(&kflow(&[
        "graph",
        "examples/compose-tests.kflow",
        "--format",
        "mermaid",
    ]));
    assert!(mermaid.starts_with("flowchart LR"));

    let json = kflow(&["graph", "examples/promote.kflow", "--format", "json"]);
    let plan: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(plan["flow"], "promote");
    let nodes = plan["nodes"].as_array().unwrap();
    let released = nodes.iter().find(|n| n["name"] == "released").unwrap();
    assert_eq!(released["kind"], "registry.copy");
    assert_eq!(released["props"]["from"]["ty"], "pinned");

    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "broken.kflow", BROKEN);
    let o = kflow(&["graph", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no graph was produced"));
}

#[test]
fn docs_cover_the_catalog() {
    let o = kflow(&["docs", "catalog"]);
    assert_eq!(o.status.code(), Some(0));
    let out = stdout(&o);
    for kind in kflow_compiler::catalog::kind_names() {
        assert!(out.contains(&format!("#### `{kind}`")), "{kind} missing");
    }
}

/// The `.kflow` files below `dir`, with their text.
fn kflow_files_under(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            kflow_files_under(&p, out);
        } else if p.extension().is_some_and(|x| x == "kflow") {
            out.push((p.clone(), std::fs::read_to_string(&p).unwrap()));
        }
    }
}

/// Every flow README.md and docs/*.md show is the text of a file — an
/// example, a file in docs/flows, or a diagnostic's fixture — so what a
/// reader copies is what the tests check and, where a shell and Docker are
/// enough, run.
#[test]
fn every_documented_flow_is_a_tested_file() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["examples", "docs/flows", "compiler/tests/fixtures"] {
        kflow_files_under(&root.join(dir), &mut files);
    }
    let mut docs = vec![root.join("README.md")];
    docs.extend(
        std::fs::read_dir(root.join("docs"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "md")),
    );
    let (mut shown, mut loose) = (0, Vec::new());
    for doc in &docs {
        let text = std::fs::read_to_string(doc).unwrap();
        let mut at = 0;
        while let Some(start) = text[at..].find("```kflow\n").map(|i| at + i + "```kflow\n".len()) {
            let end = start + text[start..].find("```").unwrap();
            let block = &text[start..end];
            at = end + 3;
            // A fragment (a task, a `try`) is not a flow to copy.
            if !block.lines().any(|l| l.starts_with("flow ")) {
                continue;
            }
            shown += 1;
            if !files.iter().any(|(_, f)| shows(block, f)) {
                let line = text[..start].lines().count();
                loose.push(format!("{}:{line}", doc.strip_prefix(root).unwrap().display()));
            }
        }
    }
    assert!(shown >= 3, "{shown}");
    assert!(
        loose.is_empty(),
        "flows shown in the docs that are no file (keep each in docs/flows/ and show it as it is): {loose:?}"
    );
    // The docs' own flows check clean, warnings included (examples and
    // fixtures have their own tests).
    let o = kflow(&["check", "--deny-warnings", root.join("docs/flows").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
}

/// Whether a docs block shows `file`: the same lines, where a line cut
/// short for the page (ending in `…`) starts the file's line, and the page
/// may stop at such a line.
fn shows(block: &str, file: &str) -> bool {
    let (b, f): (Vec<&str>, Vec<&str>) = (block.trim_end().lines().collect(), file.trim_end().lines().collect());
    let cut = b.last().is_some_and(|l| l.ends_with('…'));
    (b.len() == f.len() || (cut && b.len() < f.len()))
        && b.iter().zip(&f).all(|(b, f)| match b.strip_suffix('…') {
            Some(cut) => f.starts_with(cut),
            None => b == f,
        })
}

/// The documented flows that need nothing but a shell run as shown.
#[test]
fn documented_shell_flows_run() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let state = tempfile::tempdir().unwrap();
    let st = state.path().to_str().unwrap();
    let o = kflow(&[
        "run",
        "--state",
        st,
        root.join("examples/hello.kflow").to_str().unwrap(),
        "-i",
        "name=you",
        "-i",
        "langs=en,fr",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("greet[fr] | bonjour you"), "{}", stdout(&o));
    let flow = root.join("docs/flows/shell-env.kflow");
    let o = kflow(&[
        "run",
        "--state",
        st,
        flow.to_str().unwrap(),
        "-i",
        "version=1; touch pwned",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("deploy | deploying 1; touch pwned"),
        "{}",
        stdout(&o)
    );
    assert!(!root.join("docs/flows/pwned").exists());
    let o = kflow(&[
        "run",
        "--state",
        st,
        root.join("docs/flows/test-each.kflow").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("report[web] | web: failed"), "{out}");
    assert!(out.contains("report[core] | skipped"), "{out}");
    assert!(
        out.contains(r#"outcomes = ["succeeded","failed","succeeded"]"#),
        "{out}"
    );
}

/// Colour on a terminal (a real pseudo-terminal through `script`), none with
/// `NO_COLOR`.
#[test]
fn colour_only_on_a_terminal() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: `script` (util-linux) is not installed, no pseudo-terminal to test with");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "broken.kflow", BROKEN);
    let run = |no_color: bool| {
        let mut cmd = Command::new("script");
        cmd.args([
            "-qec",
            &format!("{} check {}", env!("CARGO_BIN_EXE_kflow"), f.display()),
            "/dev/null",
        ]);
        if no_color {
            cmd.env("NO_COLOR", "1");
        } else {
            cmd.env_remove("NO_COLOR");
        }
        cmd.output().unwrap()
    };
    let coloured = run(false);
    assert_eq!(coloured.status.code(), Some(1));
    assert!(stdout(&coloured).contains("\u{1b}["), "colour on a terminal");
    let plain = run(true);
    assert!(stdout(&plain).contains("image-not-digest"));
    assert!(!stdout(&plain).contains("\u{1b}["), "NO_COLOR is honoured");
}

/// Symlink loops, several links to one file, FIFOs and dangling links under
/// a folder: every file is checked once, nothing hangs, what is skipped is
/// said.
#[test]
fn check_visits_each_file_once_and_skips_what_is_not_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let flows = d.join("flows");
    std::fs::create_dir(&flows).unwrap();
    write(
        &flows,
        "one.kflow",
        "flow one {\n  task t = log { message: \"hi\" }\n}\n",
    );
    // Loops: to itself, to its parent, and two folders linking each other.
    std::os::unix::fs::symlink(&flows, flows.join("self")).unwrap();
    std::os::unix::fs::symlink(d, flows.join("up")).unwrap();
    std::fs::create_dir(d.join("a")).unwrap();
    std::fs::create_dir(d.join("b")).unwrap();
    std::os::unix::fs::symlink(d.join("b"), d.join("a/to-b")).unwrap();
    std::os::unix::fs::symlink(d.join("a"), d.join("b/to-a")).unwrap();
    std::os::unix::fs::symlink(flows.join("one.kflow"), flows.join("again.kflow")).unwrap();
    std::os::unix::fs::symlink(d.join("gone"), flows.join("dangling.kflow")).unwrap();
    let fifo = flows.join("pipe.kflow");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo(3) with a valid path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);

    let started = std::time::Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_kflow"))
        .args(["check", d.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("1 file checked"), "{}", stdout(&o));
    assert!(stderr(&o).contains("pipe.kflow: not a regular file"), "{}", stderr(&o));
    assert!(stderr(&o).contains("dangling.kflow"), "{}", stderr(&o));
    // Named directly, a FIFO is an error, not a wait.
    let o = Command::new(env!("CARGO_BIN_EXE_kflow"))
        .args(["check", fifo.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("is not a regular file"), "{}", stderr(&o));
}

/// A folder of several flows is not run by taking its first file: `run`
/// and `graph` refuse, naming each flow and its file, or take the flow
/// `--flow` names from whichever file defines it.
#[test]
fn a_folder_of_several_flows_needs_a_choice() {
    for cmd in [&["run", "examples", "--dry-run"][..], &["graph", "examples"][..]] {
        let o = kflow(cmd);
        assert_eq!(o.status.code(), Some(2), "{cmd:?}: {}", stdout(&o));
        let err = stderr(&o);
        assert!(
            err.contains("examples holds 6 flows; choose one with --flow NAME"),
            "{err}"
        );
        for (flow, file) in [("hello", "hello.kflow"), ("compose_tests", "compose-tests.kflow")] {
            assert!(
                err.contains(&format!("  {flow:<14} examples/{file}")),
                "{flow} missing: {err}"
            );
        }
        assert!(stdout(&o).is_empty(), "nothing was run: {}", stdout(&o));
    }
    let o = kflow(&["run", "examples", "--flow", "hello", "--dry-run"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("greet"), "{}", stdout(&o));
    let o = kflow(&["graph", "examples", "--flow", "promote"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("digraph"), "{}", stdout(&o));
    let o = kflow(&["run", "examples", "--flow", "nope", "--dry-run"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no flow `nope` in examples"), "{}", stderr(&o));
    // A folder of one flow needs no choice.
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "only.kflow", WARNS);
    let o = kflow(&["run", dir.path().to_str().unwrap(), "--dry-run"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

/// A reader that goes away (`| head -1`) ends kflow quietly, as other
/// Unix tools end: no panic, no exit 101.
#[test]
fn a_closed_pipe_ends_kflow_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let many: String = (0..3000)
        .map(|i| format!("  task t{i} = log {{ message: \"{i}\" }}\n"))
        .collect();
    let flow = write(dir.path(), "many.kflow", &format!("flow many {{\n{many}}}\n"));
    let state = dir.path().join("state");
    let (state, flow) = (state.to_str().unwrap(), flow.to_str().unwrap());
    assert_eq!(kflow(&["run", "--state", state, flow]).status.code(), Some(0));
    let listed = stdout(&kflow(&["executions", "list", "--state", state]));
    let id = listed.split_whitespace().next().unwrap().to_string();
    for args in [
        vec!["run", "--json", "--state", state, flow],
        vec!["graph", "--format", "json", flow],
        vec!["logs", &id, "--state", state],
        vec!["executions", "show", &id, "--state", state],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kflow"))
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Read one line, then hang up.
        let mut first = [0u8; 1];
        std::io::Read::read_exact(child.stdout.as_mut().unwrap(), &mut first).unwrap();
        drop(child.stdout.take());
        let o = child.wait_with_output().unwrap();
        let err = stderr(&o);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_ne!(o.status.code(), Some(101), "{args:?}: {err}");
        assert!(err.is_empty(), "{args:?} said: {err}");
    }
    // The run whose reader went away went on to the end.
    let listed = stdout(&kflow(&["executions", "list", "--state", state]));
    assert_eq!(listed.matches("succeeded").count(), 2, "{listed}");
}

/// What bash offers after `kflow WORDS…` with the script of `kflow completions bash` loaded.
fn bash_completes(words: &str) -> String {
    let script = kflow(&["completions", "bash"]);
    assert_eq!(script.status.code(), Some(0), "{}", stderr(&script));
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "kflow.bash", &stdout(&script));
    let probe = format!(
        "source '{}'; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}}-1)); \
         COMP_LINE='{words}'; COMP_POINT=${{#COMP_LINE}}; _kflow kflow \"${{COMP_WORDS[-1]}}\"; \
         printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        file.display()
    );
    let o = Command::new("bash").args(["--norc", "-c", &probe]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn shell_completions_complete_subcommands_and_flags() {
    let subs = bash_completes("kflow ex");
    assert_eq!(subs.trim(), "executions", "{subs}");
    let flags = bash_completes("kflow run --dr");
    assert!(flags.lines().any(|l| l == "--dry-run"), "{flags}");
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let o = kflow(&["completions", shell]);
        assert_eq!(o.status.code(), Some(0), "{shell}: {}", stderr(&o));
        assert!(stdout(&o).contains("executions"), "{shell}");
    }
    let o = kflow(&["completions", "tcsh"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn man_pages_render_for_kflow_and_each_subcommand() {
    let page = kflow(&["man"]);
    assert_eq!(page.status.code(), Some(0), "{}", stderr(&page));
    let roff = stdout(&page);
    assert!(roff.starts_with(".ie") || roff.contains(".TH kflow 1"), "{roff}");
    let dir = tempfile::tempdir().unwrap();
    let o = kflow(&["man", "--dir", dir.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    for name in [
        "kflow.1",
        "kflow-run.1",
        "kflow-executions.1",
        "kflow-executions-list.1",
    ] {
        let file = dir.path().join(name);
        assert!(file.is_file(), "{name} missing: {}", stdout(&o));
        // `man` renders it (where man is installed; CI machines have it).
        if Path::new("/usr/bin/man").exists() {
            let r = Command::new("man")
                .arg("-l")
                .arg(&file)
                .env("MANPAGER", "cat")
                .env("MANWIDTH", "100")
                .output()
                .unwrap();
            assert!(r.status.success(), "{name}: {}", String::from_utf8_lossy(&r.stderr));
            let text = String::from_utf8_lossy(&r.stdout).to_string();
            assert!(text.contains("SYNOPSIS") || text.contains("Usage"), "{name}: {text}");
        }
    }
}

/// Every path docs/architecture.md names (a backquoted word with a `/`, or
/// a file name inside a folder it names just before) exists, so the map of
/// the code stays true as the code moves.
#[test]
fn the_architecture_names_only_paths_that_exist() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("docs/architecture.md")).unwrap();
    let crates = [
        "grammar", "compiler", "runtime", "lsp", "server", "src", "tests", "bench", "docs", "examples",
    ];
    let mut missing = Vec::new();
    let mut checked = 0;
    for (i, quoted) in text.split('`').enumerate() {
        // Odd pieces are inside backquotes; paths have no spaces.
        if i % 2 == 0 || quoted.contains(char::is_whitespace) || !quoted.contains('/') {
            continue;
        }
        let path = quoted.trim_end_matches('/');
        let first = path.split('/').next().unwrap_or("");
        if !crates.contains(&first) || path.contains(['*', '<', '{']) {
            continue;
        }
        checked += 1;
        if !root.join(path).exists() {
            missing.push(path.to_string());
        }
    }
    assert!(checked > 30, "only {checked} paths found: is the pattern still right?");
    assert!(
        missing.is_empty(),
        "docs/architecture.md names paths that do not exist: {missing:?}"
    );
}
