//! AWS SDK configuration shared by every AWS sink: region, custom endpoint, timeouts, SDK retries.
//!
//! Builds `SdkConfig` and classifies SDK errors; it must not send requests.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::stalled_stream_protection::StalledStreamProtectionConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::config::{Credentials, Region};

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};

use super::{SinkError, SinkResult};
use crate::config::AwsConfig;
use crate::error_class::ErrorClass;

/// Loads the SDK config: the default credential chain (environment, web identity/IRSA, profile,
/// IMDS), `aws.region` and `aws.endpoint_url` applied. With an endpoint on loopback (moto,
/// LocalStack) and no `AWS_ACCESS_KEY_ID` in the environment, dummy static credentials are used so
/// local runs need no AWS account.
pub async fn sdk_config(cfg: &AwsConfig, request_timeout: Duration) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::standard().with_max_attempts(2))
        // Stalled-stream protection watches streaming bodies with a timer per request; these
        // calls have small JSON bodies and an attempt timeout, so it is pure per-request cost.
        .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .operation_attempt_timeout(request_timeout)
                .connect_timeout(Duration::from_secs(3))
                .build(),
        );
    if let Some(r) = &cfg.region {
        loader = loader.region(Region::new(r.clone()));
    } else if cfg.endpoint_url.is_some() {
        loader = loader.region(Region::new("us-west-2"));
    }
    if let Some(url) = &cfg.endpoint_url {
        loader = loader.endpoint_url(url);
        if is_loopback(url) && std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
            loader = loader.credentials_provider(Credentials::new(
                "test",
                "test",
                None,
                None,
                "cdc-relay-local",
            ));
        }
    }
    loader.load().await
}

/// Classifies an AWS SDK error of any service per DESIGN §4: `Stale` for DynamoDB's failed
/// version guard; throttling, 5xx, timeouts and connection failures retryable; missing
/// resources and auth failures misconfiguration; validation errors poison.
pub fn classify<E>(sink: &str, err: &SdkError<E, HttpResponse>) -> SinkResult
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match err {
        SdkError::ServiceError(se) => {
            let e = se.err();
            let code = e.code().unwrap_or("Unknown");
            let msg = format!("{code}: {}", e.message().unwrap_or(""));
            classify_code(sink, code, msg, se.raw().status().is_server_error())
        }
        // Timeouts, dispatch failures (connection refused), unparseable responses: transient.
        other => SinkError::result(
            sink,
            ErrorClass::Retryable,
            "transport",
            aws_sdk_dynamodb::error::DisplayErrorContext(other).to_string(),
        ),
    }
}

/// Classifies an AWS error by its code (`message` is `"<code>: <text>"`), for the SDK's errors
/// and for `dynamodb_wire`'s: see `classify`. `server_error`: the HTTP status was 5xx.
pub fn classify_code(sink: &str, code: &str, msg: String, server_error: bool) -> SinkResult {
    let failed = |class: ErrorClass, reason: &'static str, message: String| {
        SinkError::result(sink, class, reason, message)
    };
    match code {
        "ConditionalCheckFailedException" => SinkResult::Stale,
        "ProvisionedThroughputExceededException"
        | "ThrottlingException"
        | "RequestLimitExceeded"
        | "InternalServerError"
        | "ServiceUnavailable"
        | "TransactionConflictException"
        | "LimitExceededException"
        | "InternalException"
        | "InternalFailure"
        | "RequestThrottled"
        | "AWS.SimpleQueueService.RequestThrottled" => {
            failed(ErrorClass::Retryable, "throttled_or_unavailable", msg)
        }
        "ResourceNotFoundException"
        | "AccessDeniedException"
        | "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "MissingAuthenticationTokenException"
        | "ExpiredTokenException"
        | "QueueDoesNotExist"
        | "AWS.SimpleQueueService.NonExistentQueue"
        | "InvalidClientTokenId"
        | "AccessDenied" => failed(ErrorClass::Misconfiguration, "misconfigured", msg),
        // DynamoDB reports an oversize item as "Item size has exceeded the maximum allowed size".
        "ValidationException" if msg.contains("Item size") => {
            failed(ErrorClass::Poison, "item_too_large", msg)
        }
        "ValidationException" => failed(ErrorClass::Poison, "sink_rejected", msg),
        "ItemCollectionSizeLimitExceededException" => {
            failed(ErrorClass::Poison, "item_collection_too_large", msg)
        }
        _ if server_error => failed(ErrorClass::Retryable, "server_error", msg),
        _ => failed(ErrorClass::Misconfiguration, "unexpected_client_error", msg),
    }
}

fn is_loopback(url: &str) -> bool {
    let host = url
        .split("://")
        .nth(1)
        .unwrap_or(url)
        .split(['/', ':'])
        .next()
        .unwrap_or("");
    host == "localhost" || host.starts_with("127.") || url.contains("://[::1]")
}

/// The SDK config DynamoDB clients use: `dynamodb.write_region` when set (global tables: every
/// pod writes one region), else the relay's. With a custom endpoint the region is only the
/// signing region (moto and LocalStack serve every region on one endpoint).
pub fn dynamodb_sdk(
    sdk: &aws_config::SdkConfig,
    cfg: &crate::config::DynamoDbConfig,
) -> aws_config::SdkConfig {
    match &cfg.write_region {
        Some(r) => sdk.to_builder().region(Region::new(r.clone())).build(),
        None => sdk.clone(),
    }
}

/// An SDK timeout config with one sink's per-attempt timeout.
pub fn timeouts(request_timeout: Duration) -> TimeoutConfig {
    TimeoutConfig::builder()
        .operation_attempt_timeout(request_timeout)
        .connect_timeout(Duration::from_secs(3))
        .build()
}

#[cfg(test)]
mod tests {
    #[test]
    fn loopback_detection() {
        assert!(super::is_loopback("http://127.0.0.1:5000"));
        assert!(super::is_loopback("http://localhost:5000/x"));
        assert!(!super::is_loopback(
            "https://dynamodb.us-west-2.amazonaws.com"
        ));
    }
}
