//! Config errors for people: the `ConfigError` type (file, line, message)
//! and turning serde_yaml's messages into ones that start with the field,
//! with the line of the entry they are about.

use std::fmt;

use super::FIELDS;

/// A config error: what is wrong, where, in which field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub source_name: String,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}: line {}: {}", self.source_name, l, self.message),
            None => write!(f, "{}: {}", self.source_name, self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Turns a serde_yaml error into (line, message) where the message starts
/// with the field it is about whenever the line tells which one that is.
pub(super) fn explain_yaml_error(
    text: &str,
    line: Option<usize>,
    raw: &str,
) -> (Option<usize>, String) {
    // serde_yaml puts "at line L column C" inside or at the end of the
    // message; the line is reported on its own.
    let mut msg = raw.to_string();
    while let Some(i) = msg.find(" at line ") {
        let rest = &msg[i + " at line ".len()..];
        let digits = |s: &str| s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let n = digits(rest);
        let mut end = i + " at line ".len() + n;
        if let Some(col) = msg[end..].strip_prefix(" column ") {
            end += " column ".len() + digits(col);
        }
        msg.replace_range(i..end, "");
    }
    let msg = msg.replace(
        "expected struct Config",
        "expected settings as `key: value` lines (e.g. `policy: drop`)",
    );
    if let Some(rest) = msg.strip_prefix("duplicate field `") {
        let field = rest.split('`').next().unwrap_or_default();
        let line = find_top_level_key(text, field, 1).or(line);
        return (line, format!("{field}: is set twice"));
    }
    let names_field = FIELDS
        .iter()
        .any(|f| msg.starts_with(&format!("{f}:")) || msg.starts_with(&format!("{f}[")));
    if names_field || msg.starts_with("unknown field") {
        return (line, msg);
    }
    // A syntax error: name the setting whose block the line is in.
    match line.and_then(|l| governing_key(text, l)) {
        Some(key) => (line, format!("{key}: {msg}")),
        None => (line, msg),
    }
}

/// The top-level key whose block contains `line` (1-based).
fn governing_key(text: &str, line: usize) -> Option<String> {
    let mut key = None;
    for l in text.lines().take(line) {
        if l.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
            if let Some((k, _)) = l.split_once(':') {
                key = Some(k.trim().to_string());
            }
        }
    }
    key
}

/// Line (1-based) of the `skip`+1-th top-level `key:`.
pub(super) fn find_top_level_key(text: &str, key: &str, skip: usize) -> Option<usize> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| {
            l.strip_prefix(key)
                .is_some_and(|r| r.trim_start().starts_with(':'))
        })
        .nth(skip)
        .map(|(i, _)| i + 1)
}

/// First line (1-based) inside the block of `field` that mentions `needle`;
/// falls back to the line of the field itself.
pub(super) fn find_line(text: &str, field: &str, needle: &str) -> Option<usize> {
    find_nth_line(text, field, needle, 0)
}

/// Like [`find_line`], skipping the first `skip` mentions (for duplicates).
pub(super) fn find_nth_line(
    text: &str,
    field: &str,
    needle: &str,
    mut skip: usize,
) -> Option<usize> {
    let key = format!("{field}:");
    let mut in_field = false;
    let mut field_line = None;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let top_level = !line.starts_with(' ') && !line.starts_with('\t') && !line.starts_with('-');
        if top_level && !trimmed.is_empty() && !trimmed.starts_with('#') {
            in_field = trimmed.starts_with(&key);
            if in_field {
                field_line = Some(i + 1);
            }
        }
        if in_field
            && line.contains(needle)
            && (field_line != Some(i + 1) || trimmed.len() > key.len())
        {
            if skip == 0 {
                return Some(i + 1);
            }
            // A flow list (`[a, b, a]`) mentions the needle twice on one line.
            skip -= 1;
            if skip == 0 && line.matches(needle).count() > 1 {
                return Some(i + 1);
            }
        }
    }
    field_line
}
