//! Desired-versus-observed comparison in ECS's JSON vocabulary: a field the spec sets must
//! match what ECS reports; a field the spec leaves unset is not fought over.

use serde_json::Value;

/// True when every field `desired` sets has the same value in `observed`, recursively.
/// Lists compare element by element and must have the same length.
pub fn is_subset(desired: &Value, observed: &Value) -> bool {
    match (desired, observed) {
        (Value::Null, _) => true,
        (Value::Object(want), Value::Object(have)) => want
            .iter()
            .all(|(k, v)| v.is_null() || have.get(k).is_some_and(|h| is_subset(v, h))),
        (Value::Array(want), Value::Array(have)) => {
            want.len() == have.len() && want.iter().zip(have).all(|(w, h)| is_subset(w, h))
        }
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (a, b) => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unset_fields_are_not_compared() {
        let observed = json!({"executeCommandConfiguration": {"logging": "DEFAULT", "kmsKeyId": "k"}});
        assert!(is_subset(
            &json!({"executeCommandConfiguration": {"logging": "DEFAULT"}}),
            &observed
        ));
        assert!(!is_subset(
            &json!({"executeCommandConfiguration": {"logging": "NONE"}}),
            &observed
        ));
        assert!(!is_subset(&json!({"other": 1}), &observed));
    }

    #[test]
    fn lists_must_match_in_length_and_order() {
        assert!(is_subset(&json!([{"a": 1}]), &json!([{"a": 1, "b": 2}])));
        assert!(!is_subset(&json!([{"a": 1}]), &json!([{"a": 1}, {"a": 2}])));
        assert!(is_subset(&json!(1), &json!(1.0)));
    }
}
