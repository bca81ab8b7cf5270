//! "Did you mean ...?": the closest of the known names to a mistyped one. A leaf module,
//! so that config, templates and the CLI can all use it without importing each other.

/// Suggests the closest candidate to `given` ("did you mean ...?"), if one is close.
pub fn did_you_mean<'a>(
    given: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(given, c), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// `" (did you mean `x`?)"` or an empty string.
pub fn hint<'a>(given: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    did_you_mean(given, candidates)
        .map(|c| format!(" (did you mean `{c}`?)"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_are_close_only() {
        assert_eq!(
            did_you_mean("schedul", ["schedule", "source"]),
            Some("schedule")
        );
        assert_eq!(did_you_mean("zzz", ["schedule", "source"]), None);
    }
}
