//! A JSON Schema (2020-12) check for the subset of keywords the OpenAPI document uses, for the
//! tests: an example value against a component schema.
//!
//! A keyword outside the subset is an error, not ignored, so a schema that starts using one
//! fails the tests until this check learns it.

use serde_json::Value;

/// Checks `value` against `schema`, resolving `$ref`s in `document`. The error names the
/// first failure and where in the value it is.
pub fn check(document: &Value, schema: &Value, value: &Value) -> Result<(), String> {
    check_at(document, schema, value, "$")
}

fn check_at(document: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    let schema = match schema {
        Value::Bool(true) => return Ok(()),
        Value::Bool(false) => return Err(format!("{at}: no value is allowed here")),
        Value::Object(schema) => schema,
        other => return Err(format!("{at}: {other} is not a schema")),
    };
    for (keyword, argument) in schema {
        match keyword.as_str() {
            "description" | "title" | "default" => {}
            "$ref" => {
                let target = resolve(document, argument)?;
                check_at(document, target, value, at)?;
            }
            "type" => {
                let kinds: Vec<&str> = match argument {
                    Value::String(kind) => vec![kind.as_str()],
                    Value::Array(kinds) => kinds.iter().filter_map(Value::as_str).collect(),
                    other => return Err(format!("bad type {other}")),
                };
                if !kinds.iter().any(|kind| has_type(value, kind)) {
                    return Err(format!("{at}: {value} is not of type {argument}"));
                }
            }
            "enum" => {
                let allowed = argument.as_array().ok_or("bad enum")?;
                if !allowed.contains(value) {
                    return Err(format!("{at}: {value} is not one of {argument}"));
                }
            }
            "const" => {
                if value != argument {
                    return Err(format!("{at}: {value} is not {argument}"));
                }
            }
            "properties" => {
                let properties = argument.as_object().ok_or("bad properties")?;
                if let Some(object) = value.as_object() {
                    for (name, member) in object {
                        if let Some(property) = properties.get(name) {
                            check_at(document, property, member, &format!("{at}.{name}"))?;
                        }
                    }
                }
            }
            "required" => {
                if let Some(object) = value.as_object() {
                    for name in argument.as_array().ok_or("bad required")? {
                        let name = name.as_str().ok_or("bad required")?;
                        if !object.contains_key(name) {
                            return Err(format!("{at}: lacks the required member {name}"));
                        }
                    }
                }
            }
            "additionalProperties" => {
                let properties = schema.get("properties").and_then(Value::as_object);
                if let Some(object) = value.as_object() {
                    for (name, member) in object {
                        if properties.is_none_or(|properties| !properties.contains_key(name)) {
                            check_at(document, argument, member, &format!("{at}.{name}"))?;
                        }
                    }
                }
            }
            "items" => {
                if let Some(items) = value.as_array() {
                    for (index, item) in items.iter().enumerate() {
                        check_at(document, argument, item, &format!("{at}[{index}]"))?;
                    }
                }
            }
            "minItems" | "maxItems" => {
                if let Some(items) = value.as_array() {
                    check_bound(keyword, argument, items.len() as u64, at)?;
                }
            }
            "minLength" | "maxLength" => {
                if let Some(text) = value.as_str() {
                    check_bound(keyword, argument, text.chars().count() as u64, at)?;
                }
            }
            "minimum" | "maximum" => {
                if let (Some(number), Some(bound)) = (value.as_f64(), argument.as_f64()) {
                    let outside = if keyword == "minimum" {
                        number < bound
                    } else {
                        number > bound
                    };
                    if outside {
                        return Err(format!("{at}: {value} is past the {keyword} {bound}"));
                    }
                }
            }
            "pattern" => {
                let pattern = argument.as_str().ok_or("bad pattern")?;
                if let Some(text) = value.as_str()
                    && !pattern_matches(pattern, text)?
                {
                    return Err(format!("{at}: {value} does not match {pattern}"));
                }
            }
            "format" => check_format(argument.as_str().ok_or("bad format")?, value, at)?,
            "anyOf" | "oneOf" => {
                let options = argument.as_array().ok_or("bad anyOf/oneOf")?;
                let matching = options
                    .iter()
                    .filter(|option| check_at(document, option, value, at).is_ok())
                    .count();
                let fits = if keyword == "oneOf" {
                    matching == 1
                } else {
                    matching >= 1
                };
                if !fits {
                    return Err(format!(
                        "{at}: {value} matches {matching} of the {keyword} options"
                    ));
                }
            }
            "allOf" => {
                for option in argument.as_array().ok_or("bad allOf")? {
                    check_at(document, option, value, at)?;
                }
            }
            unknown => {
                return Err(format!(
                    "the keyword {unknown} is outside the checked subset"
                ));
            }
        }
    }
    Ok(())
}

/// Letters and digits in a pattern: Unicode `Alphabetic` and `N`, what `char::is_alphanumeric`
/// takes.
const ALPHANUMERIC_CLASS: &str = r"\p{Alpha}\p{N}";

/// One private-use character, neither a letter nor a digit, that stands for every letter and
/// digit (see [`pattern_matches`]).
const ALPHANUMERIC_STAND_IN: char = '\u{e000}';

/// Whether `text` matches `pattern`. regex-lite has no Unicode classes, so a pattern whose
/// letters and digits are all [`ALPHANUMERIC_CLASS`] (the account name's) is checked with one
/// stand-in character for that class, in the pattern and for every letter and digit of the
/// text.
pub fn pattern_matches(pattern: &str, text: &str) -> Result<bool, String> {
    let (pattern, text) = if pattern.contains(ALPHANUMERIC_CLASS) {
        let stand_in = ALPHANUMERIC_STAND_IN.to_string();
        let text = text
            .chars()
            .map(|c| {
                if c.is_alphanumeric() {
                    ALPHANUMERIC_STAND_IN
                } else {
                    c
                }
            })
            .collect();
        (pattern.replace(ALPHANUMERIC_CLASS, &stand_in), text)
    } else {
        (pattern.to_owned(), text.to_owned())
    };
    let regex = regex_lite::Regex::new(&pattern).map_err(|error| format!("{pattern}: {error}"))?;
    Ok(regex.is_match(&text))
}

/// The schema a local `$ref` (a JSON pointer into `document`) names.
fn resolve<'a>(document: &'a Value, reference: &Value) -> Result<&'a Value, String> {
    let pointer = reference
        .as_str()
        .and_then(|reference| reference.strip_prefix('#'))
        .ok_or_else(|| format!("{reference} is not a local reference"))?;
    document
        .pointer(pointer)
        .ok_or_else(|| format!("{reference} does not resolve"))
}

fn has_type(value: &Value, kind: &str) -> bool {
    match kind {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "string" => value.is_string(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        "number" => value.is_number(),
        "integer" => value.is_i64() || value.is_u64(),
        _ => false,
    }
}

fn check_bound(keyword: &str, argument: &Value, count: u64, at: &str) -> Result<(), String> {
    let bound = argument.as_u64().ok_or("bad bound")?;
    let outside = if keyword.starts_with("min") {
        count < bound
    } else {
        count > bound
    };
    if outside {
        return Err(format!("{at}: {count} is past the {keyword} {bound}"));
    }
    Ok(())
}

/// The formats the schemas use: RFC 3339 times, and schemars' integer widths.
fn check_format(format: &str, value: &Value, at: &str) -> Result<(), String> {
    let fits = match format {
        "date-time" => value.as_str().is_none_or(|text| {
            regex_lite::Regex::new(
                r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$",
            )
            .is_ok_and(|regex| regex.is_match(text))
        }),
        "uint16" => !value.is_number() || value.as_u64().is_some_and(|n| n <= u64::from(u16::MAX)),
        "uint32" => !value.is_number() || value.as_u64().is_some_and(|n| n <= u64::from(u32::MAX)),
        "uint" | "uint64" => !value.is_number() || value.is_u64(),
        "binary" => true,
        other => return Err(format!("the format {other} is outside the checked subset")),
    };
    if fits {
        Ok(())
    } else {
        Err(format!("{at}: {value} is not a {format}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_subset_accepts_and_refuses() {
        let document = json!({"defs": {"id": {"type": "string", "pattern": "^[0-9a-f]{4}$"}}});
        let schema = json!({
            "type": "object",
            "properties": {
                "id": {"$ref": "#/defs/id"},
                "n": {"type": ["integer", "null"], "minimum": 0, "format": "uint32"},
                "list": {"type": "array", "items": {"type": "string"}, "maxItems": 2},
                "role": {"oneOf": [{"const": "a"}, {"const": "b"}]},
            },
            "required": ["id"],
            "additionalProperties": false,
        });
        let good = json!({"id": "00af", "n": null, "list": ["x"], "role": "b"});
        assert_eq!(check(&document, &schema, &good), Ok(()));
        for bad in [
            json!({"n": 1}),
            json!({"id": "00AF"}),
            json!({"id": "00af", "n": -1}),
            json!({"id": "00af", "n": 1.5}),
            json!({"id": "00af", "list": ["x", "y", "z"]}),
            json!({"id": "00af", "list": [1]}),
            json!({"id": "00af", "role": "c"}),
            json!({"id": "00af", "other": 1}),
            json!([]),
        ] {
            assert!(check(&document, &schema, &bad).is_err(), "{bad}");
        }
        let unknown = json!({"uniqueItems": true});
        assert!(check(&document, &unknown, &json!([])).is_err());
        let dangling = json!({"$ref": "#/defs/nothing"});
        assert!(check(&document, &dangling, &json!(1)).is_err());
    }
}
