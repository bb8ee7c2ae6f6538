//! Embeds the diagnostic fixtures (one per code) as the examples of the
//! generated reference (`kflow docs diagnostics`).

use std::path::Path;

fn main() {
    let dir = Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("tests/fixtures/diagnostics");
    println!("cargo::rerun-if-changed={}", dir.display());
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    entries.retain(|p: &std::path::PathBuf| p.extension().is_some_and(|e| e == "kflow"));
    entries.sort();
    let mut out = String::from("pub static EXAMPLES: &[(&str, &str)] = &[\n");
    for p in entries {
        let code = p.file_stem().unwrap().to_str().unwrap().replace('.', "::");
        out.push_str(&format!(
            "    ({code:?}, include_str!({:?})),\n",
            p.display().to_string()
        ));
    }
    out.push_str("];\n");
    let dest = Path::new(&std::env::var("OUT_DIR").unwrap()).join("examples.rs");
    std::fs::write(dest, out).unwrap();
}
