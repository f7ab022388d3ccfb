//! Worker mode: N processes share a stream's shards through leases in a
//! DynamoDB table (named after the application, as in KCL), and apply every
//! batch through the same core and counts sink as the Lambda mode.
//!
//! Guarantees, and the code that keeps them:
//! - a shard is processed by at most one live worker: every lease change is
//!   conditioned on `leaseCounter` (`lease.rs`), and a worker whose renewal
//!   or checkpoint condition fails stops that shard at once (`consumer.rs`);
//! - a checkpoint names only positions the sink has applied, so a new owner
//!   re-reads at most what was applied after it, and the sink's marks make
//!   that re-read count nothing twice;
//! - on SIGTERM or Ctrl-C the batch in flight reaches the sink, each shard
//!   is checkpointed, and the leases are released for peers to take at once
//!   (`coordinator.rs`); a second signal exits at once.

pub mod consumer;
pub mod coordinator;
pub mod fanout;
pub mod lease;
pub mod retrieval;

use std::time::Duration;

use aws_sdk_kinesis::primitives::DateTime;
use tokio_util::sync::CancellationToken;

use crate::aws::{Clients, describe_error, endpoint_description};
use crate::sink::CountsSink;
use consumer::ConsumerContext;
use lease::LeaseTable;

/// A stream named by name or by ARN (Kinesis accepts either).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamRef {
    Name(String),
    Arn { arn: String, name: String },
}

impl StreamRef {
    /// Reads a name or an ARN (`arn:aws:kinesis:…:stream/NAME`).
    pub fn parse(text: &str) -> Self {
        match text
            .strip_prefix("arn:")
            .and_then(|_| text.rsplit_once(":stream/"))
        {
            Some((_, name)) => StreamRef::Arn {
                arn: text.to_string(),
                name: name.to_string(),
            },
            None => StreamRef::Name(text.to_string()),
        }
    }

    pub fn name(&self) -> &str {
        match self {
            StreamRef::Name(name) | StreamRef::Arn { name, .. } => name,
        }
    }

    fn apply_get_iterator(
        &self,
        request: aws_sdk_kinesis::operation::get_shard_iterator::builders::GetShardIteratorFluentBuilder,
    ) -> aws_sdk_kinesis::operation::get_shard_iterator::builders::GetShardIteratorFluentBuilder
    {
        match self {
            StreamRef::Name(name) => request.stream_name(name),
            StreamRef::Arn { arn, .. } => request.stream_arn(arn),
        }
    }

    fn apply_list_shards(
        &self,
        request: aws_sdk_kinesis::operation::list_shards::builders::ListShardsFluentBuilder,
    ) -> aws_sdk_kinesis::operation::list_shards::builders::ListShardsFluentBuilder {
        match self {
            StreamRef::Name(name) => request.stream_name(name),
            StreamRef::Arn { arn, .. } => request.stream_arn(arn),
        }
    }
}

/// Where a shard without a checkpoint starts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum InitialPosition {
    TrimHorizon,
    Latest,
    AtTimestamp(DateTime),
}

impl InitialPosition {
    /// The checkpoint sentinel KCL writes for it.
    pub fn sentinel(&self) -> &'static str {
        match self {
            InitialPosition::TrimHorizon => lease::TRIM_HORIZON,
            InitialPosition::Latest => lease::LATEST,
            InitialPosition::AtTimestamp(_) => lease::AT_TIMESTAMP,
        }
    }
}

/// How a worker reads its shards (`--retrieval`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetrievalConfig {
    /// GetRecords polling (the default).
    Polling,
    /// Enhanced fan-out through the stream consumer of this name,
    /// registered at start if missing.
    FanOut { consumer_name: String },
}

/// A worker's validated settings (see `shardwise worker --help`).
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub application: String,
    pub stream: StreamRef,
    pub worker_id: String,
    pub initial_position: InitialPosition,
    pub checkpoint_interval: Duration,
    pub failover_time: Duration,
    pub renew_interval: Duration,
    pub take_interval: Duration,
    pub max_records: i32,
    pub idle_time: Duration,
    pub retrieval: RetrievalConfig,
    pub max_leases: Option<usize>,
    pub shutdown_timeout: Duration,
    pub counts_table: String,
    pub sink_concurrency: std::num::NonZeroUsize,
    /// Where metrics go (installed by the binary).
    pub metrics: crate::telemetry::Exporter,
    /// How often metrics are flushed (EMF); the lag is sampled to match.
    pub metrics_interval: Duration,
}

/// Why a worker could not start.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(
        "stream \"{stream}\" not found at {endpoint}: create it (template.yaml, or \
         `shardwise setup --stream {stream}` locally), or fix --stream"
    )]
    StreamNotFound { stream: String, endpoint: String },
    #[error("could not reach stream \"{stream}\" at {endpoint}: {detail}")]
    Stream {
        stream: String,
        endpoint: String,
        detail: String,
    },
    #[error(
        "lease table \"{table}\" belongs to stream \"{other}\" (lease {lease}), not \"{stream}\": \
         an application's lease table serves one stream; use another --application-name \
         for this stream, or delete the old table if the stream was renamed"
    )]
    TableOfAnotherStream {
        table: String,
        other: String,
        lease: String,
        stream: String,
    },
    #[error(transparent)]
    Lease(#[from] lease::LeaseError),
    #[error(transparent)]
    Consumer(#[from] fanout::ConsumerError),
    #[error("{0}")]
    ShardSync(String),
    #[error(
        "{0}: the worker needs its counts table (template.yaml, or `shardwise setup` \
         locally) and dynamodb:UpdateItem on it"
    )]
    CountsTable(String),
}

/// Runs a worker until `shutdown` fires; then drains, checkpoints and
/// releases its leases.
///
/// # Errors
/// [`WorkerError`] when it cannot start (stream, table); once running, it
/// retries what fails.
pub async fn run(
    config: WorkerConfig,
    clients: Clients,
    shutdown: CancellationToken,
) -> Result<(), WorkerError> {
    let table = LeaseTable::new(clients.dynamodb.clone(), &config.application);
    let stream_arn = check_stream(&clients.kinesis, &config.stream).await?;
    if table.create_if_missing().await? {
        tracing::info!(table = %config.application, "created the lease table");
    }
    check_table_stream(&clients.kinesis, &table, &config.stream).await?;
    // Before a stream consumer is registered (it is billed) or a lease
    // taken: a worker that could not apply a batch would hold its shards
    // without moving them.
    let sink = CountsSink::new(
        clients.dynamodb.clone(),
        &config.counts_table,
        config.sink_concurrency,
    );
    sink.check_writable()
        .await
        .map_err(|e| WorkerError::CountsTable(e.to_string()))?;
    let retrieval = match &config.retrieval {
        RetrievalConfig::Polling => retrieval::Retrieval::Polling,
        RetrievalConfig::FanOut { consumer_name } => {
            let consumer_arn = fanout::ensure_consumer(
                &clients.kinesis,
                &stream_arn,
                config.stream.name(),
                consumer_name,
            )
            .await?;
            retrieval::Retrieval::FanOut {
                consumer_arn: consumer_arn.into(),
            }
        }
    };
    let context = ConsumerContext {
        retrieval,
        kinesis: clients.kinesis.clone(),
        stream: config.stream.clone(),
        sink,
        table: table.clone(),
        initial_position: config.initial_position,
        max_records: config.max_records,
        idle_time: config.idle_time,
        checkpoint_interval: config.checkpoint_interval,
        lag_sample_every: (config.metrics_interval / crate::telemetry::MAX_SAMPLES_PER_FLUSH)
            .max(Duration::from_secs(1)),
    };
    coordinator::shard_sync(&context, &table)
        .await
        .map_err(WorkerError::ShardSync)?;
    crate::telemetry::shard_synced(&config.worker_id);
    tracing::info!(
        worker_id = %config.worker_id,
        stream = %config.stream.name(),
        application = %config.application,
        retrieval = context.retrieval.name(),
        "worker started"
    );
    coordinator::Coordinator::new(config, table, context)
        .run(shutdown)
        .await;
    Ok(())
}

/// Checks that the stream exists; returns its ARN (enhanced fan-out
/// registers its consumer by ARN).
async fn check_stream(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &StreamRef,
) -> Result<String, WorkerError> {
    let request = match stream {
        StreamRef::Name(name) => kinesis.describe_stream_summary().stream_name(name),
        StreamRef::Arn { arn, .. } => kinesis.describe_stream_summary().stream_arn(arn),
    };
    match request.send().await {
        Ok(out) => out
            .stream_description_summary
            .map(|s| s.stream_arn)
            .ok_or_else(|| WorkerError::Stream {
                stream: stream.name().to_string(),
                endpoint: endpoint_description("KINESIS"),
                detail: "DescribeStreamSummary returned no stream".to_string(),
            }),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            Err(WorkerError::StreamNotFound {
                stream: stream.name().to_string(),
                endpoint: endpoint_description("KINESIS"),
            })
        }
        Err(e) => Err(WorkerError::Stream {
            stream: stream.name().to_string(),
            endpoint: endpoint_description("KINESIS"),
            detail: describe_error(&e),
        }),
    }
}

/// Refuses a lease table written for another stream: renaming an
/// application or a stream otherwise fails in confusing ways.
async fn check_table_stream(
    kinesis: &aws_sdk_kinesis::Client,
    table: &LeaseTable,
    stream: &StreamRef,
) -> Result<(), WorkerError> {
    let leases = table.list().await?;
    let refuse = |other: &str, lease: &str| WorkerError::TableOfAnotherStream {
        table: table.name().to_string(),
        other: other.to_string(),
        lease: lease.to_string(),
        stream: stream.name().to_string(),
    };
    if let Some(l) = leases
        .iter()
        .find(|l| l.stream.as_deref().is_some_and(|s| s != stream.name()))
    {
        return Err(refuse(l.stream.as_deref().unwrap_or_default(), &l.key));
    }
    // Leases without our attribute (written by the Java KCL): at least one
    // of their shards must be a shard of this stream. (Not all: shards past
    // the retention period are no longer listed.)
    let foreign: Vec<&lease::Lease> = leases.iter().filter(|l| l.stream.is_none()).collect();
    if let Some(first) = foreign.first() {
        let shards = coordinator::list_shards(kinesis, stream)
            .await
            .map_err(WorkerError::ShardSync)?;
        let ids: std::collections::HashSet<&str> = shards.iter().map(|s| s.shard_id()).collect();
        if !foreign.iter().any(|l| ids.contains(l.key.as_str())) {
            return Err(refuse(
                "another stream (none of its shards is in this one)",
                &first.key,
            ));
        }
    }
    Ok(())
}
