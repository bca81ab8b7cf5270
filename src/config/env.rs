//! `${VAR}` interpolation of `config.yaml` string values (task files are never
//! interpolated).

/// Replaces `${NAME}` with the environment variable `NAME`; `$${` is a literal `${`.
pub fn interpolate(text: &str) -> Result<String, String> {
    interpolate_with(text, |name| std::env::var(name).ok())
}

pub(crate) fn interpolate_with(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(idx) = rest.find('$') {
        out.push_str(&rest[..idx]);
        let after = &rest[idx..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("${") {
            let end = tail
                .find('}')
                .ok_or_else(|| format!("unclosed `${{` in `{text}`"))?;
            let name = &tail[..end];
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(format!("invalid variable name `${{{name}}}`"));
            }
            let value =
                lookup(name).ok_or_else(|| format!("environment variable `{name}` is not set"))?;
            out.push_str(&value);
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolation() {
        let env = |n: &str| (n == "PW").then(|| "s3cret".to_string());
        assert_eq!(interpolate_with("a${PW}b", env).unwrap(), "as3cretb");
        assert_eq!(interpolate_with("$${PW} $5", env).unwrap(), "${PW} $5");
        assert_eq!(
            interpolate_with("${NOPE}", env).unwrap_err(),
            "environment variable `NOPE` is not set"
        );
        assert!(
            interpolate_with("${PW", env)
                .unwrap_err()
                .contains("unclosed")
        );
    }
}
