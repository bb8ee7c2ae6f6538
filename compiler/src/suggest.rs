//! "Did you mean …" for near misses.

/// The candidate closest to `name`, when it is close enough to be a typo.
pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .filter(|c| *c != name)
        .map(|c| (strsim::damerau_levenshtein(name, c), c))
        .filter(|(d, c)| *d <= limit || (c.len() > 3 && (c.starts_with(name) || name.starts_with(*c))))
        .min_by_key(|(d, c)| (*d, c.len()))
        .map(|(_, c)| c)
}

/// ``did you mean `x`?`` or nothing.
pub fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    closest(name, candidates).map(|c| format!("did you mean `{c}`?"))
}

/// `a`, `b` or `c` — for lists of alternatives in messages.
pub fn list_or(items: &[&str]) -> String {
    list_with(items, "or")
}

/// `a`, `b` and `c`.
pub fn list_and(items: &[&str]) -> String {
    list_with(items, "and")
}

fn list_with(items: &[&str], conjunction: &str) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("`{i}`")).collect();
    match quoted.as_slice() {
        [] => "nothing".into(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} {conjunction} {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_misses() {
        assert_eq!(closest("imgae", ["image", "id"]), Some("image"));
        assert_eq!(
            closest("docker.biuld", ["docker.build", "docker.push"]),
            Some("docker.build")
        );
        assert_eq!(closest("zzz", ["image", "id"]), None);
    }
}
