//! `json_extract_scalar(json, path)`: the scalar at a JSONPath such as
//! `$.plan`, `$.items[0].sku` or `$["user agent"]`, as text; NULL when the
//! text is not JSON, the path is missing, or the value is an object or array.

use std::borrow::Cow;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, StringBuilder};
use datafusion::common::{Result, exec_err};
use serde::de::{Deserializer as _, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::Arg;

#[derive(Debug, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
}

fn parse_path(path: &str) -> Result<Vec<Step>> {
    let Some(mut rest) = path.trim().strip_prefix('$') else {
        return exec_err!("Invalid JSON path: '{path}' (it must start with $)");
    };
    let mut steps = Vec::new();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            if end == 0 {
                return exec_err!("Invalid JSON path: '{path}'");
            }
            steps.push(Step::Key(after[..end].to_owned()));
            rest = &after[end..];
        } else if let Some(after) = rest.strip_prefix('[') {
            let Some(end) = after.find(']') else {
                return exec_err!("Invalid JSON path: '{path}' (unclosed [)");
            };
            let inside = after[..end].trim();
            let quoted = inside
                .strip_prefix('"')
                .and_then(|s| s.strip_suffix('"'))
                .or_else(|| inside.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')));
            steps.push(match (quoted, inside.parse::<usize>()) {
                (Some(key), _) => Step::Key(key.to_owned()),
                (None, Ok(i)) => Step::Index(i),
                _ => return exec_err!("Invalid JSON path: '{path}' (bad subscript [{inside}])"),
            });
            rest = &after[end + 1..];
        } else {
            return exec_err!("Invalid JSON path: '{path}'");
        }
    }
    Ok(steps)
}

/// A string, borrowed from the JSON text unless it has escapes.
#[derive(serde::Deserialize)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

/// The JSON text of the member `step` names in the object or array `json`,
/// without building the rest: other members are skipped, not parsed into
/// values. `None` when `json` is not valid JSON, not an object (a key) or
/// an array (an index), or has no such member; of repeated keys the last
/// counts.
fn member<'a>(json: &'a str, step: &Step) -> Option<&'a str> {
    struct Find<'s>(&'s Step);
    impl<'de> Visitor<'de> for Find<'_> {
        type Value = Option<&'de RawValue>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON value")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut found = None;
            while let Some(key) = map.next_key::<Text<'de>>()? {
                match self.0 {
                    Step::Key(wanted) if key.0 == wanted.as_str() => {
                        found = Some(map.next_value::<&'de RawValue>()?)
                    }
                    _ => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(found)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut found = None;
            let mut index = 0;
            loop {
                if matches!(self.0, Step::Index(i) if *i == index) {
                    match seq.next_element::<&'de RawValue>()? {
                        Some(item) => found = Some(item),
                        None => break,
                    }
                } else if seq.next_element::<IgnoredAny>()?.is_none() {
                    break;
                }
                index += 1;
            }
            Ok(found)
        }

        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    let mut de = serde_json::Deserializer::from_str(json);
    let found = de.deserialize_any(Find(step)).ok()?;
    de.end().ok()?;
    found.map(RawValue::get)
}

/// The scalar at `steps` as text: a string's value, a number or boolean as
/// written (numbers as serde_json prints them); `None` for null, objects,
/// arrays, a missing path or text that is not JSON.
fn scalar_at<'a>(json: &'a str, steps: &[Step]) -> Option<Cow<'a, str>> {
    let mut raw = json.trim();
    for step in steps {
        raw = member(raw, step)?;
    }
    match raw.as_bytes().first()? {
        b'{' | b'[' | b'n' => None,
        b'"' => serde_json::from_str::<Text>(raw).ok().map(|t| t.0),
        b't' | b'f' => serde_json::from_str::<bool>(raw)
            .ok()
            .map(|b| Cow::Borrowed(if b { "true" } else { "false" })),
        _ => serde_json::from_str::<serde_json::Number>(raw)
            .ok()
            .map(|n| Cow::Owned(n.to_string())),
    }
}

pub fn extract_scalar(json: &Arg, path: &Arg) -> Result<ArrayRef> {
    let texts = json.strings()?;
    let paths = path.strings()?;
    let mut parsed: Option<(String, Vec<Step>)> = None;
    let mut out = StringBuilder::with_capacity(texts.len(), texts.len() * 8);
    for (text, path) in texts.iter().zip(paths.iter()) {
        let (Some(text), Some(path)) = (text, path) else {
            out.append_null();
            continue;
        };
        if parsed.as_ref().is_none_or(|(p, _)| p != path) {
            parsed = Some((path.to_owned(), parse_path(path)?));
        }
        let Some((_, steps)) = parsed.as_ref() else {
            return exec_err!("json_extract_scalar: the path was not kept");
        };
        out.append_option(scalar_at(text, steps));
    }
    Ok(Arc::new(out.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(
            parse_path("$.a[2][\"b c\"]").unwrap(),
            vec![
                Step::Key("a".into()),
                Step::Index(2),
                Step::Key("b c".into())
            ]
        );
        assert!(parse_path("a.b").is_err());
        assert!(parse_path("$.a[").is_err());
    }

    #[test]
    fn scalars_only() {
        let doc = r#"{"plan":"pro","n":3,"ok":true,"tags":["x"],"o":{"k":null}}"#;
        let at = |p: &str| scalar_at(doc, &parse_path(p).unwrap());
        assert_eq!(at("$.plan").as_deref(), Some("pro"));
        assert_eq!(at("$.n").as_deref(), Some("3"));
        assert_eq!(at("$.ok").as_deref(), Some("true"));
        assert_eq!(at("$.tags[0]").as_deref(), Some("x"));
        assert_eq!(at("$.tags"), None);
        assert_eq!(at("$.o.k"), None);
        assert_eq!(at("$.missing"), None);
        assert_eq!(scalar_at("not json", &[]), None);
        assert_eq!(at("$.plan.x"), None);
        assert_eq!(at("$.tags[1]"), None);
        assert_eq!(at("$[0]"), None);
    }

    /// Members are skipped without being parsed, yet the whole text must
    /// be JSON; escapes, repeated keys, numbers as serde_json prints them.
    #[test]
    fn lazy_lookups_agree_with_a_full_parse() {
        let doc = r#" {"a": {"deep": [1, {"x": "y"}]}, "k\u00e9y": "v\"w", "n": 1e2, "d": 1, "d": 2, "f": 1.50} "#;
        let at = |p: &str| scalar_at(doc, &parse_path(p).unwrap()).map(Cow::into_owned);
        assert_eq!(at("$.a.deep[1].x").as_deref(), Some("y"));
        assert_eq!(at("$.a.deep[0]").as_deref(), Some("1"));
        assert_eq!(at("$[\"k\u{e9}y\"]").as_deref(), Some("v\"w"));
        assert_eq!(at("$.n").as_deref(), Some("100.0"));
        assert_eq!(at("$.f").as_deref(), Some("1.5"));
        assert_eq!(at("$.d").as_deref(), Some("2"));
        // Broken after the member asked for: not JSON, so no answer.
        assert_eq!(
            scalar_at(r#"{"a": 1, "b": }"#, &parse_path("$.a").unwrap()),
            None
        );
        assert_eq!(
            scalar_at(r#"{"a": 1} trailing"#, &parse_path("$.a").unwrap()),
            None
        );
        assert_eq!(scalar_at(" 7 ", &[]).as_deref(), Some("7"));
    }
}
