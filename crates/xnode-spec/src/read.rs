//! Typed reads from a `serde_json::Value` that record problems instead of stopping.
//!
//! Serde's derive stops at the first error, and the spec must report every problem
//! at once, so validation walks the parsed value with these helpers. Each returns
//! `None` after recording why, so the caller carries on with the rest of the document.

use std::fmt::Display;

use serde_json::{Map, Value};

use crate::error::Problem;
use crate::path::Path;

/// Collects the problems of one document.
#[derive(Default)]
pub(crate) struct Checker {
    pub(crate) problems: Vec<Problem>,
}

/// How a JSON value is named in an error ("found a string").
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl Checker {
    pub(crate) fn report(&mut self, path: &Path<'_>, reason: impl Display) {
        self.problems.push(Problem {
            path: path.to_string(),
            reason: reason.to_string(),
        });
    }

    /// Reports a value that fails a check phrased as `Result<T, reason>`.
    pub(crate) fn check<T>(&mut self, path: &Path<'_>, result: Result<T, String>) -> Option<T> {
        result.map_err(|reason| self.report(path, reason)).ok()
    }

    fn wrong_type(&mut self, path: &Path<'_>, expected: &str, found: &Value) {
        self.report(
            path,
            format_args!("expected {expected}, found {}", kind(found)),
        );
    }

    /// An object whose keys must all be in `fields`; unknown keys are reported, with a
    /// suggestion when one is a likely typo.
    pub(crate) fn object<'v>(
        &mut self,
        v: &'v Value,
        path: &Path<'_>,
        fields: &[&str],
    ) -> Option<&'v Map<String, Value>> {
        let Value::Object(map) = v else {
            self.wrong_type(path, "an object", v);
            return None;
        };
        for key in map.keys() {
            if !fields.contains(&key.as_str()) {
                let reason = match closest(key, fields) {
                    Some(near) => format!("unknown field; did you mean \"{near}\"?"),
                    None => format!("unknown field; expected one of: {}", fields.join(", ")),
                };
                self.report(&path.key(key), reason);
            }
        }
        Some(map)
    }

    /// An object with free-form keys (maps such as `labels` or `workloads`).
    pub(crate) fn map<'v>(
        &mut self,
        v: &'v Value,
        path: &Path<'_>,
    ) -> Option<&'v Map<String, Value>> {
        match v {
            Value::Object(map) => Some(map),
            _ => {
                self.wrong_type(path, "an object", v);
                None
            }
        }
    }

    pub(crate) fn array<'v>(&mut self, v: &'v Value, path: &Path<'_>) -> Option<&'v [Value]> {
        match v {
            Value::Array(items) => Some(items),
            _ => {
                self.wrong_type(path, "an array", v);
                None
            }
        }
    }

    pub(crate) fn string<'v>(&mut self, v: &'v Value, path: &Path<'_>) -> Option<&'v str> {
        match v {
            Value::String(s) => Some(s),
            _ => {
                self.wrong_type(path, "a string", v);
                None
            }
        }
    }

    pub(crate) fn bool(&mut self, v: &Value, path: &Path<'_>) -> Option<bool> {
        match v {
            Value::Bool(b) => Some(*b),
            _ => {
                self.wrong_type(path, "true or false", v);
                None
            }
        }
    }

    /// A whole number within `min..=max`.
    pub(crate) fn integer(
        &mut self,
        v: &Value,
        path: &Path<'_>,
        min: u64,
        max: u64,
    ) -> Option<u64> {
        let Value::Number(n) = v else {
            self.wrong_type(path, "a whole number", v);
            return None;
        };
        match n.as_u64() {
            Some(i) if (min..=max).contains(&i) => Some(i),
            _ if n.is_f64() => {
                self.report(path, format_args!("{n} is not a whole number"));
                None
            }
            _ => {
                self.report(path, format_args!("{n} is out of range ({min} to {max})"));
                None
            }
        }
    }

    /// An array whose items are each read by `item`; `None` if any item failed.
    pub(crate) fn list<T>(
        &mut self,
        v: &Value,
        path: &Path<'_>,
        mut item: impl FnMut(&mut Self, &Value, &Path<'_>) -> Option<T>,
    ) -> Option<Vec<T>> {
        let items = self.array(v, path)?;
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, v) in items.iter().enumerate() {
            match item(self, v, &path.index(i)) {
                Some(t) => out.push(t),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// An array of strings, each checked by `check`.
    pub(crate) fn strings<T>(
        &mut self,
        v: &Value,
        path: &Path<'_>,
        check: impl Fn(&str) -> Result<T, String>,
    ) -> Option<Vec<T>> {
        self.list(v, path, |c, v, p| {
            let s = c.string(v, p)?;
            c.check(p, check(s))
        })
    }
}

/// The known field nearest to a misspelt one, if it is close enough to be a typo.
/// Case is ignored: `mDNS` is a typo of `mdns`.
fn closest<'f>(key: &str, fields: &[&'f str]) -> Option<&'f str> {
    let key = key.to_lowercase();
    fields
        .iter()
        .map(|f| (edit_distance(&key, f), *f))
        .filter(|(d, f)| *d <= 2 && *d < f.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, f)| f)
}

/// Levenshtein distance, on short field names only.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().take(64).enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(cur).min(row[j])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_near_field_names_only() {
        let fields = ["command", "environment", "user"];
        assert_eq!(closest("comand", &fields), Some("command"));
        assert_eq!(closest("usr", &fields), Some("user"));
        assert_eq!(closest("COMMAND", &fields), Some("command"));
        assert_eq!(closest("resources", &fields), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn integer_reports_fractions_and_range() {
        let mut c = Checker::default();
        let root = Path::ROOT;
        let p = root.key("n");
        assert_eq!(c.integer(&serde_json::json!(5), &p, 1, 10), Some(5));
        assert_eq!(c.integer(&serde_json::json!(0), &p, 1, 10), None);
        assert_eq!(c.integer(&serde_json::json!(1.5), &p, 1, 10), None);
        assert_eq!(c.integer(&serde_json::json!(-3), &p, 1, 10), None);
        assert_eq!(c.integer(&serde_json::json!("5"), &p, 1, 10), None);
        let reasons: Vec<_> = c.problems.iter().map(|p| p.reason.as_str()).collect();
        assert_eq!(
            reasons,
            [
                "0 is out of range (1 to 10)",
                "1.5 is not a whole number",
                "-3 is out of range (1 to 10)",
                "expected a whole number, found a string",
            ]
        );
    }
}
