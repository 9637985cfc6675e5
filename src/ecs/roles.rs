//! The namespace -> IAM role mapping the cluster administrator gives the operator
//! (`--namespace-roles`): which AWS identity each namespace's objects act as.

use std::collections::BTreeMap;
use std::path::Path;

/// Why the mapping cannot be used; the operator does not start with a bad one.
#[derive(Debug, thiserror::Error)]
pub enum RolesError {
    /// The file cannot be read.
    #[error("namespace roles {0}: {1}")]
    Read(String, std::io::Error),
    /// The file is not a YAML mapping of strings to strings.
    #[error("namespace roles {0}: expected a YAML mapping of namespace to role ARN: {1}")]
    Parse(String, serde_yaml_ng::Error),
    /// A value is not an IAM role ARN.
    #[error("namespace roles {0}: {1:?} (namespace {2}) is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)")]
    NotARole(String, String, String),
}

/// Reads and checks the mapping.
pub fn read(path: &Path) -> Result<BTreeMap<String, String>, RolesError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| RolesError::Read(name.clone(), e))?;
    parse(&name, &text)
}

fn parse(name: &str, text: &str) -> Result<BTreeMap<String, String>, RolesError> {
    let roles: Option<BTreeMap<String, String>> =
        serde_yaml_ng::from_str(text).map_err(|e| RolesError::Parse(name.to_string(), e))?;
    let roles = roles.unwrap_or_default();
    for (namespace, role) in &roles {
        if !is_role_arn(role) {
            return Err(RolesError::NotARole(name.to_string(), role.clone(), namespace.clone()));
        }
    }
    Ok(roles)
}

/// arn:<partition>:iam::<12 digits>:role/<path and name>
fn is_role_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    matches!(parts.as_slice(), ["arn", partition, "iam", "", account, resource]
        if partition.starts_with("aws")
            && account.len() == 12
            && account.chars().all(|c| c.is_ascii_digit())
            && resource.strip_prefix("role/").is_some_and(|n| !n.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mapping_of_namespaces_to_role_arns_is_read() {
        let roles = parse(
            "f",
            "team-a: arn:aws:iam::111122223333:role/ecs-team-a\nteam-b: arn:aws-cn:iam::444455556666:role/path/b\n",
        )
        .expect("valid");
        assert_eq!(roles.len(), 2);
        assert_eq!(roles["team-b"], "arn:aws-cn:iam::444455556666:role/path/b");
        assert!(parse("f", "").expect("empty is no mapping").is_empty());
    }

    #[test]
    fn anything_but_role_arns_is_refused_with_the_namespace_named() {
        let err = parse("f", "team-a: arn:aws:iam::1111:role/x\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("team-a") && err.contains("not an IAM role ARN"), "{err}");
        assert!(parse("f", "team-a: arn:aws:iam::111122223333:user/x").is_err());
        assert!(parse("f", "- a\n- b\n").is_err());
    }
}
