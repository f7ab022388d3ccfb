//! One-shot helpers that create what a run needs. In production the SAM
//! template creates these; locally and in tests, these helpers do.

use std::time::Duration;

use aws_sdk_kinesis::error::SdkError;
use aws_sdk_kinesis::operation::describe_stream_summary::DescribeStreamSummaryError;
use aws_sdk_kinesis::types::StreamStatus;

use crate::aws::{describe_error, endpoint_description};

/// How long a new stream may take to become ACTIVE (AWS: usually under 30 s;
/// kinesis-mock: 0.5 s by default).
const STREAM_ACTIVE_TIMEOUT: Duration = Duration::from_secs(120);
const STREAM_POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Why a stream could not be made ready.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("could not {action} stream \"{stream}\" at {endpoint}: {detail}")]
    Kinesis {
        action: &'static str,
        stream: String,
        endpoint: String,
        detail: String,
    },
    #[error(
        "stream \"{stream}\" did not become ACTIVE within {}s (last status: {status})",
        STREAM_ACTIVE_TIMEOUT.as_secs()
    )]
    NotActive { stream: String, status: String },
}

impl SetupError {
    fn kinesis<E: std::error::Error + 'static>(
        action: &'static str,
        stream: &str,
        error: E,
    ) -> Self {
        SetupError::Kinesis {
            action,
            stream: stream.to_string(),
            endpoint: endpoint_description("KINESIS"),
            detail: describe_error(&error),
        }
    }
}

/// What [`ensure_stream`] found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamReady {
    pub arn: String,
    /// Open shards now (a stream that existed keeps its own count).
    pub open_shards: i32,
    pub created: bool,
}

/// Creates `stream` with `shards` shards unless it exists, then waits until
/// it is ACTIVE.
///
/// # Errors
/// [`SetupError`] when Kinesis cannot be reached or refuses, or the stream
/// does not become ACTIVE in time.
pub async fn ensure_stream(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
    shards: u32,
) -> Result<StreamReady, SetupError> {
    let mut created = false;
    match describe(kinesis, stream).await {
        Ok(_) => {}
        Err(SdkError::ServiceError(e)) if e.err().is_resource_not_found_exception() => {
            let shard_count = i32::try_from(shards).unwrap_or(i32::MAX);
            kinesis
                .create_stream()
                .stream_name(stream)
                .shard_count(shard_count)
                .send()
                .await
                .map_err(|e| SetupError::kinesis("create", stream, e))?;
            created = true;
        }
        Err(e) => return Err(SetupError::kinesis("describe", stream, e)),
    }
    let deadline = tokio::time::Instant::now() + STREAM_ACTIVE_TIMEOUT;
    loop {
        let summary = describe(kinesis, stream)
            .await
            .map_err(|e| SetupError::kinesis("describe", stream, e))?;
        let Some(summary) = summary.stream_description_summary else {
            return Err(SetupError::NotActive {
                stream: stream.to_string(),
                status: "no description returned".to_string(),
            });
        };
        if summary.stream_status == StreamStatus::Active {
            return Ok(StreamReady {
                arn: summary.stream_arn,
                open_shards: summary.open_shard_count,
                created,
            });
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(SetupError::NotActive {
                stream: stream.to_string(),
                status: summary.stream_status.as_str().to_string(),
            });
        }
        tokio::time::sleep(STREAM_POLL_INTERVAL).await;
    }
}

async fn describe(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
) -> Result<
    aws_sdk_kinesis::operation::describe_stream_summary::DescribeStreamSummaryOutput,
    SdkError<DescribeStreamSummaryError>,
> {
    kinesis
        .describe_stream_summary()
        .stream_name(stream)
        .send()
        .await
}
