//! JSON read strictly: an object that names a key twice is refused. serde_json keeps
//! the last of the two, so a person reading the first would see another document than
//! the one signed and applied.

use std::fmt;

use serde::de::{self, DeserializeOwned, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Reads `bytes` as JSON, refusing a duplicate key anywhere, then as a `T`.
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, serde_json::Error> {
    let Unique(value) = serde_json::from_slice(bytes)?;
    serde_json::from_value(value)
}

/// A JSON value read with every object's keys checked to be unique.
struct Unique(Value);

impl<'de> de::Deserialize<'de> for Unique {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Unique, D::Error> {
        d.deserialize_any(UniqueVisitor).map(Unique)
    }
}

struct UniqueVisitor;

impl<'de> Visitor<'de> for UniqueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::from(n))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(Value::from(n))
    }

    fn visit_f64<E>(self, n: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Unique(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(de::Error::custom(format_args!(
                    "the key {key:?} appears twice in one object"
                )));
            }
            let Unique(v) = map.next_value()?;
            object.insert(key, v);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_named_twice_is_refused_at_any_depth_and_the_rest_reads_as_serde_json_does() {
        for doc in [
            r#"{"a": 1, "a": 2}"#,
            r#"{"x": {"b": [1, {"c": true, "c": false}]}}"#,
            r#"[{"k": null, "k": null}]"#,
        ] {
            let err = from_slice::<Value>(doc.as_bytes()).unwrap_err();
            assert!(err.to_string().contains("appears twice"), "{doc}: {err}");
        }
        for doc in [
            r#"{"a": 1, "b": {"a": 1}, "c": [-1, 2.5, 18446744073709551615, "s", null]}"#,
            r#""text""#,
            "1e400",
        ] {
            let strict = from_slice::<Value>(doc.as_bytes()).map_err(|e| e.to_string());
            let lax = serde_json::from_str::<Value>(doc).map_err(|e| e.to_string());
            assert_eq!(strict.is_ok(), lax.is_ok(), "{doc}");
            if let (Ok(a), Ok(b)) = (strict, lax) {
                assert_eq!(a, b, "{doc}");
            }
        }
    }
}
