//! The language's reserved words, for everything that reads kflow besides
//! the pest grammar (which spells each as a `kw_` rule; a test keeps the two
//! the same): the scan pre-pass, the parser's explanations of broken lines,
//! and the language server's lexer, highlighting, completion and rename.

/// Words that start a top-level item.
pub const TOP: &[&str] = &["flow", "import"];

/// Words that start an item of a flow or block.
pub const ITEM: &[&str] = &[
    "task",
    "input",
    "secret",
    "let",
    "output",
    "try",
    "for",
    "assert",
    "on",
    "concurrency",
];

/// Items that declare a name (`task NAME …`).
pub const DECLARING: &[&str] = &["task", "input", "secret", "let"];

/// Words that continue an item: `try`'s clauses and `for`'s `in`.
pub const CLAUSES: &[&str] = &["catch", "finally", "in"];

/// The boolean literals, reserved too.
pub const LITERALS: &[&str] = &["true", "false"];

/// Every reserved word: no name may be one.
pub fn all() -> impl Iterator<Item = &'static str> {
    [TOP, ITEM, CLAUSES, LITERALS].into_iter().flatten().copied()
}

/// Whether `word` is reserved.
pub fn is_keyword(word: &str) -> bool {
    all().any(|k| k == word)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRAMMAR: &str = include_str!("../kflow.pest");

    /// The words of the `kw_` rules and of `boolean`.
    fn grammar_keywords() -> Vec<&'static str> {
        let mut words: Vec<&str> = GRAMMAR
            .lines()
            .filter(|l| l.starts_with("kw_") || l.starts_with("boolean"))
            .flat_map(|l| l.split('"').skip(1).step_by(2))
            .collect();
        words.sort_unstable();
        words
    }

    #[test]
    fn the_lists_are_the_grammars_keywords() {
        let mut ours: Vec<&str> = all().collect();
        ours.sort_unstable();
        let before = ours.len();
        ours.dedup();
        assert_eq!(ours.len(), before, "a word listed twice");
        assert_eq!(ours, grammar_keywords());
    }

    #[test]
    fn item_starts_are_the_grammars() {
        let rule = GRAMMAR.split("item_start = _{").nth(1).unwrap();
        let rule = &rule[..rule.find('}').unwrap()];
        let mut starts: Vec<&str> = rule
            .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
            .filter_map(|w| w.strip_prefix("kw_"))
            .collect();
        starts.sort_unstable();
        let mut ours: Vec<&str> = TOP.iter().chain(ITEM).copied().collect();
        ours.sort_unstable();
        assert_eq!(starts, ours);
        assert!(DECLARING.iter().all(|d| ITEM.contains(d)));
    }
}
