//! Desired-versus-observed comparison in ECS's JSON vocabulary: a field the spec sets must
//! match what ECS reports; a field the spec leaves unset is not fought over.

use serde_json::Value;

/// True when every field `desired` sets has the same value in `observed`, recursively.
/// Lists compare element by element and must have the same length.
pub fn is_subset(desired: &Value, observed: &Value) -> bool {
    matches(desired, observed, "", &[])
}

/// [`is_subset`], except that the lists at the `unordered` paths (dotted member names from
/// the compared value, e.g. `networkConfiguration.awsvpcConfiguration.subnets`) are sets: ECS
/// promises no order when it reports them, so each desired element must match a different
/// observed element, in any order.
pub fn matches(desired: &Value, observed: &Value, path: &str, unordered: &[&str]) -> bool {
    match (desired, observed) {
        (Value::Null, _) => true,
        // NB: ECS omits empty lists and objects; an explicit [] or {} asks for nothing.
        (Value::Array(want), Value::Null) => want.is_empty(),
        (Value::Object(want), Value::Null) => want.values().all(|v| matches(v, &Value::Null, path, unordered)),
        (Value::Object(want), Value::Object(have)) => want.iter().all(|(k, v)| {
            let inner = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            matches(v, have.get(k).unwrap_or(&Value::Null), &inner, unordered)
        }),
        (Value::Array(want), Value::Array(have)) if unordered.contains(&path) => {
            want.len() == have.len() && pair_up(want, have, &mut vec![false; have.len()], path, unordered)
        }
        (Value::Array(want), Value::Array(have)) => {
            want.len() == have.len() && want.iter().zip(have).all(|(w, h)| matches(w, h, path, unordered))
        }
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (a, b) => a == b,
    }
}

/// True when each of `want` matches a distinct unused element of `have` (backtracking: a
/// desired element that sets few members may match several observed ones).
fn pair_up(want: &[Value], have: &[Value], used: &mut Vec<bool>, path: &str, unordered: &[&str]) -> bool {
    let Some((first, rest)) = want.split_first() else {
        return true;
    };
    for i in 0..have.len() {
        if !used[i] && matches(first, &have[i], path, unordered) {
            used[i] = true;
            if pair_up(rest, have, used, path, unordered) {
                return true;
            }
            used[i] = false;
        }
    }
    false
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
        assert!(!is_subset(&json!([1, 2]), &json!([2, 1])));
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

    #[test]
    fn unordered_lists_match_in_any_order_but_not_with_other_members() {
        let sets = &["a.subnets", "lbs"];
        let want = json!({"a": {"subnets": ["s-1", "s-2"]}});
        assert!(matches(&want, &json!({"a": {"subnets": ["s-2", "s-1"]}}), "", sets));
        assert!(!matches(&want, &json!({"a": {"subnets": ["s-2", "s-3"]}}), "", sets));
        assert!(!matches(&want, &json!({"a": {"subnets": ["s-1", "s-1"]}}), "", sets));
        assert!(!matches(&want, &json!({"a": {"subnets": ["s-1"]}}), "", sets));
        // A desired element setting fewer members must not take the match another needs.
        let want = json!({"lbs": [{"port": 80}, {"port": 80, "name": "b"}]});
        let have = json!({"lbs": [{"port": 80, "name": "b"}, {"port": 80, "name": "a"}]});
        assert!(matches(&want, &have, "", sets));
        // Elsewhere order still counts.
        assert!(!matches(&json!({"b": [1, 2]}), &json!({"b": [2, 1]}), "", sets));
    }
}
