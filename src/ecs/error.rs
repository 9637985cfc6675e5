//! What an ECS error means for the operator: retry with backoff, retry slowly, stop until
//! the spec changes, or treat the resource as gone. [`TABLE`] is the one place that says
//! it, for every exception ECS documents for the operations the operator calls.

use aws_sdk_ecs::error::{ProvideErrorMetadata, SdkError};

/// How the reconcile core treats a failed ECS call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Throttling: back off and retry; counted apart in metrics.
    Throttled,
    /// 5xx, timeouts, connection problems, conflicting updates, and ECS's answers while
    /// something settles: back off and retry.
    Transient,
    /// ECS is busy with the resource (an update in progress, a provider in use): retry
    /// slowly, as it takes minutes rather than seconds.
    Slow,
    /// The resource does not exist (ClusterNotFound, ServiceNotFound, ...).
    NotFound,
    /// ECS rejected the request as invalid: retrying will not help.
    Terminal,
    /// Access denied. Right after a role or policy was created this is IAM propagating
    /// the change (it takes seconds to minutes), so it is retried a few times, slowly,
    /// before it counts as terminal.
    Denied,
}

/// A failed ECS call, with ECS's own code and message.
#[derive(Debug, thiserror::Error)]
#[error("{operation}: {}{message}", code.as_deref().map(|c| format!("{c}: ")).unwrap_or_default())]
pub struct EcsError {
    /// The ECS operation, e.g. RegisterTaskDefinition.
    pub operation: &'static str,
    /// ECS's error code, e.g. InvalidParameterException.
    pub code: Option<String>,
    /// ECS's message, verbatim.
    pub message: String,
    /// What to do about it.
    pub class: ErrorClass,
}

impl EcsError {
    /// Classifies an SDK error of `operation`.
    pub fn new<E, R>(operation: &'static str, err: SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug,
    {
        match &err {
            SdkError::ServiceError(service) => {
                let inner = service.err();
                let code = inner.code().map(str::to_owned);
                let message = inner.message().map(str::to_owned).unwrap_or_else(|| inner.to_string());
                let class = classify(operation, code.as_deref(), &message);
                Self {
                    operation,
                    code,
                    message,
                    class,
                }
            }
            // NB: construction, dispatch, timeout and unparseable responses: all worth a retry.
            other => Self {
                operation,
                code: None,
                message: aws_smithy_types_error_text(other),
                class: ErrorClass::Transient,
            },
        }
    }

    /// A response that lacks what the operation promises (retried: ECS may be mid-update).
    pub fn empty(operation: &'static str, message: &str) -> Self {
        Self {
            operation,
            code: None,
            message: message.to_string(),
            class: ErrorClass::Transient,
        }
    }

    /// True when ECS's code is `code`.
    pub fn is(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }
}

fn aws_smithy_types_error_text<E: std::error::Error + 'static, R: std::fmt::Debug>(err: &SdkError<E, R>) -> String {
    use std::error::Error;
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// One row of [`TABLE`]: an ECS error code (and, where ECS reuses a code, a part of its
/// message; and where it matters, the operation) and what the operator does about it.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// ECS's error code.
    pub code: &'static str,
    /// A part of the message this row is for; "" for any.
    pub message: &'static str,
    /// The operation this row is for; "" for any.
    pub operation: &'static str,
    /// What the operator does.
    pub class: ErrorClass,
    /// Why, for the README's table.
    pub why: &'static str,
}

const fn rule(code: &'static str, message: &'static str, class: ErrorClass, why: &'static str) -> Rule {
    Rule {
        code,
        message,
        operation: "",
        class,
        why,
    }
}

use ErrorClass::{Denied, NotFound, Slow, Terminal, Throttled, Transient};

/// Every ECS error the operator can meet, first match wins; codes not listed (and errors
/// without a code: timeouts, connection resets) are Transient.
pub const TABLE: &[Rule] = &[
    rule(
        "ThrottlingException",
        "",
        Throttled,
        "over the account's rate for the category",
    ),
    rule("Throttling", "", Throttled, "the same, from older endpoints"),
    rule("RequestLimitExceeded", "", Throttled, "the same"),
    rule("TooManyRequestsException", "", Throttled, "the same"),
    rule("ServerException", "", Transient, "a fault on ECS's side"),
    rule(
        "ConflictException",
        "",
        Transient,
        "a concurrent change of the same resource",
    ),
    rule(
        "ServiceNotActiveException",
        "",
        Transient,
        "the service is DRAINING: the next pass sees it and waits or recreates",
    ),
    rule(
        "ExpiredTokenException",
        "",
        Transient,
        "credentials are refreshed on the next call",
    ),
    rule(
        "UpdateInProgressException",
        "",
        Slow,
        "an agent or cluster update is running",
    ),
    rule(
        "ResourceInUseException",
        "",
        Slow,
        "a capacity provider still in use, or being updated",
    ),
    rule(
        "ClusterContainsServicesException",
        "",
        Slow,
        "deletion waits for the services to go",
    ),
    rule(
        "ClusterContainsTasksException",
        "",
        Slow,
        "deletion waits for the tasks to stop",
    ),
    rule(
        "ClusterContainsContainerInstancesException",
        "",
        Slow,
        "deletion waits for the instances to deregister",
    ),
    rule(
        "ClusterContainsCapacityProviderException",
        "",
        Slow,
        "deletion waits for the providers to detach",
    ),
    rule("ClusterNotFoundException", "", NotFound, "gone"),
    rule("ServiceNotFoundException", "", NotFound, "gone"),
    rule("ResourceNotFoundException", "", NotFound, "gone"),
    rule("TargetNotFoundException", "", NotFound, "gone"),
    rule("ServiceDeploymentNotFoundException", "", NotFound, "gone"),
    Rule {
        code: "ClientException",
        message: "Unable to describe task definition",
        operation: "DescribeTaskDefinition",
        class: NotFound,
        why: "how DescribeTaskDefinition says a family or revision does not exist",
    },
    Rule {
        code: "ClientException",
        message: "Unable to describe task definition",
        operation: "DeregisterTaskDefinition",
        class: NotFound,
        why: "the revision to retire is already gone",
    },
    Rule {
        code: "ClientException",
        message: "does not exist",
        operation: "DeregisterTaskDefinition",
        class: NotFound,
        why: "the revision to retire is already gone",
    },
    Rule {
        code: "InvalidParameterException",
        message: "The referenced task was not found",
        operation: "StopTask",
        class: NotFound,
        why: "a task ECS no longer knows is stopped already",
    },
    // ECS reuses ClientException and InvalidParameterException for conditions that clear
    // up by themselves; these are retried, not Stalled.
    rule(
        "InvalidParameterException",
        "Creation of service was not idempotent",
        Transient,
        "a same-name service is DRAINING or just went INACTIVE (DeleteService doc; terraform-provider-aws#2283)",
    ),
    rule(
        "InvalidParameterException",
        "Unable to assume the service linked role",
        Transient,
        "ECS creates its service-linked role on first use; it takes a moment to be assumable",
    ),
    rule(
        "InvalidParameterException",
        "Please verify that the ECS service role being passed has the proper permissions",
        Transient,
        "a role created moments ago is not yet visible to ECS (IAM propagation)",
    ),
    rule(
        "InvalidParameterException",
        "Unable to assume role and validate the",
        Transient,
        "the same, for a target group's role",
    ),
    rule(
        "InvalidParameterException",
        "does not have an associated load balancer",
        Transient,
        "a target group created moments ago is not yet attached to its load balancer",
    ),
    rule(
        "InvalidParameterException",
        "is not in an ACTIVE state",
        Slow,
        "a capacity provider is still being created (terraform-provider-aws#45693)",
    ),
    rule(
        "InvalidParameterException",
        "The specified capacity provider was not found",
        Slow,
        "a capacity provider applied together with its cluster may be made a moment later",
    ),
    rule(
        "ClientException",
        "Too many concurrent attempts to create a new revision of the specified family",
        Transient,
        "another registration of the family is running (terraform-provider-aws#9777)",
    ),
    rule(
        "AccessDeniedException",
        "",
        Denied,
        "right after a role or policy was created this is IAM propagating it",
    ),
    rule("UnauthorizedOperation", "", Denied, "the same"),
    rule(
        "InvalidParameterException",
        "",
        Terminal,
        "the request is wrong: ECS's message says how",
    ),
    rule(
        "ClientException",
        "",
        Terminal,
        "the request is wrong: ECS's message says how",
    ),
    rule(
        "LimitExceededException",
        "",
        Terminal,
        "an account quota: retrying will not raise it",
    ),
    rule(
        "PlatformUnknownException",
        "",
        Terminal,
        "no such Fargate platform version",
    ),
    rule(
        "PlatformTaskDefinitionIncompatibilityException",
        "",
        Terminal,
        "the task definition does not fit the platform",
    ),
    rule(
        "UnsupportedFeatureException",
        "",
        Terminal,
        "not offered in this region",
    ),
    rule(
        "NamespaceNotFoundException",
        "",
        Terminal,
        "the Service Connect namespace does not exist",
    ),
    rule("MissingVersionException", "", Terminal, "the request is wrong"),
    rule(
        "ValidationException",
        "",
        Terminal,
        "EventBridge Scheduler: the schedule is wrong (an expression, a date, a role)",
    ),
    rule("InvalidClientTokenId", "", Terminal, "the credentials are not valid"),
    rule(
        "UnrecognizedClientException",
        "",
        Terminal,
        "the credentials are not valid",
    ),
];

/// Maps ECS's error code (from `operation`) and message to what the operator should do.
pub fn classify(operation: &str, code: Option<&str>, message: &str) -> ErrorClass {
    let code = code.unwrap_or_default();
    TABLE
        .iter()
        .find(|r| r.code == code && (r.operation.is_empty() || r.operation == operation) && message.contains(r.message))
        .map(|r| r.class)
        .unwrap_or(Transient)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_what_retrying_can_fix() {
        assert_eq!(
            classify("DescribeTaskDefinition", Some("ThrottlingException"), "Rate exceeded"),
            ErrorClass::Throttled
        );
        assert_eq!(
            classify("DescribeTaskDefinition", Some("ServerException"), "oops"),
            ErrorClass::Transient
        );
        assert_eq!(
            classify("DescribeTaskDefinition", Some("InvalidParameterException"), "bad cpu"),
            ErrorClass::Terminal
        );
        assert_eq!(
            classify("DescribeTaskDefinition", Some("AccessDeniedException"), "no"),
            ErrorClass::Denied
        );
        assert_eq!(
            classify("DescribeTaskDefinition", Some("ClusterNotFoundException"), "gone"),
            ErrorClass::NotFound
        );
        assert_eq!(
            classify(
                "DescribeTaskDefinition",
                Some("ClientException"),
                "Unable to describe task definition."
            ),
            ErrorClass::NotFound
        );
        assert_eq!(
            classify(
                "DescribeTaskDefinition",
                Some("ClientException"),
                "Container.image should not be null"
            ),
            ErrorClass::Terminal
        );
        assert_eq!(
            classify(
                "CreateService",
                Some("ClientException"),
                "Unable to describe task definition."
            ),
            ErrorClass::Terminal
        );
        assert_eq!(
            classify("DescribeServices", None, "connection reset"),
            ErrorClass::Transient
        );
    }

    #[test]
    fn every_row_of_the_table_decides_for_its_own_errors() {
        for row in TABLE {
            let operation = if row.operation.is_empty() {
                "CreateService"
            } else {
                row.operation
            };
            let message = format!("... {} ...", row.message);
            assert_eq!(
                classify(operation, Some(row.code), &message),
                row.class,
                "{row:?} is shadowed by an earlier row"
            );
        }
    }

    #[test]
    fn the_readme_lists_every_row() {
        let readme = include_str!("../../README.md");
        let section = readme
            .split("### ECS errors and what the operator does")
            .nth(1)
            .expect("the README's error section");
        for row in TABLE {
            let message = if row.message.is_empty() {
                "(any)".to_string()
            } else {
                format!("`{}`", row.message)
            };
            let code = if row.operation.is_empty() {
                format!("| `{}` |", row.code)
            } else {
                format!("| `{}` (from {}) |", row.code, row.operation)
            };
            let line = section
                .lines()
                .find(|l| l.starts_with(&code) && l.contains(&format!("| {message} |")))
                .unwrap_or_else(|| panic!("README lacks {row:?}"));
            assert!(line.contains(row.why), "{line} / {row:?}");
        }
    }

    #[test]
    fn messages_that_clear_up_by_themselves_are_retried() {
        for (code, message) in [
            ("InvalidParameterException", "Creation of service was not idempotent."),
            (
                "InvalidParameterException",
                "Unable to assume the service linked role. Please verify that the ECS service linked role exists.",
            ),
            (
                "InvalidParameterException",
                "The target group with targetGroupArn arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/a/1 does not have an associated load balancer.",
            ),
            (
                "ClientException",
                "Too many concurrent attempts to create a new revision of the specified family.",
            ),
            ("ServiceNotActiveException", "Service was not ACTIVE."),
        ] {
            assert_eq!(
                classify("CreateService", Some(code), message),
                ErrorClass::Transient,
                "{message}"
            );
        }
        assert_eq!(
            classify(
                "CreateService",
                Some("InvalidParameterException"),
                "subnets can not be empty."
            ),
            ErrorClass::Terminal
        );
    }
}
