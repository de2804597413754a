//! The canonical form of a spec and its content hash.
//!
//! Two nodes holding the same spec must agree it is the same whatever the key order
//! or whitespace of the files they were given. The canonical form is the JSON with
//! object keys sorted by their UTF-8 bytes, no whitespace, and serde_json's escaping
//! and number formatting; the hash is SHA-256 over it. serde_json is built with
//! `float_roundtrip` so that a number read back from the canonical form is the same
//! number, which makes the form a fixed point.

use std::fmt;
use std::io::{self, Write};

use serde::{Serialize, Serializer};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// A spec's content hash, printed as `sha256:<64 hex digits>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpecHash(pub [u8; 32]);

impl fmt::Display for SpecHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sha256:")?;
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl Serialize for SpecHash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The canonical bytes of a JSON value.
pub fn canonical_json(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = write_canonical(&mut out, v);
    out
}

/// The hash of a JSON value's canonical form.
pub fn hash_value(v: &Value) -> SpecHash {
    let mut hasher = HashWriter(Sha256::new());
    // Feeding a hasher cannot fail.
    let _ = write_canonical(&mut hasher, v);
    SpecHash(hasher.0.finalize().into())
}

struct HashWriter(Sha256);

impl Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn write_canonical<W: Write>(w: &mut W, v: &Value) -> io::Result<()> {
    match v {
        Value::Array(items) => {
            w.write_all(b"[")?;
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    w.write_all(b",")?;
                }
                write_canonical(w, item)?;
            }
            w.write_all(b"]")
        }
        Value::Object(map) => {
            // serde_json's map is already sorted unless its `preserve_order` feature is
            // on somewhere in the build; sorting keeps the form canonical either way.
            let mut entries: Vec<_> = map.iter().collect();
            if !entries.is_sorted_by(|a, b| a.0 <= b.0) {
                entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            }
            w.write_all(b"{")?;
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    w.write_all(b",")?;
                }
                serde_json::to_writer(&mut *w, k)?;
                w.write_all(b":")?;
                write_canonical(w, v)?;
            }
            w.write_all(b"}")
        }
        scalar => Ok(serde_json::to_writer(w, scalar)?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_compact_and_stable() {
        let a: Value =
            serde_json::from_str(r#"{ "b": [1, {"y": 2, "x": "é\n"}], "a": null }"#).unwrap();
        assert_eq!(
            String::from_utf8(canonical_json(&a)).unwrap(),
            r#"{"a":null,"b":[1,{"x":"é\n","y":2}]}"#
        );
        let b: Value =
            serde_json::from_str("{\"a\":null,\n\"b\":[1,{\"x\":\"\\u00e9\\n\",\"y\":2}]}")
                .unwrap();
        assert_eq!(hash_value(&a), hash_value(&b));
        assert!(hash_value(&a).to_string().starts_with("sha256:"));
        assert_eq!(hash_value(&a).to_string().len(), 7 + 64);
    }

    #[test]
    fn known_hash_of_empty_object() {
        // sha256("{}")
        assert_eq!(
            hash_value(&serde_json::json!({})).to_string(),
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
    }
}
