//! The language server, driven over stdio as an editor does. Scenarios are
//! data: each `tests/lsp/*.kflow` holds a document with cursor marks (`$1`,
//! `$2`, …) and, after a `### requests` line, requests at those marks; the
//! answers are rendered readably and snapshotted.

#[path = "lsp/client.rs"]
mod client;

use std::path::Path;

use client::{apply_edits, offset, position, Client};
use serde_json::{json, Value};

/// A fixture: the document without its marks, and the marks' offsets.
struct Fixture {
    text: String,
    marks: Vec<(String, usize)>,
    requests: Vec<String>,
}

fn parse_fixture(src: &str) -> Fixture {
    let (doc, reqs) = src.split_once("### requests\n").expect("a `### requests` line");
    let mut text = String::new();
    let mut marks = Vec::new();
    let mut rest = doc;
    while let Some(i) = rest.find('$') {
        let digits = rest[i + 1..].chars().take_while(char::is_ascii_digit).count();
        text.push_str(&rest[..i]);
        if digits == 0 {
            text.push('$');
        } else {
            marks.push((rest[i..i + 1 + digits].to_string(), text.len()));
        }
        rest = &rest[i + 1 + digits..];
    }
    text.push_str(rest);
    let requests = reqs
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    Fixture { text, marks, requests }
}

fn range_text(text: &str, range: &Value) -> String {
    let (a, b) = (offset(text, &range["start"]), offset(text, &range["end"]));
    format!(
        "{}:{}-{}:{} `{}`",
        range["start"]["line"],
        range["start"]["character"],
        range["end"]["line"],
        range["end"]["character"],
        &text[a..b]
    )
}

fn show_diagnostics(text: &str, diags: &[Value]) -> String {
    diags
        .iter()
        .map(|d| {
            let message = d["message"].as_str().unwrap().replace('\n', "\n    ");
            format!(
                "{} {}: {message}\n",
                range_text(text, &d["range"]),
                d["code"].as_str().unwrap()
            )
        })
        .collect()
}

const TOKEN_TYPES: &[&str] = &[
    "keyword",
    "type",
    "class",
    "parameter",
    "variable",
    "function",
    "property",
    "method",
    "enumMember",
    "string",
    "number",
    "comment",
    "operator",
];
const TOKEN_MODIFIERS: &[&str] = &["declaration", "readonly", "documentation", "defaultLibrary"];

fn show_tokens(text: &str, data: &[Value]) -> String {
    let lines: Vec<&str> = text.split('\n').collect();
    let (mut line, mut col) = (0usize, 0usize);
    let mut out = String::new();
    for t in data.chunks(5) {
        let n = |i: usize| t[i].as_u64().unwrap() as usize;
        if n(0) > 0 {
            line += n(0);
            col = n(1);
        } else {
            col += n(1);
        }
        let units: Vec<u16> = lines[line].encode_utf16().collect();
        let word = String::from_utf16_lossy(&units[col..col + n(2)]);
        let mods: Vec<&str> = (0..TOKEN_MODIFIERS.len())
            .filter(|b| n(4) & (1 << b) != 0)
            .map(|b| TOKEN_MODIFIERS[b])
            .collect();
        out.push_str(&format!("{line}:{col} `{word}` {} {}\n", TOKEN_TYPES[n(3)], mods.join(",")).replace(" \n", "\n"));
    }
    out
}

fn show_symbols(symbols: &[Value], depth: usize, out: &mut String) {
    for s in symbols {
        out.push_str(&format!(
            "{}{} (kind {}){}\n",
            "  ".repeat(depth),
            s["name"].as_str().unwrap(),
            s["kind"],
            s["detail"].as_str().map(|d| format!(" {d}")).unwrap_or_default()
        ));
        if let Some(children) = s["children"].as_array() {
            show_symbols(children, depth + 1, out);
        }
    }
}

fn run_request(c: &mut Client, uri: &str, fx: &Fixture, line: &str) -> String {
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = |i: usize| {
        let name = words.get(i).unwrap_or_else(|| panic!("`{line}` needs a mark"));
        let (_, off) = fx
            .marks
            .iter()
            .find(|(m, _)| m == name)
            .unwrap_or_else(|| panic!("no mark {name}"));
        json!({ "textDocument": { "uri": uri }, "position": position(&fx.text, *off) })
    };
    let text = &fx.text;
    match words[0] {
        "hover" => {
            let r = c.request("textDocument/hover", at(1));
            match r["result"].as_object() {
                Some(h) => format!(
                    "{}\n{}\n",
                    range_text(text, &h["range"]),
                    h["contents"]["value"].as_str().unwrap()
                ),
                None => "(nothing)\n".into(),
            }
        }
        "completion" => {
            let r = c.request("textDocument/completion", at(1));
            let mut items: Vec<Value> = r["result"]["items"].as_array().cloned().unwrap_or_default();
            items.sort_by_key(|i| i["sortText"].as_str().unwrap_or("").to_string());
            let mut out = String::new();
            if let Some(first) = items.first() {
                out.push_str(&format!("replaces {}\n", range_text(text, &first["textEdit"]["range"])));
            }
            for i in &items {
                out.push_str(&format!(
                    "{} ({}) {}\n",
                    i["label"].as_str().unwrap(),
                    i["kind"],
                    i["detail"].as_str().unwrap_or("")
                ));
            }
            if items.is_empty() {
                out.push_str("(nothing)\n");
            }
            out
        }
        "definition" => {
            let r = c.request("textDocument/definition", at(1));
            match r["result"].as_object() {
                Some(l) => format!("{}\n", range_text(text, &l["range"])),
                None => "(nothing)\n".into(),
            }
        }
        "references" => {
            let mut p = at(1);
            p["context"] = json!({ "includeDeclaration": true });
            let r = c.request("textDocument/references", p);
            let refs = r["result"].as_array().cloned().unwrap_or_default();
            refs.iter()
                .map(|l| format!("{}\n", range_text(text, &l["range"])))
                .collect()
        }
        "rename" => {
            let prep = c.request("textDocument/prepareRename", at(1));
            let mut p = at(1);
            p["newName"] = json!(words[2]);
            let r = c.request("textDocument/rename", p);
            let mut out = format!(
                "prepare: {}\n",
                prep["result"]
                    .as_object()
                    .map_or("(nothing)".into(), |_| range_text(text, &prep["result"]))
            );
            match r.get("error") {
                Some(e) => out.push_str(&format!("error: {}\n", e["message"].as_str().unwrap())),
                None => {
                    let edits = r["result"]["changes"][uri].as_array().cloned().unwrap_or_default();
                    out.push_str(&apply_edits(text, &edits));
                }
            }
            out
        }
        "actions" => {
            let pos = at(1)["position"].clone();
            let r = c.request(
                "textDocument/codeAction",
                json!({ "textDocument": { "uri": uri }, "range": { "start": pos, "end": pos }, "context": { "diagnostics": [] } }),
            );
            let mut out = String::new();
            for a in r["result"].as_array().cloned().unwrap_or_default() {
                let edits = a["edit"]["changes"][uri].as_array().cloned().unwrap_or_default();
                let fixed = apply_edits(text, &edits);
                let changed: Vec<&str> = fixed.lines().filter(|l| !text.lines().any(|o| o == *l)).collect();
                out.push_str(&format!(
                    "{} [{}]\n{}\n",
                    a["title"].as_str().unwrap(),
                    a["diagnostics"][0]["code"].as_str().unwrap_or(""),
                    changed
                        .iter()
                        .map(|l| format!("  + {l}"))
                        .collect::<Vec<_>>()
                        .join("\n")
                ));
            }
            if out.is_empty() {
                out.push_str("(nothing)\n");
            }
            out
        }
        "format" => {
            let r = c.request(
                "textDocument/formatting",
                json!({ "textDocument": { "uri": uri }, "options": { "tabSize": 2, "insertSpaces": true } }),
            );
            match r["result"].as_array() {
                Some(edits) => {
                    let formatted = apply_edits(text, edits);
                    // The same as `kflow fmt`.
                    let fmt = std::process::Command::new(env!("CARGO_BIN_EXE_kflow"))
                        .args(["fmt", "-"])
                        .stdin(std::process::Stdio::piped())
                        .stdout(std::process::Stdio::piped())
                        .spawn()
                        .and_then(|mut p| {
                            use std::io::Write;
                            p.stdin.take().unwrap().write_all(text.as_bytes())?;
                            p.wait_with_output()
                        })
                        .unwrap();
                    assert_eq!(
                        formatted,
                        String::from_utf8_lossy(&fmt.stdout),
                        "formatting differs from kflow fmt"
                    );
                    formatted
                }
                None => "(nothing)\n".into(),
            }
        }
        "symbols" => {
            let r = c.request("textDocument/documentSymbol", json!({ "textDocument": { "uri": uri } }));
            let mut out = String::new();
            show_symbols(r["result"].as_array().unwrap(), 0, &mut out);
            out
        }
        "tokens" => {
            let r = c.request(
                "textDocument/semanticTokens/full",
                json!({ "textDocument": { "uri": uri } }),
            );
            show_tokens(text, r["result"]["data"].as_array().unwrap())
        }
        other => panic!("unknown request `{other}`"),
    }
}

#[test]
fn scenarios() {
    insta::glob!("lsp/*.kflow", |path| {
        let src = std::fs::read_to_string(path).unwrap();
        let fx = parse_fixture(&src);
        let mut c = Client::start(&[]);
        let uri = format!("file://{}", path.display());
        c.open(&uri, &fx.text);
        let diags = c.diagnostics(&uri, 1);
        let mut out = format!("== diagnostics\n{}", show_diagnostics(&fx.text, &diags));
        for req in &fx.requests {
            out.push_str(&format!("\n== {req}\n{}", run_request(&mut c, &uri, &fx, req)));
        }
        c.stop();
        insta::assert_snapshot!(out);
    });
}

/// The codes `kflow check` reports for a text, in order.
fn check_codes(text: &str) -> Vec<String> {
    let a = kflow_compiler::analysis::analyze(text, &kflow_compiler::analysis::Options::default());
    a.diagnostics.iter().map(|d| d.code.to_string()).collect()
}

fn codes(diags: &[Value]) -> Vec<String> {
    diags.iter().map(|d| d["code"].as_str().unwrap().to_string()).collect()
}

fn change(c: &mut Client, uri: &str, version: i64, text: &str, start: usize, end: usize, new: &str) {
    c.notify(
        "textDocument/didChange",
        json!({
            "textDocument": { "uri": uri, "version": version },
            "contentChanges": [{ "range": { "start": position(text, start), "end": position(text, end) }, "text": new }],
        }),
    );
}

/// A burst of edits sent without waiting is applied in order: the last
/// version's diagnostics are those of the text the edits make, and the
/// debounce publishes far fewer times than there were edits.
#[test]
fn a_burst_of_edits_applies_in_order_and_publishes_the_last_version() {
    let mut c = Client::start(&[]);
    let uri = "untitled:burst.kflow";
    let mut text = "flow f {\n  task a = log { message: \"🚀 \" }\n}\n".to_string();
    c.open(uri, &text);
    c.diagnostics(uri, 1);
    // Type `${missing}` after the emoji, one character per version, then a
    // second task on a new line.
    let at = text.find(" \" }").unwrap() + 1;
    let mut version = 1;
    let mut pos = at;
    for ch in "${missing} 構".chars().chain(std::iter::once('!')) {
        version += 1;
        let s = ch.to_string();
        change(&mut c, uri, version, &text, pos, pos, &s);
        text.insert_str(pos, &s);
        pos += s.len();
    }
    let end = text.rfind('}').unwrap();
    version += 1;
    let added = "  task b = log { message: a.nope }\n";
    change(&mut c, uri, version, &text, end, end, added);
    text.insert_str(end, added);
    let diags = c.diagnostics(uri, version);
    assert_eq!(codes(&diags), check_codes(&text), "{text}");
    assert!(codes(&diags).contains(&"kflow::name::unknown".to_string()), "{diags:?}");
    let published = c
        .stash
        .iter()
        .filter(|m| m["method"] == "textDocument/publishDiagnostics")
        .count();
    assert!(published < 5, "{published} publications for {version} versions");
    // A stale version (not newer than the document's) is ignored.
    change(&mut c, uri, version, &text, 0, 0, "garbage ");
    let r = c.request("textDocument/documentSymbol", json!({ "textDocument": { "uri": uri } }));
    assert_eq!(r["result"][0]["name"], "f", "{r}");
    c.stop();
}

/// A panic inside analysis is caught, reported as a log message, and the
/// server goes on serving (here the panic is injected by a test hook).
#[test]
fn a_panic_in_analysis_is_logged_and_the_server_lives_on() {
    let mut c = Client::start(&[("KFLOW_LSP_FAULT", "BOOM")]);
    let uri = "untitled:panic.kflow";
    c.open(uri, "flow f {\n  task a = log { message: \"BOOM\" }\n}\n");
    let log = c.wait_for("window/logMessage", |p| p["type"] == 1);
    let msg = log["message"].as_str().unwrap();
    assert!(msg.contains("failed") && msg.contains("injected fault"), "{msg}");
    let r = c.request(
        "textDocument/hover",
        json!({ "textDocument": { "uri": uri }, "position": { "line": 1, "character": 8 } }),
    );
    assert!(r.get("error").is_none() && r["result"].is_null(), "{r}");
    c.notify(
        "textDocument/didChange",
        json!({ "textDocument": { "uri": uri, "version": 2 }, "contentChanges": [{ "text": "flow f {\n  task a = log { message: \"ok\" }\n}\n" }] }),
    );
    assert!(c.diagnostics(uri, 2).is_empty());
    c.stop();
}

mod random_edits {
    use super::*;
    use proptest::prelude::*;

    /// Pieces of kflow and of noise that edits insert.
    const PIECES: &[&str] = &[
        "task ",
        "x = ",
        "docker.build",
        " { ",
        "}",
        "context: \".\"",
        "image: ",
        "build.",
        "push.pinned",
        "${",
        "\"",
        "\n",
        "[",
        "]",
        ",",
        ":",
        "🚀",
        "構",
        "é",
        "after: [",
        "input v: string\n",
        "for i in [1] {",
        "//",
        "/*",
        "$",
        "==",
        "@",
        "(",
        ")",
        ".",
        "retry: { attempts: ",
    ];

    #[derive(Debug, Clone)]
    enum Edit {
        Insert { at: usize, piece: usize },
        Delete { at: usize, len: usize },
    }

    fn edit() -> impl Strategy<Value = Edit> {
        prop_oneof![
            3 => (any::<usize>(), 0..PIECES.len()).prop_map(|(at, piece)| Edit::Insert { at, piece }),
            1 => (any::<usize>(), 1usize..12).prop_map(|(at, len)| Edit::Delete { at, len }),
        ]
    }

    fn floor(text: &str, mut i: usize) -> usize {
        i = i.min(text.len());
        while !text.is_char_boundary(i) {
            i -= 1;
        }
        i
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

        /// Random edits, each followed by a random request, never crash the
        /// server or get an error answer, and the server's text stays the
        /// client's: its last diagnostics are `kflow check`'s.
        #[test]
        fn never_crash_and_keep_the_text_in_step(edits in prop::collection::vec((edit(), any::<usize>(), 0..6usize), 1..40)) {
            let mut c = Client::start(&[]);
            let uri = "untitled:random.kflow";
            let mut text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/supply-chain.kflow")).unwrap();
            c.open(uri, &text);
            let mut version = 1;
            for (e, at, request) in edits {
                version += 1;
                let (start, end, new) = match e {
                    Edit::Insert { at, piece } => {
                        let p = floor(&text, at % (text.len() + 1));
                        (p, p, PIECES[piece].to_string())
                    }
                    Edit::Delete { at, len } => {
                        let a = floor(&text, at % (text.len() + 1));
                        (a, floor(&text, a + len), String::new())
                    }
                };
                change(&mut c, uri, version, &text, start, end, &new);
                text.replace_range(start..end, &new);
                let p = json!({ "textDocument": { "uri": uri }, "position": position(&text, floor(&text, at % (text.len() + 1))) });
                let r = match request {
                    0 => c.request("textDocument/completion", p),
                    1 => c.request("textDocument/hover", p),
                    2 => c.request("textDocument/semanticTokens/full", json!({ "textDocument": { "uri": uri } })),
                    3 => c.request("textDocument/documentSymbol", json!({ "textDocument": { "uri": uri } })),
                    4 => c.request("textDocument/codeAction", json!({ "textDocument": { "uri": uri }, "range": { "start": p["position"], "end": p["position"] }, "context": { "diagnostics": [] } })),
                    _ => c.request("textDocument/formatting", json!({ "textDocument": { "uri": uri }, "options": { "tabSize": 2, "insertSpaces": true } })),
                };
                prop_assert!(r.get("error").is_none(), "{r}");
            }
            let diags = c.diagnostics(uri, version);
            prop_assert_eq!(codes(&diags), check_codes(&text));
            let errors: Vec<&Value> = c.stash.iter().filter(|m| m["method"] == "window/logMessage" && m["params"]["type"] == 1).collect();
            prop_assert!(errors.is_empty(), "{errors:?}");
            c.stop();
        }
    }
}

/// The VS Code extension's files parse, and its grammar knows every
/// function and severity the compiler does.
#[test]
fn the_vscode_extension_is_well_formed() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("editors/vscode");
    let read = |f: &str| -> Value { serde_json::from_str(&std::fs::read_to_string(dir.join(f)).unwrap()).unwrap() };
    let package = read("package.json");
    assert_eq!(package["contributes"]["languages"][0]["extensions"][0], ".kflow");
    let grammar = read("syntaxes/kflow.tmLanguage.json").to_string();
    for f in kflow_compiler::functions::names() {
        assert!(grammar.contains(f), "the grammar lacks the function {f}");
    }
    for s in kflow_compiler::types::SEVERITIES {
        assert!(grammar.contains(s), "the grammar lacks the severity {s}");
    }
    read("language-configuration.json");
}

/// Relative paths are checked next to a saved file; saving checks again, so
/// a folder created meanwhile clears the warning.
#[test]
fn saving_checks_paths_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ship.kflow");
    let text = "flow ship {\n  task build = docker.build { context: \"app\", tags: [ref(\"r/app:1\")] }\n}\n";
    std::fs::write(&path, text).unwrap();
    let uri = format!("file://{}", path.display());
    let mut c = Client::start(&[]);
    c.open(&uri, text);
    assert_eq!(codes(&c.diagnostics(&uri, 1)), vec!["kflow::lint::missing-path"]);
    std::fs::create_dir(dir.path().join("app")).unwrap();
    c.notify("textDocument/didSave", json!({ "textDocument": { "uri": uri } }));
    assert_eq!(codes(&c.diagnostics(&uri, 1)), Vec::<String>::new());
    c.stop();
}

/// Malformed messages get a JSON-RPC error each, and the session goes on:
/// bad JSON, invalid UTF-8, no Content-Length, a 200-deep array, a length
/// past the limit, and a body that is not a JSON-RPC object.
#[test]
fn malformed_messages_are_answered_and_the_server_goes_on() {
    let mut c = Client::start(&[]);
    let framed = |body: &[u8]| {
        let mut m = format!("Content-Length: {}\r\n\r\n", body.len()).into_bytes();
        m.extend_from_slice(body);
        m
    };
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let cases: Vec<(&str, Vec<u8>, i64)> = vec![
        ("bad JSON", framed(b"{\"jsonrpc\": \"2.0\", \"id\": 1,"), -32700),
        (
            "invalid UTF-8",
            framed(b"{\"jsonrpc\":\"2.0\",\"method\":\"\xff\xfe\"}"),
            -32700,
        ),
        (
            "no Content-Length",
            b"Content-Type: application/json\r\n\r\n".to_vec(),
            -32700,
        ),
        ("200-deep array", framed(deep.as_bytes()), -32700),
        ("not an object", framed(b"[1, 2, 3]"), -32600),
    ];
    for (what, bytes, code) in cases {
        c.send_raw(&bytes);
        let answer = c.next_answer();
        assert_eq!(answer["error"]["code"], json!(code), "{what}: {answer}");
        assert_eq!(answer["id"], Value::Null, "{what}");
        // Still serving.
        let uri = "file:///tmp/alive.kflow";
        let r = c.request(
            "textDocument/hover",
            json!({ "textDocument": { "uri": uri }, "position": { "line": 0, "character": 0 } }),
        );
        assert!(r.get("result").is_some() || r.get("error").is_some(), "{what}: {r}");
    }
    // An announced length beyond the limit is read past, not buffered.
    let big = 65 * 1024 * 1024;
    let mut msg = format!("Content-Length: {big}\r\n\r\n").into_bytes();
    msg.resize(msg.len() + big, b' ');
    c.send_raw(&msg);
    assert_eq!(c.next_answer()["error"]["code"], json!(-32600));
    c.stop();
}
