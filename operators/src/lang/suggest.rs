//! "Did you mean …?" for names in configs and expressions.

/// The candidate closest to `name` within an edit distance of 2 (or a third of its length).
pub fn did_you_mean<'a>(name: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(2);
    candidates.iter().map(|c| (strsim::levenshtein(name, c), *c)).filter(|(d, _)| *d <= limit).min().map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    #[test]
    fn suggests_close_names_only() {
        assert_eq!(super::did_you_mean("fliter", &["filter", "map"]), Some("filter"));
        assert_eq!(super::did_you_mean("zzzzzz", &["filter", "map"]), None);
    }
}
