//! The errors of a spec: every problem, each with where it is and what to do.

use std::fmt;

use serde::Serialize;

/// One thing wrong with a spec, at one place in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Where: a JSON path such as `workloads.web.resources.memory`; empty for the whole
    /// document (syntax errors, a document that is not an object).
    pub path: String,
    /// What is wrong, phrased so that a person knows what to change.
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "(document): {}", self.reason)
        } else {
            write!(f, "{}: {}", self.path, self.reason)
        }
    }
}

/// A spec that was rejected, with every problem found in it in document order.
///
/// Validation never stops at the first problem: an operator fixing a spec should see
/// all of them at once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Invalid {
    /// Never empty.
    pub problems: Vec<Problem>,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "the spec has {n} problem{}",
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
}

impl Invalid {
    pub(crate) fn whole_document(reason: impl Into<String>) -> Self {
        Invalid {
            problems: vec![Problem {
                path: String::new(),
                reason: reason.into(),
            }],
        }
    }
}
