//! The producer of Spark's Kinesis word count example
//! (`KinesisWordCountProducerASL`): N records a second, each of M random
//! words, optionally packed into KPL aggregates.
//!
//! Guarantees: every record is written once or reported as not written.
//! PutRecords is called with batches inside the API's limits (500 records,
//! 5 MiB); records that a call reports as failed (`FailedRecordCount`:
//! throttling, internal errors) are resent alone, with jittered exponential
//! backoff, until they are written or the run is stopped; a call that fails
//! as a whole is retried whole. The totals per word count only what Kinesis
//! acknowledged, so they are what a consumer must find.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::aggregation::{Aggregator, UserRecord};
use crate::aws::{Retry, describe_error, endpoint_description, retry_class};
use crate::wordcount::record_text;

/// PutRecords limits (Kinesis API reference): 500 records and 5 MiB a call.
pub const MAX_RECORDS_PER_CALL: usize = 500;
pub const MAX_BYTES_PER_CALL: usize = 5 * 1024 * 1024;
/// First and largest pause before resending failed records.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How often the producer wakes up to send what is due.
const TICK: Duration = Duration::from_millis(100);

/// Where words come from.
#[derive(Debug, Clone)]
pub enum Vocabulary {
    /// `0`–`9`, as the seed's producer.
    Digits,
    /// Words read from a file.
    Words(Vec<String>),
}

/// When to stop.
#[derive(Debug, Clone, Copy)]
pub enum Limit {
    Records(u64),
    Duration(Duration),
    /// Until cancelled (Ctrl-C).
    None,
}

/// What to produce.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    pub stream: String,
    pub records_per_second: u32,
    pub words_per_record: u32,
    pub vocabulary: Vocabulary,
    pub limit: Limit,
    pub partition_keys: u32,
    pub aggregate: bool,
    pub seed: Option<u64>,
}

/// Why producing stopped early.
#[derive(Debug, thiserror::Error)]
pub enum ProducerError {
    #[error("could not put records into stream \"{stream}\" at {endpoint}: {detail}")]
    Rejected {
        stream: String,
        endpoint: String,
        detail: String,
    },
}

/// What was produced, and what Kinesis acknowledged.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ProducerReport {
    /// User records acknowledged (what consumers count).
    pub user_records: u64,
    /// Kinesis records acknowledged (fewer with `--aggregate`).
    pub kinesis_records: u64,
    /// PutRecords entries resent after a partial failure.
    pub retried_records: u64,
    /// User records generated but not acknowledged when the run stopped.
    pub unsent_user_records: u64,
    /// Words of the acknowledged user records.
    pub totals: BTreeMap<String, u64>,
}

/// One PutRecords entry waiting to be written, with what it carries.
struct Pending {
    partition_key: String,
    explicit_hash_key: Option<String>,
    data: Vec<u8>,
    /// The user records' texts inside (one, or an aggregate's).
    texts: Vec<Vec<u8>>,
    attempts: u32,
}

/// Called about once a second with the report so far (progress line).
pub type Progress<'a> = dyn FnMut(&ProducerReport, Duration) + Send + 'a;

/// Runs the producer until its limit. `stop` ends generating early (what
/// is queued is still sent); `abort` gives up on the queue too.
///
/// # Errors
/// [`ProducerError::Rejected`] when Kinesis refuses for good (no such
/// stream, no permission); transient failures are retried.
pub async fn run(
    kinesis: &aws_sdk_kinesis::Client,
    config: &ProducerConfig,
    stop: &CancellationToken,
    abort: &CancellationToken,
    progress: &mut Progress<'_>,
) -> Result<ProducerReport, ProducerError> {
    let mut rng = match config.seed {
        Some(seed) => fastrand::Rng::with_seed(seed),
        None => fastrand::Rng::new(),
    };
    let mut report = ProducerReport::default();
    let mut aggregator = Aggregator::default();
    let mut aggregated_texts: Vec<Vec<u8>> = Vec::new();
    let mut queue: Vec<Pending> = Vec::new();
    let start = Instant::now();
    let mut generated: u64 = 0;
    let mut last_progress = start;
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = abort.cancelled() => break,
            _ = interval.tick() => {}
        }
        let elapsed = start.elapsed();
        // Records due by now at the configured rate, within the limit.
        let mut due = (elapsed.as_secs_f64() * f64::from(config.records_per_second)) as u64 + 1;
        let finished_generating = match config.limit {
            Limit::Records(total) => {
                due = due.min(total);
                generated >= total
            }
            Limit::Duration(limit) => elapsed >= limit,
            Limit::None => false,
        } || stop.is_cancelled();
        if !finished_generating {
            while generated < due {
                let text = random_text(&mut rng, config);
                let key = format!("partition-{}", rng.u32(0..config.partition_keys.max(1)));
                generated += 1;
                if config.aggregate {
                    let user = UserRecord {
                        partition_key: key,
                        explicit_hash_key: None,
                        data: text.clone(),
                    };
                    if let Some(full) = aggregator.push(user) {
                        let texts = std::mem::take(&mut aggregated_texts);
                        queue.push(pending_aggregate(full, texts));
                    }
                    aggregated_texts.push(text);
                } else {
                    queue.push(Pending {
                        partition_key: key,
                        explicit_hash_key: None,
                        data: text.clone(),
                        texts: vec![text],
                        attempts: 0,
                    });
                }
            }
        }
        // Aggregates are flushed every tick: latency stays one tick.
        if let Some(partial) = aggregator.flush() {
            let texts = std::mem::take(&mut aggregated_texts);
            queue.push(pending_aggregate(partial, texts));
        }
        queue = send_all(kinesis, &config.stream, queue, &mut report, abort).await?;
        if last_progress.elapsed() >= Duration::from_secs(1) {
            progress(&report, start.elapsed());
            last_progress = Instant::now();
        }
        if finished_generating && queue.is_empty() {
            break;
        }
    }
    report.unsent_user_records =
        queue.iter().map(|p| p.texts.len() as u64).sum::<u64>() + aggregated_texts.len() as u64;
    progress(&report, start.elapsed());
    Ok(report)
}

fn pending_aggregate(put: crate::aggregation::AggregatedPut, texts: Vec<Vec<u8>>) -> Pending {
    Pending {
        partition_key: put.partition_key,
        explicit_hash_key: put.explicit_hash_key,
        data: put.data,
        texts,
        attempts: 0,
    }
}

fn random_text(rng: &mut fastrand::Rng, config: &ProducerConfig) -> Vec<u8> {
    let mut text = String::new();
    for i in 0..config.words_per_record {
        if i > 0 {
            text.push(' ');
        }
        match &config.vocabulary {
            Vocabulary::Digits => text.push(char::from(b'0' + rng.u8(0..10))),
            Vocabulary::Words(words) => {
                if let Some(word) = words.get(rng.usize(0..words.len().max(1))) {
                    text.push_str(word);
                }
            }
        }
    }
    text.into_bytes()
}

/// Sends `queue` in PutRecords calls within the limits, resending what
/// failed with backoff, until all is written or `cancel` fires. Returns
/// what is still unsent.
async fn send_all(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
    mut queue: Vec<Pending>,
    report: &mut ProducerReport,
    cancel: &CancellationToken,
) -> Result<Vec<Pending>, ProducerError> {
    while !queue.is_empty() && !cancel.is_cancelled() {
        let batch = take_batch(&mut queue);
        let failed = put_batch(kinesis, stream, batch, report).await?;
        if failed.is_empty() {
            continue;
        }
        // The failed ones go first, in their order, after a pause that
        // grows with their attempts.
        let attempts = failed.iter().map(|p| p.attempts).max().unwrap_or(1);
        report.retried_records += failed.len() as u64;
        let mut rest = failed;
        rest.append(&mut queue);
        queue = rest;
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = tokio::time::sleep(backoff(attempts)) => {}
        }
    }
    Ok(queue)
}

/// Full jitter: a random pause up to the exponential bound.
fn backoff(attempts: u32) -> Duration {
    let bound = BACKOFF_FIRST
        .saturating_mul(1u32 << attempts.min(10))
        .min(BACKOFF_MAX);
    bound.mul_f64(0.5 + fastrand::f64() / 2.0)
}

/// The longest prefix of `queue` within the PutRecords limits.
fn take_batch(queue: &mut Vec<Pending>) -> Vec<Pending> {
    let mut bytes = 0;
    let mut count = 0;
    for pending in queue.iter() {
        let size = pending.data.len() + pending.partition_key.len();
        if count == MAX_RECORDS_PER_CALL || (count > 0 && bytes + size > MAX_BYTES_PER_CALL) {
            break;
        }
        bytes += size;
        count += 1;
    }
    queue.drain(..count).collect()
}

/// One PutRecords call. Returns the entries that failed (to resend); the
/// acknowledged ones are added to the report.
async fn put_batch(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
    batch: Vec<Pending>,
    report: &mut ProducerReport,
) -> Result<Vec<Pending>, ProducerError> {
    let mut entries = Vec::with_capacity(batch.len());
    for pending in &batch {
        let entry = PutRecordsRequestEntry::builder()
            .partition_key(&pending.partition_key)
            .set_explicit_hash_key(pending.explicit_hash_key.clone())
            .data(Blob::new(pending.data.clone()))
            .build()
            .map_err(|e| rejected(stream, &e))?;
        entries.push(entry);
    }
    let output = match kinesis
        .put_records()
        .stream_name(stream)
        .set_records(Some(entries))
        .send()
        .await
    {
        Ok(output) => output,
        Err(error) => match retry_class(&error) {
            // Nothing of this call was written: all of it goes again.
            Retry::Transient => {
                tracing::warn!(stream, records = batch.len(), error = %describe_error(&error), "PutRecords failed; retrying the batch");
                return Ok(batch
                    .into_iter()
                    .map(|mut p| {
                        p.attempts += 1;
                        p
                    })
                    .collect());
            }
            Retry::Permanent => return Err(rejected(stream, &error)),
        },
    };
    let results = output.records();
    let mut failed = Vec::new();
    for (index, mut pending) in batch.into_iter().enumerate() {
        let result = results.get(index);
        let written =
            result.is_some_and(|r| r.error_code().is_none() && r.sequence_number().is_some());
        if written {
            acknowledge(&pending, report);
        } else {
            pending.attempts += 1;
            if pending.attempts == 1 || pending.attempts % 10 == 0 {
                tracing::debug!(
                    stream,
                    error_code = result
                        .and_then(|r| r.error_code())
                        .unwrap_or("missing result"),
                    attempts = pending.attempts,
                    "record not written; resending"
                );
            }
            failed.push(pending);
        }
    }
    Ok(failed)
}

fn acknowledge(pending: &Pending, report: &mut ProducerReport) {
    report.kinesis_records += 1;
    report.user_records += pending.texts.len() as u64;
    for text in &pending.texts {
        if let Ok(text) = record_text(text) {
            text.for_each_word(|word| {
                *report
                    .totals
                    .entry(String::from_utf8_lossy(word).into_owned())
                    .or_insert(0) += 1;
            });
        }
    }
}

fn rejected(stream: &str, error: &(dyn std::error::Error + 'static)) -> ProducerError {
    ProducerError::Rejected {
        stream: stream.to_string(),
        endpoint: endpoint_description("KINESIS"),
        detail: describe_error(error),
    }
}
