//! JSON paths for error messages, built without allocating.
//!
//! Validation walks a whole document and most of it is fine, so a path is a chain of
//! borrowed segments on the stack and only becomes a string when a problem is reported.

use std::fmt;

enum Segment<'a> {
    Root,
    Key(&'a str),
    Index(usize),
}

/// Where in the document a value sits, e.g. `workloads.web.expose[0].port`.
pub(crate) struct Path<'a> {
    parent: Option<&'a Path<'a>>,
    segment: Segment<'a>,
}

impl<'a> Path<'a> {
    pub(crate) const ROOT: Path<'static> = Path {
        parent: None,
        segment: Segment::Root,
    };

    pub(crate) fn key(&'a self, key: &'a str) -> Path<'a> {
        Path {
            parent: Some(self),
            segment: Segment::Key(key),
        }
    }

    pub(crate) fn index(&'a self, index: usize) -> Path<'a> {
        Path {
            parent: Some(self),
            segment: Segment::Index(index),
        }
    }
}

/// Keys that are plain identifiers print as `a.b`; anything else as `a["b.c"]`.
fn is_plain(key: &str) -> bool {
    !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(parent) = self.parent {
            parent.fmt(f)?;
        }
        let first = matches!(self.parent, Some(p) if matches!(p.segment, Segment::Root));
        match self.segment {
            Segment::Root => Ok(()),
            Segment::Key(key) if is_plain(key) => {
                if first {
                    f.write_str(key)
                } else {
                    write!(f, ".{key}")
                }
            }
            Segment::Key(key) => {
                // serde_json's string escaping gives a quoted, unambiguous key.
                let quoted = serde_json::Value::from(key).to_string();
                write!(f, "[{quoted}]")
            }
            Segment::Index(i) => write!(f, "[{i}]"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_dotted_keys_indices_and_quoted_keys() {
        let root = Path::ROOT;
        assert_eq!(root.to_string(), "");
        let w = root.key("workloads");
        let web = w.key("web");
        let expose = web.key("expose");
        let first = expose.index(0);
        let port = first.key("port");
        assert_eq!(port.to_string(), "workloads.web.expose[0].port");
        let odd = w.key("a.b \"c\"");
        assert_eq!(odd.to_string(), r#"workloads["a.b \"c\""]"#);
        let top = root.key("x y");
        assert_eq!(top.to_string(), r#"["x y"]"#);
    }
}
