//! The JSON Schema of `karton.bench/v1` and a validator for the subset of JSON Schema it
//! uses (type, anyOf, properties, required, additionalProperties, items, enum, const, minimum,
//! $ref to #/$defs). docs/bench.md documents the fields.

use serde_json::Value;

/// JSON Schema (draft 2020-12 vocabulary) of a results file.
pub const JSON_SCHEMA: &str = include_str!("karton.bench.v1.schema.json");

/// The schema as a JSON value.
pub fn schema() -> Result<Value, serde_json::Error> {
    serde_json::from_str(JSON_SCHEMA)
}

/// Validates `doc` against [`JSON_SCHEMA`]; returns every violation found, each with its
/// JSON pointer.
pub fn validate(doc: &Value) -> Result<(), Vec<String>> {
    let root = schema().map_err(|e| vec![format!("schema itself does not parse: {e}")])?;
    let mut errs = Vec::new();
    check(&root, &root, doc, "", &mut errs);
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs)
    }
}

fn type_ok(t: &str, v: &Value) -> bool {
    match t {
        "null" => v.is_null(),
        "boolean" => v.is_boolean(),
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "number" => v.is_number(),
        "integer" => v.as_i64().is_some() || v.as_u64().is_some(),
        _ => false,
    }
}

fn check(root: &Value, s: &Value, v: &Value, at: &str, errs: &mut Vec<String>) {
    if let Some(r) = s.get("$ref").and_then(|r| r.as_str()) {
        match r.strip_prefix("#/$defs/").and_then(|name| root.get("$defs").and_then(|d| d.get(name))) {
            Some(target) => check(root, target, v, at, errs),
            None => errs.push(format!("{at}: unresolvable $ref {r}")),
        }
        return;
    }
    if let Some(Value::Array(alts)) = s.get("anyOf") {
        let fits = alts.iter().any(|alt| {
            let mut sub = Vec::new();
            check(root, alt, v, at, &mut sub);
            sub.is_empty()
        });
        if !fits {
            // Report the violations against the last non-null alternative: the useful one.
            if let Some(alt) =
                alts.iter().rev().find(|a| a.get("type") != Some(&Value::String("null".into())))
            {
                check(root, alt, v, at, errs);
            } else {
                errs.push(format!("{at}: matches no alternative"));
            }
        }
    }
    if let Some(t) = s.get("type") {
        let ok = match t {
            Value::String(t) => type_ok(t, v),
            Value::Array(ts) => ts.iter().filter_map(|t| t.as_str()).any(|t| type_ok(t, v)),
            _ => true,
        };
        if !ok {
            errs.push(format!("{at}: expected type {t}, found {}", short(v)));
            return;
        }
    }
    if let Some(c) = s.get("const") {
        if c != v {
            errs.push(format!("{at}: expected {c}, found {}", short(v)));
        }
    }
    if let Some(Value::Array(allowed)) = s.get("enum") {
        if !allowed.contains(v) {
            errs.push(format!("{at}: {} is not one of {}", short(v), Value::Array(allowed.clone())));
        }
    }
    if let (Some(min), Some(x)) = (s.get("minimum").and_then(|m| m.as_f64()), v.as_f64()) {
        if x < min {
            errs.push(format!("{at}: {x} < minimum {min}"));
        }
    }
    if let Value::Object(obj) = v {
        if let Some(Value::Array(req)) = s.get("required") {
            for k in req.iter().filter_map(|k| k.as_str()) {
                if !obj.contains_key(k) {
                    errs.push(format!("{at}: missing required field {k:?}"));
                }
            }
        }
        let props = s.get("properties").and_then(|p| p.as_object());
        for (k, val) in obj {
            let path = format!("{at}/{k}");
            match props.and_then(|p| p.get(k)) {
                Some(ps) => check(root, ps, val, &path, errs),
                None => {
                    if s.get("additionalProperties") == Some(&Value::Bool(false)) {
                        errs.push(format!("{path}: field not allowed by the schema"));
                    }
                }
            }
        }
    }
    if let (Value::Array(items), Some(is)) = (v, s.get("items")) {
        for (i, it) in items.iter().enumerate() {
            check(root, is, it, &format!("{at}/{i}"), errs);
        }
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 60 {
        format!("{}…", &s[..s.char_indices().nth(57).map(|(i, _)| i).unwrap_or(s.len())])
    } else {
        s
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn schema_parses() {
        assert!(schema().is_ok());
    }

    #[test]
    fn validator_reports_type_required_enum_and_extra_fields() {
        let root = json!({
            "type": "object", "required": ["a", "b"], "additionalProperties": false,
            "properties": {"a": {"type": "integer", "minimum": 1}, "b": {"$ref": "#/$defs/B"}},
            "$defs": {"B": {"enum": ["x", "y"]}}
        });
        let mut errs = Vec::new();
        check(&root, &root, &json!({"a": 0, "c": 1}), "", &mut errs);
        assert_eq!(errs.len(), 3, "{errs:?}");
        errs.clear();
        check(&root, &root, &json!({"a": 2, "b": "z"}), "", &mut errs);
        assert_eq!(errs.len(), 1, "{errs:?}");
        errs.clear();
        check(&root, &root, &json!({"a": 2, "b": "y"}), "", &mut errs);
        assert!(errs.is_empty());
    }
}
