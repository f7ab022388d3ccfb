//! The AWS Lambda handler for batches from a Kinesis event source mapping.
//!
//! Each invocation's records are turned into [`Record`]s, grouped by shard,
//! and each shard's batch is counted and applied through the same
//! [`CountsSink`] as the worker's, so a batch that Lambda delivers again
//! (a retry, an overlap, a bisected half) counts each record once.
//!
//! Outcomes, per shard batch:
//! - applied: nothing reported;
//! - a record that can never be counted (not UTF-8, empty, not a Kinesis
//!   record): skipped and logged once with shard, sequence number and
//!   reason; never reported, so it cannot block the shard;
//! - the counts table unavailable (throttling, 5xx, network): the batch's
//!   lowest sequence number is reported in `batchItemFailures`, so Lambda
//!   retries from there (with `ReportBatchItemFailures` enabled on the
//!   mapping);
//! - the table refusing for good (missing, no permission): the invocation
//!   fails with a short `errorType` (`SinkRejected`…) that alarms can match.

use aws_lambda_events::event::kinesis::KinesisEvent;
use aws_lambda_events::event::streams::{KinesisBatchItemFailure, KinesisEventResponse};
use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use tracing::{info, warn};

use std::time::{Instant, SystemTime};

use crate::aggregation::{deaggregate_batch, is_aggregated};
use crate::record::Record;
use crate::sink::{CountsSink, SinkError};
use crate::telemetry::{self, BatchFigures, Metrics};
use crate::wordcount::BadRecord;

/// Why a whole invocation failed.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error("shard {shard}: {source}")]
    Sink {
        shard: String,
        #[source]
        source: SinkError,
    },
}

impl From<HandlerError> for Diagnostic {
    fn from(error: HandlerError) -> Self {
        let error_type = match &error {
            HandlerError::Sink { source, .. } => source.label(),
        };
        Diagnostic {
            error_type: error_type.to_string(),
            error_message: error.to_string(),
        }
    }
}

/// The handler, built once per cold start and shared by every invocation.
#[derive(Clone, Debug)]
pub struct Handler {
    sink: CountsSink,
}

impl Handler {
    pub fn new(sink: CountsSink) -> Self {
        Self { sink }
    }

    /// Handles one event.
    ///
    /// # Errors
    /// [`HandlerError`] only when the counts table refuses for good; every
    /// passing failure is reported in the response instead.
    pub async fn handle(&self, event: KinesisEvent) -> Result<KinesisEventResponse, HandlerError> {
        let mut response = KinesisEventResponse::default();
        for records in group_by_shard(event) {
            let Some(shard_id) = records.first().map(|r| r.shard_id.clone()) else {
                continue;
            };
            let mut figures = BatchFigures {
                kinesis_records: records.len() as u64,
                bytes: records.iter().map(|r| r.data.len() as u64).sum(),
                ..BatchFigures::default()
            };
            if let Some(age) = records
                .last()
                .and_then(|r| r.arrival)
                .and_then(|arrival| SystemTime::now().duration_since(arrival).ok())
            {
                telemetry::iterator_age(shard_id.as_str(), age);
            }
            let plain = records.iter().filter(|r| !is_aggregated(&r.data)).count();
            // KPL aggregates become their user records (Lambda does not
            // de-aggregate); corrupt ones are skipped like any bad record.
            let (batch, corrupt) = deaggregate_batch(records);
            corrupt.iter().for_each(BadRecord::report);
            figures.deaggregated = batch.len().saturating_sub(plain) as u64;
            figures.user_records = (batch.len() + corrupt.len()) as u64;
            let Some(first) = batch.first() else {
                telemetry::batch_processed(shard_id.as_str(), &figures);
                continue;
            };
            let lowest_sequence = first.position.sequence.to_string();
            let started = Instant::now();
            match self.sink.apply(&batch).await {
                Ok((report, counts)) => {
                    counts.bad.iter().for_each(BadRecord::report);
                    figures.sink_writes = report.writes as u64;
                    figures.sink_recounts = report.recounted as u64;
                    figures.elapsed = started.elapsed();
                    telemetry::batch_processed(shard_id.as_str(), &figures);
                    info!(
                        shard_id = %shard_id,
                        records = batch.len(),
                        first_sequence = %lowest_sequence,
                        last_sequence = %batch.last().map(|r| r.position.sequence.to_string()).unwrap_or_default(),
                        words = report.words,
                        applied = report.applied,
                        already_applied = report.already_applied,
                        recounted = report.recounted,
                        writes = report.writes,
                        bad_records = report.records_bad,
                        "batch applied"
                    );
                }
                Err(error) if error.is_retriable() => {
                    telemetry::sink_failed(shard_id.as_str());
                    telemetry::batch_item_failure(shard_id.as_str());
                    warn!(
                        shard_id = %shard_id,
                        from_sequence = %lowest_sequence,
                        error = %error,
                        "batch not applied; reported for retry"
                    );
                    let mut failure = KinesisBatchItemFailure::default();
                    failure.item_identifier = Some(lowest_sequence);
                    response.batch_item_failures.push(failure);
                }
                Err(source) => {
                    telemetry::sink_failed(shard_id.as_str());
                    return Err(HandlerError::Sink {
                        shard: format!("{}/{}", first.stream, shard_id),
                        source,
                    });
                }
            }
        }
        Ok(response)
    }
}

/// The event's records as one in-order batch per shard. Records that are
/// not Kinesis records (no `eventID`, a malformed sequence number) are
/// logged and skipped: retrying could never make them readable.
fn group_by_shard(event: KinesisEvent) -> Vec<Vec<Record>> {
    // An event source mapping sends one shard per event; more are handled.
    let mut batches: Vec<Vec<Record>> = Vec::new();
    for raw in event.records {
        let sequence = raw.kinesis.sequence_number.clone();
        match Record::from_lambda(raw) {
            Ok(record) => {
                let same_shard = |batch: &&mut Vec<Record>| {
                    batch.first().is_some_and(|first| {
                        first.shard_id == record.shard_id && first.stream == record.stream
                    })
                };
                match batches.iter_mut().find(same_shard) {
                    Some(batch) => batch.push(record),
                    None => batches.push(vec![record]),
                }
            }
            Err(error) => warn!(
                sequence_number = %sequence,
                reason = "not_a_kinesis_record",
                "skipped a record that cannot be counted: {error}"
            ),
        }
    }
    batches
        .into_iter()
        .map(|mut batch| {
            // Lambda delivers a shard in order; sorting makes that a fact,
            // and one record twice in one event is the same record.
            batch.sort_by(|a, b| a.position.cmp(&b.position));
            batch.dedup_by(|a, b| a.position == b.position);
            batch
        })
        .collect()
}

/// Serves invocations until the Lambda runtime stops the process. Each
/// invocation's metrics are written (EMF, tagged with its request id)
/// before its response is returned, so a frozen sandbox loses none.
///
/// # Errors
/// When the runtime API cannot be reached.
pub async fn run(handler: Handler, metrics: Metrics) -> Result<(), lambda_runtime::Error> {
    let handler = &handler;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<KinesisEvent>| async move {
            metrics.set_property("RequestId", event.context.request_id.clone());
            let response = handler.handle(event.payload).await;
            metrics.flush();
            response
        },
    ))
    .await
}
