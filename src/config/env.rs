//! `${VAR}` interpolation of `config.yaml` string values (task files are never
//! interpolated), and the opening of `enc:v1:` sealed values in them
//! ([`super::secrets`]).

use super::secrets::{PREFIX, SecretsKey, token_len};

/// Replaces `${NAME}` with the environment variable `NAME` (`$${` is a literal `${`) and
/// each `enc:v1:…` value with the secret it seals (key from the environment, see
/// [`SecretsKey::from_env`]). Replaced text is not read again.
pub fn interpolate(text: &str) -> Result<String, String> {
    interpolate_with(text, |name| std::env::var(name).ok(), SecretsKey::from_env)
}

pub(crate) fn interpolate_with(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
    key: impl Fn() -> Result<SecretsKey, String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut opened: Option<SecretsKey> = None;
    loop {
        let dollar = rest.find('$');
        let sealed = rest.find(PREFIX);
        let idx = match (dollar, sealed) {
            (Some(d), Some(s)) => d.min(s),
            (Some(i), None) | (None, Some(i)) => i,
            (None, None) => break,
        };
        out.push_str(&rest[..idx]);
        let after = &rest[idx..];
        if after.starts_with(PREFIX) {
            let len = token_len(after);
            let k = match &opened {
                Some(k) => k,
                None => opened.insert(key()?),
            };
            out.push_str(&k.open(&after[..len])?);
            rest = &after[len..];
        } else if let Some(tail) = after.strip_prefix("$${") {
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

    fn no_key() -> Result<SecretsKey, String> {
        Err("no key".into())
    }

    #[test]
    fn interpolation() {
        let env = |n: &str| (n == "PW").then(|| "s3cret".to_string());
        assert_eq!(
            interpolate_with("a${PW}b", env, no_key).unwrap(),
            "as3cretb"
        );
        assert_eq!(
            interpolate_with("$${PW} $5", env, no_key).unwrap(),
            "${PW} $5"
        );
        assert_eq!(
            interpolate_with("${NOPE}", env, no_key).unwrap_err(),
            "environment variable `NOPE` is not set"
        );
        assert!(
            interpolate_with("${PW", env, no_key)
                .unwrap_err()
                .contains("unclosed")
        );
    }

    #[test]
    fn sealed_values_are_opened_in_place() {
        let key = SecretsKey::generate().unwrap();
        let token = key.seal("p@ss").unwrap();
        let env = |n: &str| (n == "U").then(|| format!("enc:v1:{}", "A".repeat(60)));
        let text = format!("postgres://${{U}}:{token}@db/x");
        // The variable's value is not read again: its `enc:v1:` stays text.
        let got = interpolate_with(&text, env, || Ok(key.clone())).unwrap();
        assert_eq!(
            got,
            format!("postgres://enc:v1:{}:p@ss@db/x", "A".repeat(60))
        );
        // No key is needed (nor looked for) without a sealed value.
        assert_eq!(interpolate_with("plain", env, no_key).unwrap(), "plain");
        assert_eq!(interpolate_with(&token, env, no_key).unwrap_err(), "no key");
    }
}
