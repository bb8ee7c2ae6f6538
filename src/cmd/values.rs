//! How `kflow run` and `kflow executions show` print a flow's outputs: one
//! line per output, in the same form in both.

use kflow_runtime::printable::printable;
use serde_json::Value;

/// `name = value`, or `name (not produced)`.
pub fn output_line(name: &str, value: &Value) -> String {
    match value {
        Value::Null => format!("{name} (not produced)"),
        v => format!("{name} = {}", one_line(v)),
    }
}

/// A plain string as it is (a digest or a reference can be copied from
/// the terminal); a string that would not read back as itself on one line
/// (a line break, a control character, edge spaces, empty, or starting with
/// a quote) quoted and escaped as JSON writes it; anything else as JSON.
/// Never a raw control character.
pub fn one_line(value: &Value) -> String {
    match value {
        Value::String(s) if is_plain(s) => s.clone(),
        other => printable(&other.to_string()).into_owned(),
    }
}

fn is_plain(s: &str) -> bool {
    !s.is_empty() && s.trim() == s && !s.starts_with('"') && !s.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn plain_strings_stay_bare_and_the_rest_is_quoted() {
        assert_eq!(one_line(&json!("sha256:ab")), "sha256:ab");
        assert_eq!(one_line(&json!("two\nlines")), r#""two\nlines""#);
        assert_eq!(one_line(&json!(" padded")), r#"" padded""#);
        assert_eq!(one_line(&json!("")), r#""""#);
        assert_eq!(one_line(&json!("\"q\"")), r#""\"q\"""#);
        // JSON leaves C1 controls raw; they are escaped all the same.
        assert_eq!(one_line(&json!("a\u{9b}2J")), r#""a\u{9b}2J""#);
        assert_eq!(one_line(&json!(["a", 1])), r#"["a",1]"#);
        assert_eq!(output_line("n", &Value::Null), "n (not produced)");
    }
}
