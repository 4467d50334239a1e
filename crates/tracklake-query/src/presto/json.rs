//! `json_extract_scalar(json, path)`: the scalar at a JSONPath such as
//! `$.plan`, `$.items[0].sku` or `$["user agent"]`, as text; NULL when the
//! text is not JSON, the path is missing, or the value is an object or array.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, StringArray};
use datafusion::common::{Result, exec_err};
use serde_json::Value;

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

fn scalar_at(json: &str, steps: &[Step]) -> Option<String> {
    let mut value: Value = serde_json::from_str(json).ok()?;
    for step in steps {
        value = match (step, value) {
            (Step::Key(k), Value::Object(mut map)) => map.remove(k)?,
            (Step::Index(i), Value::Array(mut items)) if *i < items.len() => items.swap_remove(*i),
            _ => return None,
        };
    }
    match value {
        Value::String(s) => Some(s),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null | Value::Object(_) | Value::Array(_) => None,
    }
}

pub fn extract_scalar(json: &Arg, path: &Arg) -> Result<ArrayRef> {
    let texts = json.strings()?;
    let paths = path.strings()?;
    let mut parsed: Option<(String, Vec<Step>)> = None;
    let mut out = Vec::with_capacity(texts.len());
    for (text, path) in texts.iter().zip(paths.iter()) {
        let (Some(text), Some(path)) = (text, path) else {
            out.push(None);
            continue;
        };
        if parsed.as_ref().is_none_or(|(p, _)| p != path) {
            parsed = Some((path.to_owned(), parse_path(path)?));
        }
        let steps = &parsed.as_ref().expect("parsed above").1;
        out.push(scalar_at(text, steps));
    }
    Ok(Arc::new(StringArray::from(out)))
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
    }
}
