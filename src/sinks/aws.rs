//! AWS SDK configuration shared by every AWS sink: region, custom endpoint, timeouts, SDK retries.
//!
//! Builds `SdkConfig` only; it must not create service clients' requests.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::config::{Credentials, Region};

use crate::config::AwsConfig;

/// Loads the SDK config: the default credential chain (environment, web identity/IRSA, profile,
/// IMDS), `aws.region` and `aws.endpoint_url` applied. With an endpoint on loopback (moto,
/// LocalStack) and no `AWS_ACCESS_KEY_ID` in the environment, dummy static credentials are used so
/// local runs need no AWS account.
pub async fn sdk_config(cfg: &AwsConfig, request_timeout: Duration) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::standard().with_max_attempts(2))
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
