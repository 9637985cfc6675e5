//! Label selectors as `kubectl -l` writes them (`shard=a`, `tier!=db`, `env in (a,b)`,
//! `env notin (c)`, `canary`, `!legacy`), matched by the operator itself: its watches see
//! every object, so that a service can refer to a cluster in another shard, and each
//! controller reconciles only the objects its shard selects.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// One requirement of a selector.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

/// A parsed label selector; all its requirements must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelSelector {
    text: String,
    requirements: Vec<Requirement>,
}

impl LabelSelector {
    /// True when `labels` satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| match r {
            Requirement::Equals(k, v) => labels.get(k) == Some(v),
            Requirement::NotEquals(k, v) => labels.get(k) != Some(v),
            Requirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::DoesNotExist(k) => !labels.contains_key(k),
        })
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for LabelSelector {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let mut requirements = vec![];
        for part in split_top_level(text) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            requirements
                .push(requirement(part).ok_or_else(|| format!("cannot read the label selector part {part:?}"))?);
        }
        Ok(Self {
            text: text.to_string(),
            requirements,
        })
    }
}

/// Splits at commas outside parentheses.
fn split_top_level(text: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (vec![], 0, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn requirement(part: &str) -> Option<Requirement> {
    let word = |s: &str| {
        let s = s.trim();
        (!s.is_empty() && !s.contains(char::is_whitespace)).then(|| s.to_string())
    };
    let values = |s: &str| -> Option<Vec<String>> {
        let inner = s.trim().strip_prefix('(')?.strip_suffix(')')?;
        inner.split(',').map(word).collect()
    };
    if let Some((key, value)) = part.split_once("!=") {
        return Some(Requirement::NotEquals(word(key)?, word(value)?));
    }
    if let Some((key, value)) = part.split_once("==").or_else(|| part.split_once('=')) {
        return Some(Requirement::Equals(word(key)?, word(value)?));
    }
    if let Some((key, list)) = part.split_once(" notin ") {
        return Some(Requirement::NotIn(word(key)?, values(list)?));
    }
    if let Some((key, list)) = part.split_once(" in ") {
        return Some(Requirement::In(word(key)?, values(list)?));
    }
    match part.strip_prefix('!') {
        Some(key) => Some(Requirement::DoesNotExist(word(key)?)),
        None => Some(Requirement::Exists(word(part)?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn selectors_match_as_kubectl_means_them() {
        let shard: LabelSelector = "shard=a".parse().expect("selector");
        assert!(shard.matches(&labels(&[("shard", "a"), ("x", "y")])));
        assert!(!shard.matches(&labels(&[("shard", "b")])));
        assert!(!shard.matches(&labels(&[])));

        let mixed: LabelSelector = "env in (prod, staging),tier!=db,canary,!legacy,zone notin (c)"
            .parse()
            .expect("selector");
        let good = labels(&[("env", "prod"), ("tier", "web"), ("canary", "")]);
        assert!(mixed.matches(&good));
        let mut legacy = good.clone();
        legacy.insert("legacy".into(), "1".into());
        assert!(!mixed.matches(&legacy));
        let mut db = good.clone();
        db.insert("tier".into(), "db".into());
        assert!(!mixed.matches(&db));
        let mut zone_c = good.clone();
        zone_c.insert("zone".into(), "c".into());
        assert!(!mixed.matches(&zone_c));
        assert!(!mixed.matches(&labels(&[("env", "dev"), ("canary", "")])));
    }

    #[test]
    fn malformed_selectors_are_refused() {
        for bad in ["a=", "=b", "env in prod", "a b", "env in (x,)"] {
            assert!(bad.parse::<LabelSelector>().is_err(), "{bad}");
        }
    }
}
