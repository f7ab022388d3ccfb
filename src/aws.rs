//! AWS clients, built once and shared.
//!
//! Everything shardwise says to AWS goes through clients made here from the
//! standard `aws-config` chain, so the same code reaches real AWS and the
//! local engines: the endpoint comes from `AWS_ENDPOINT_URL`, or per service
//! `AWS_ENDPOINT_URL_KINESIS` / `AWS_ENDPOINT_URL_DYNAMODB`, exactly as the
//! SDK documents. Tests use this module too; there is no test-only path.

use aws_config::{BehaviorVersion, SdkConfig};

/// Why the AWS configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum AwsConfigError {
    /// Neither the environment nor a profile names a region.
    #[error(
        "no AWS region is set: set AWS_REGION (for example AWS_REGION=us-east-1), \
         or for the local AWS run `eval \"$(localstack/up)\"`"
    )]
    NoRegion,
}

/// The clients of the services shardwise uses. Cheap to clone: each client
/// shares its connection pool with its clones.
#[derive(Clone, Debug)]
pub struct Clients {
    pub kinesis: aws_sdk_kinesis::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
}

impl Clients {
    /// Builds both clients from one loaded configuration.
    pub fn new(config: &SdkConfig) -> Self {
        Self {
            kinesis: aws_sdk_kinesis::Client::new(config),
            dynamodb: aws_sdk_dynamodb::Client::new(config),
        }
    }

    /// Loads the standard configuration and builds the clients.
    ///
    /// # Errors
    /// [`AwsConfigError::NoRegion`] when no region is configured: every call
    /// would fail later with a less helpful message.
    pub async fn from_env() -> Result<Self, AwsConfigError> {
        let config = load_sdk_config().await;
        if config.region().is_none() {
            return Err(AwsConfigError::NoRegion);
        }
        Ok(Self::new(&config))
    }
}

/// Loads region, credentials and endpoints the standard way (environment,
/// then profile files, then container or instance metadata), with
/// timeouts: the SDK has none by default, and an endpoint that stops
/// answering (rather than refusing) would otherwise hang a shard forever.
/// A timed-out attempt is retried like any transient failure.
pub async fn load_sdk_config() -> SdkConfig {
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(std::time::Duration::from_secs(3))
        // GetRecords answers within a second or two even for 10 MB; a
        // conditional write within milliseconds.
        .operation_attempt_timeout(std::time::Duration::from_secs(10))
        .build();
    aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(timeouts)
        .load()
        .await
}

/// Names the endpoint a service is reached at, for error messages: the
/// environment variable that set it, or the AWS default.
pub fn endpoint_description(service_env_suffix: &str) -> String {
    let specific = format!("AWS_ENDPOINT_URL_{service_env_suffix}");
    for name in [specific.as_str(), "AWS_ENDPOINT_URL"] {
        if let Ok(url) = std::env::var(name)
            && !url.is_empty()
        {
            return format!("endpoint {url} (from {name})");
        }
    }
    "the default AWS endpoint".to_string()
}

/// Renders an error and its sources as one line, `Display` only (the SDK's
/// own context printer appends a `Debug` dump no newcomer should read).
/// Adds the likely remedy when nothing listened at the endpoint.
pub fn describe_error(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    let mut refused = false;
    while let Some(cause) = source {
        let text = cause.to_string();
        refused |= text.contains("Connection refused");
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = cause.source();
    }
    if refused {
        line.push_str(
            " (nothing answers there: for the local AWS run `eval \"$(localstack/up)\"`; \
             otherwise check the endpoint variables)",
        );
    }
    line
}

/// What to do about a failed AWS call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Throttling, a 5xx, a timeout or a broken connection: the same call
    /// may succeed later; back off and retry.
    Transient,
    /// The request itself is wrong, or refused for good (missing table,
    /// access denied, validation): retrying cannot help.
    Permanent,
}

/// Error codes AWS uses for throttling and overload, across services, and
/// for a resource that is busy for now (`ResourceInUseException`: a stream
/// or table being updated, a stream consumer not ACTIVE yet, a shard whose
/// previous subscription is still closing). Callers for whom "in use"
/// means something else (CreateTable: it exists) match it before this.
const TRANSIENT_CODES: &[&str] = &[
    "ResourceInUseException",
    "ThrottlingException",
    "Throttling",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "LimitExceededException",
    "KMSThrottlingException",
    "InternalServerError",
    "InternalFailure",
    "InternalFailureException",
    "ServiceUnavailable",
    "TransactionInProgressException",
];

/// The one place that decides whether an AWS call is worth retrying. The
/// SDK has already retried transient failures a few times (its standard
/// strategy: exponential backoff with jitter) by the time this sees them.
pub fn retry_class<E, R>(error: &aws_smithy_runtime_api::client::result::SdkError<E, R>) -> Retry
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata,
    R: HttpStatus,
{
    use aws_smithy_runtime_api::client::result::SdkError;
    match error {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            Retry::Transient
        }
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or_default();
            if TRANSIENT_CODES.contains(&code) || service.raw().status() >= 500 {
                Retry::Transient
            } else {
                Retry::Permanent
            }
        }
        // ConstructionFailure and anything a future SDK adds: a bug or a
        // bad setting on our side; retrying would repeat it.
        _ => Retry::Permanent,
    }
}

/// The HTTP status of a raw response, for [`retry_class`].
pub trait HttpStatus {
    fn status(&self) -> u16;
}

/// An error inside an event stream (SubscribeToShard) has no HTTP status
/// of its own: the response was a 200; its code decides.
impl HttpStatus for aws_smithy_types::event_stream::RawMessage {
    fn status(&self) -> u16 {
        200
    }
}

impl HttpStatus for aws_smithy_runtime_api::http::Response {
    fn status(&self) -> u16 {
        self.status().as_u16()
    }
}
