//! What an ECS error means for the operator: retry with backoff, stop until the spec
//! changes, or treat the resource as gone.

use aws_sdk_ecs::error::{ProvideErrorMetadata, SdkError};

/// How the reconcile core treats a failed ECS call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Throttling: back off and retry; counted apart in metrics.
    Throttled,
    /// 5xx, timeouts, connection problems, conflicting updates: back off and retry.
    Transient,
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

/// Messages with which ECS answers ClientException or InvalidParameterException for a
/// condition that clears up by itself: such answers are retried with backoff, not Stalled.
pub const TRANSIENT_MESSAGES: &[&str] = &[
    // CreateService over a same-name service still DRAINING, or just gone INACTIVE
    // (DeleteService doc; terraform-provider-aws#2283).
    "Creation of service was not idempotent",
    // ECS creates its service-linked role on first use; it takes a moment to be assumable.
    "Unable to assume the service linked role",
    // A role created moments ago, not yet visible to ECS (IAM propagation).
    "Please verify that the ECS service role being passed has the proper permissions",
    "Unable to assume role and validate the",
    // A target group created moments ago, not yet attached to its load balancer.
    "does not have an associated load balancer",
    // RegisterTaskDefinition racing another registration of the family
    // (terraform-provider-aws#9777).
    "Too many concurrent attempts to create a new revision of the specified family",
];

/// Maps ECS's error code (from `operation`) and message to what the operator should do.
pub fn classify(operation: &str, code: Option<&str>, message: &str) -> ErrorClass {
    match code.unwrap_or_default() {
        "ThrottlingException" | "Throttling" | "RequestLimitExceeded" | "TooManyRequestsException" => {
            ErrorClass::Throttled
        }
        "ClusterNotFoundException" | "ServiceNotFoundException" | "ResourceNotFoundException" => ErrorClass::NotFound,
        // NB: DescribeTaskDefinition answers a missing family with a ClientException; any
        // other operation saying so (CreateService of a missing revision) is rejected input.
        "ClientException"
            if operation == "DescribeTaskDefinition" && message.starts_with("Unable to describe task definition") =>
        {
            ErrorClass::NotFound
        }
        "ClientException" | "InvalidParameterException" if TRANSIENT_MESSAGES.iter().any(|m| message.contains(m)) => {
            ErrorClass::Transient
        }
        // UpdateService of a service that is DRAINING: what follows (wait, recreate) is
        // decided on the next pass from a fresh DescribeServices.
        "ServiceNotActiveException" => ErrorClass::Transient,
        "AccessDeniedException" | "UnauthorizedOperation" => ErrorClass::Denied,
        "InvalidParameterException"
        | "ClientException"
        | "PlatformUnknownException"
        | "PlatformTaskDefinitionIncompatibilityException"
        | "UnsupportedFeatureException"
        | "MissingVersionException"
        | "InvalidClientTokenId"
        | "UnrecognizedClientException" => ErrorClass::Terminal,
        // ServerException, ServiceUnavailable, UpdateInProgressException, ResourceInUseException,
        // ClusterContains* (handled where deletion waits for them) and anything unknown.
        _ => ErrorClass::Transient,
    }
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
