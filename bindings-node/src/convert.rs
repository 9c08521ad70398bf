//! JS objects use camelCase, the core's serde shapes snake_case: keys are
//! renamed on the way in and out. No rule lives here.

use serde_json::{Map, Value};

fn rename(value: Value, key: &dyn Fn(&str) -> String) -> Value {
    match value {
        Value::Object(map) => {
            Value::Object(map.into_iter().map(|(k, v)| (key(&k), rename(v, key))).collect::<Map<_, _>>())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(|v| rename(v, key)).collect()),
        other => other,
    }
}

pub fn camel(value: Value) -> Value {
    rename(value, &|k| {
        let mut out = String::with_capacity(k.len());
        let mut upper = false;
        for c in k.chars() {
            if c == '_' {
                upper = true;
            } else if upper {
                out.extend(c.to_uppercase());
                upper = false;
            } else {
                out.push(c);
            }
        }
        out
    })
}

pub fn snake(value: Value) -> Value {
    rename(value, &|k| {
        let mut out = String::with_capacity(k.len() + 4);
        for c in k.chars() {
            if c.is_ascii_uppercase() {
                out.push('_');
                out.push(c.to_ascii_lowercase());
            } else {
                out.push(c);
            }
        }
        out
    })
}
