//! docs/language.md embeds the generated reference (task catalog, diagnostic
//! codes); this test keeps it current. To refresh it after a catalog or
//! diagnostic change: `UPDATE_DOCS=1 cargo test -p kflow-compiler --test docs`.

use std::path::Path;

fn replace_section(doc: &str, name: &str, body: &str) -> String {
    let begin = format!("<!-- generated:{name} -->");
    let end = format!("<!-- end:{name} -->");
    let a = doc
        .find(&begin)
        .unwrap_or_else(|| panic!("docs/language.md lacks {begin}"))
        + begin.len();
    let b = doc.find(&end).unwrap_or_else(|| panic!("docs/language.md lacks {end}"));
    format!("{}\n{}\n{}", &doc[..a], body.trim_end(), &doc[b..])
}

#[test]
fn language_reference_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/language.md");
    let doc = std::fs::read_to_string(&path).unwrap();
    let mut want = replace_section(&doc, "catalog", &kflow_compiler::docs::catalog_markdown());
    want = replace_section(&want, "functions", &kflow_compiler::docs::functions_markdown());
    want = replace_section(&want, "triggers", &kflow_compiler::docs::triggers_markdown());
    want = replace_section(&want, "diagnostics", &kflow_compiler::docs::diagnostics_markdown());
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&path, &want).unwrap();
        return;
    }
    assert!(
        doc == want,
        "docs/language.md is out of date: run `UPDATE_DOCS=1 cargo test -p kflow-compiler --test docs`"
    );
}

#[test]
fn every_code_is_documented() {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/language.md")).unwrap();
    for c in kflow_compiler::codes::CODES {
        assert!(
            doc.contains(&format!("#### `{}`", c.code)),
            "{} is not documented",
            c.code
        );
    }
    for k in kflow_compiler::catalog::KINDS {
        assert!(
            doc.contains(&format!("#### `{}`", k.name)),
            "{} is not documented",
            k.name
        );
    }
}
