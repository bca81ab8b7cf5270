//! Configuration problems: one per mistake, each naming file, position and field.

use std::fmt;
use std::path::{Path, PathBuf};

use serde_saphyr::Spanned;

/// One mistake in a configuration or task file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    /// 1-based line and column, when known.
    pub pos: Option<(usize, usize)>,
    /// Field path such as `output.format` or `notify[1].channel` (may be empty).
    pub field: String,
    pub message: String,
}

impl Problem {
    pub fn new(file: &Path, field: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem {
            file: file.to_path_buf(),
            pos: None,
            field: field.into(),
            message: message.into(),
        }
    }

    /// A problem located at a spanned value.
    pub fn at<T>(
        file: &Path,
        span: &Spanned<T>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Problem {
        let loc = span.referenced;
        let pos = (loc.line() > 0).then(|| (loc.line() as usize, loc.column() as usize));
        Problem {
            file: file.to_path_buf(),
            pos,
            field: field.into(),
            message: message.into(),
        }
    }
}

/// One line, `file:line:col: field: message`; a URL quoted in the message (a value that
/// was given where something else was expected) is shown with its secrets redacted.
impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((line, col)) = self.pos {
            write!(f, ":{line}:{col}")?;
        }
        let message = super::redact_text(&self.message);
        if self.field.is_empty() {
            write!(f, ": {message}")
        } else {
            write!(f, ": {}: {message}", self.field)
        }
    }
}

pub use crate::suggest::{did_you_mean, hint};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_with_and_without_position() {
        let mut p = Problem::new(
            Path::new("tasks/a.yaml"),
            "output.format",
            "unknown format `xls`",
        );
        assert_eq!(
            p.to_string(),
            "tasks/a.yaml: output.format: unknown format `xls`"
        );
        p.pos = Some((3, 11));
        assert_eq!(
            p.to_string(),
            "tasks/a.yaml:3:11: output.format: unknown format `xls`"
        );
    }

    #[test]
    fn a_url_in_a_message_is_shown_redacted() {
        let p = Problem::new(
            Path::new("config.yaml"),
            "channels.mail.host",
            "expected a host name, got the URL `smtp://u:hunter2@mail`",
        );
        assert_eq!(
            p.to_string(),
            "config.yaml: channels.mail.host: expected a host name, got the URL `smtp://u:***@mail`"
        );
    }
}
