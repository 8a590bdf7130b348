//! YAML that reads the same whatever the build: every mapping's keys in
//! sorted order. serde_json keeps insertion order when any crate in the
//! build turns on its `preserve_order` feature (a whole-workspace build
//! does, `-p pgwolf-controller` alone does not), and schema defaults and
//! other JSON values inside the objects would then come out in a different
//! order, failing the drift and golden tests in one build and not the other.

use serde::Serialize;
use serde_json::Value;

/// `value` as JSON with every object's keys sorted, ready for YAML.
pub fn canonical<T: Serialize>(value: &T) -> Value {
    // Kubernetes objects have string keys only: this cannot fail.
    sorted(serde_json::to_value(value).expect("a Kubernetes object serializes to JSON"))
}

fn sorted(v: Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// `from`'s keys into `into`, objects merged key by key, anything else
/// replaced: an overlay onto a rendered document.
pub fn merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (slot, v) => *slot = v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_out_sorted_at_every_depth() {
        let v = serde_json::json!({"b": 1, "a": {"d": [{"z": 0, "y": 1}], "c": 2}});
        let text = serde_json::to_string(&canonical(&v)).unwrap();
        assert_eq!(text, r#"{"a":{"c":2,"d":[{"y":1,"z":0}]},"b":1}"#);
    }
}
