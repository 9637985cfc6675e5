//! Desired-versus-observed comparison in ECS's JSON vocabulary: a field the spec sets must
//! match what ECS reports; a field the spec leaves unset is not fought over.

use serde_json::Value;

/// True when every field `desired` sets has the same value in `observed`, recursively.
/// Lists compare element by element and must have the same length.
pub fn is_subset(desired: &Value, observed: &Value) -> bool {
    match (desired, observed) {
        (Value::Null, _) => true,
        // NB: ECS omits empty lists and objects; an explicit [] or {} asks for nothing.
        (Value::Array(want), Value::Null) => want.is_empty(),
        (Value::Object(want), Value::Null) => want.values().all(|v| is_subset(v, &Value::Null)),
        (Value::Object(want), Value::Object(have)) => want
            .iter()
            .all(|(k, v)| is_subset(v, have.get(k).unwrap_or(&Value::Null))),
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

    #[test]
    fn empty_lists_and_objects_match_absent_ones() {
        assert!(is_subset(&json!({"placementConstraints": [], "tags": {}}), &json!({})));
        assert!(!is_subset(
            &json!({"placementConstraints": [{"type": "distinctInstance"}]}),
            &json!({})
        ));
    }
}
