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
    insta::glob!("lsp/*.kflow", |path: &Path| {
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
