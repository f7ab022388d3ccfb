//! One shard's consumer: records from the lease's checkpoint (by polling or
//! enhanced fan-out, `retrieval.rs`), de-aggregation, the counts sink, and
//! checkpoints of applied positions.
//!
//! Lifecycle: `Processing → ShardEnded | LeaseLost | ShutDown`.
//! - Checkpoints only ever name positions the sink has applied.
//! - Lease lost (a renewal or checkpoint condition failed): stop at once,
//!   no checkpoint; the new owner resumes from the last one.
//! - Shutdown: the batch in flight reaches the sink, then a checkpoint.
//! - Shard end: `SHARD_END` is checkpointed and the children's leases are
//!   created from the `ChildShards` of the last page.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_kinesis::types::ShardIteratorType;
use tokio::sync::Mutex;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::fanout::FanOut;
use super::lease::{self, Lease, LeaseError, LeaseTable};
use super::retrieval::{Polling, Retrieval, ShardReader, Start};
use super::{InitialPosition, StreamRef};
use crate::aggregation::{deaggregate_batch, is_aggregated};
use crate::aws::Retry;
use crate::record::{Position, Record, SequenceNumber, ShardId};
use crate::sink::{ApplyReport, CountsSink};
use crate::telemetry::{self, BatchFigures};
use crate::wordcount::BadRecord;

const BACKOFF_FIRST: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// A lease this worker holds, with the counter it last wrote. Renewals and
/// checkpoints both move the counter, so both go through this one lock.
#[derive(Debug)]
pub struct HeldLease {
    pub key: String,
    pub owner: Arc<str>,
    counter: Mutex<u64>,
    /// Cancelled when the lease is found lost: the consumer stops at once.
    pub lost: CancellationToken,
}

impl HeldLease {
    pub fn new(key: String, owner: Arc<str>, counter: u64) -> Self {
        Self {
            key,
            owner,
            counter: Mutex::new(counter),
            lost: CancellationToken::new(),
        }
    }

    fn note(&self, result: &Result<u64, LeaseError>) {
        if let Err(LeaseError::Lost { .. }) = result {
            self.lost.cancel();
        }
    }

    /// # Errors
    /// [`LeaseError`]; `Lost` also cancels [`HeldLease::lost`].
    pub async fn renew(&self, table: &LeaseTable) -> Result<(), LeaseError> {
        let mut counter = self.counter.lock().await;
        let result = table.renew(&self.key, &self.owner, *counter).await;
        self.note(&result);
        *counter = result?;
        Ok(())
    }

    /// # Errors
    /// [`LeaseError`]; `Lost` also cancels [`HeldLease::lost`].
    pub async fn checkpoint(
        &self,
        table: &LeaseTable,
        checkpoint: &str,
        sub: u64,
        lag_millis: Option<u64>,
    ) -> Result<(), LeaseError> {
        let mut counter = self.counter.lock().await;
        let result = table
            .checkpoint(
                &self.key,
                &self.owner,
                *counter,
                checkpoint,
                sub,
                lag_millis,
            )
            .await;
        self.note(&result);
        *counter = result?;
        telemetry::checkpoint_written(&self.key);
        Ok(())
    }

    /// # Errors
    /// [`LeaseError`] when the release was refused (already moved).
    pub async fn release(&self, table: &LeaseTable) -> Result<(), LeaseError> {
        let counter = self.counter.lock().await;
        table.release(&self.key, &self.owner, *counter).await
    }
}

/// How a consumer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumerEnd {
    ShardEnded,
    LeaseLost,
    ShutDown,
}

/// What a consumer needs besides its lease.
#[derive(Clone, Debug)]
pub struct ConsumerContext {
    pub kinesis: aws_sdk_kinesis::Client,
    pub stream: StreamRef,
    pub sink: CountsSink,
    pub table: LeaseTable,
    pub initial_position: InitialPosition,
    pub max_records: i32,
    pub idle_time: Duration,
    pub checkpoint_interval: Duration,
    /// Lag is recorded as a metric at most this often per shard.
    pub lag_sample_every: Duration,
    /// Polling or enhanced fan-out.
    pub retrieval: Retrieval,
}

impl ConsumerContext {
    /// A reader of `shard_id` from `start`, of this worker's retrieval.
    fn reader(&self, shard_id: ShardId, start: Start) -> ShardReader {
        match &self.retrieval {
            Retrieval::Polling => ShardReader::Polling(Polling::new(
                self.kinesis.clone(),
                self.stream.clone(),
                shard_id,
                self.max_records,
                self.idle_time,
                start,
            )),
            Retrieval::FanOut { consumer_arn } => ShardReader::FanOut(FanOut::new(
                self.kinesis.clone(),
                consumer_arn.clone(),
                shard_id,
                start,
            )),
        }
    }
}

/// Runs one shard until it ends, the lease is lost, or `shutdown` fires.
#[tracing::instrument(name = "shard", skip_all, fields(shard_id = %held.key, worker_id = %held.owner))]
pub async fn run(
    context: ConsumerContext,
    held: Arc<HeldLease>,
    lease: Lease,
    shutdown: CancellationToken,
) -> ConsumerEnd {
    let shard_id = ShardId::new(lease.key.clone());
    let stream_name: Arc<str> = context.stream.name().into();
    let mut applied: Option<Position> = None;
    let start = match lease.checkpoint.as_str() {
        lease::SHARD_END => return ConsumerEnd::ShardEnded,
        lease::TRIM_HORIZON => Start::Sentinel(ShardIteratorType::TrimHorizon),
        lease::LATEST => Start::Sentinel(ShardIteratorType::Latest),
        lease::AT_TIMESTAMP => match context.initial_position {
            InitialPosition::AtTimestamp(at) => Start::Timestamp(at),
            _ => Start::Sentinel(ShardIteratorType::TrimHorizon),
        },
        sequence => match SequenceNumber::parse(sequence) {
            Ok(sequence) => {
                let position = Position::new(sequence, lease.checkpoint_sub);
                applied = Some(position.clone());
                Start::At(position)
            }
            Err(e) => {
                warn!(checkpoint = %lease.checkpoint, error = %e, "unreadable checkpoint; starting from the initial position");
                context.initial_position.as_start()
            }
        },
    };
    let mut reader = context.reader(shard_id.clone(), start);
    info!(checkpoint = %lease.checkpoint, sub_sequence = lease.checkpoint_sub, retrieval = context.retrieval.name(), "shard consumer started");
    let mut last_checkpointed = applied.clone();
    let mut last_checkpoint_at = Instant::now();
    let mut lag_millis: Option<u64> = None;
    let mut failures: u32 = 0;
    let mut last_lag_sample: Option<Instant> = None;
    let mut since_checkpoint: u64 = 0;
    let end = loop {
        if held.lost.is_cancelled() {
            break ConsumerEnd::LeaseLost;
        }
        if shutdown.is_cancelled() {
            break ConsumerEnd::ShutDown;
        }
        if failures > 0 && wait(backoff(failures), &held.lost, &shutdown).await {
            continue;
        }
        // Whichever retrieval feeds it, a page is applied before the next
        // is asked for; a lost lease or a stop interrupts the wait.
        let page = tokio::select! {
            _ = held.lost.cancelled() => continue,
            _ = shutdown.cancelled() => continue,
            page = reader.next_page() => page,
        };
        let page = match page {
            Ok(page) => page,
            Err(e) => {
                failures += 1;
                log_failure(e.retry, failures, e.what, &e.detail);
                continue;
            }
        };
        failures = 0;
        lag_millis = page
            .millis_behind_latest
            .and_then(|m| u64::try_from(m).ok());
        if let Some(lag) = lag_millis
            && last_lag_sample.is_none_or(|at| at.elapsed() >= context.lag_sample_every)
        {
            telemetry::lag(shard_id.as_str(), lag);
            last_lag_sample = Some(Instant::now());
        }
        let mut records = Vec::with_capacity(page.records.len());
        for raw in page.records {
            let sequence = raw.sequence_number.clone();
            match Record::from_kinesis(stream_name.clone(), shard_id.clone(), raw) {
                Ok(record) => records.push(record),
                // Kinesis never sends one; if it did, it is skipped once,
                // loudly, like any record that cannot be counted.
                Err(e) => {
                    warn!(sequence_number = %sequence, reason = "not_a_kinesis_record", "skipped a record that cannot be counted: {e}")
                }
            }
        }
        if !records.is_empty() {
            let mut figures = BatchFigures {
                kinesis_records: records.len() as u64,
                bytes: records.iter().map(|r| r.data.len() as u64).sum(),
                ..BatchFigures::default()
            };
            let plain = records.iter().filter(|r| !is_aggregated(&r.data)).count();
            let (users, corrupt) = deaggregate_batch(records);
            figures.deaggregated = users.len().saturating_sub(plain) as u64;
            corrupt.iter().for_each(BadRecord::report);
            // Drop what was applied before (a restart at a checkpoint
            // inside an aggregate re-reads that aggregate).
            let batch: Vec<Record> = match &applied {
                Some(done) => users.into_iter().filter(|r| r.position > *done).collect(),
                None => users,
            };
            figures.user_records = (batch.len() + corrupt.len()) as u64;
            if !batch.is_empty() {
                let started = Instant::now();
                match apply(&context, &batch, &held.lost, &shutdown).await {
                    Some((position, report)) => {
                        reader.applied(&position);
                        applied = Some(position);
                        figures.sink_writes = report.writes as u64;
                        figures.sink_recounts = report.recounted as u64;
                    }
                    // Lost or shut down before the batch was applied.
                    None => continue,
                }
                figures.elapsed = started.elapsed();
            }
            since_checkpoint += figures.user_records;
            telemetry::batch_processed(shard_id.as_str(), &figures);
        }
        if let Some(children) = page.shard_end {
            // The shard is closed and read to its end.
            break shard_end(&context, &held, &lease, children).await;
        }
        if last_checkpoint_at.elapsed() >= context.checkpoint_interval
            && applied != last_checkpointed
            && let Some(position) = &applied
        {
            match checkpoint(&context, &held, position, lag_millis).await {
                Ok(()) => {
                    info!(
                        sequence = %position.sequence,
                        sub_sequence = position.sub_sequence,
                        millis_behind_latest = lag_millis,
                        records = since_checkpoint,
                        "checkpointed"
                    );
                    since_checkpoint = 0;
                    last_checkpointed = applied.clone();
                    last_checkpoint_at = Instant::now();
                }
                Err(LeaseError::Lost { .. }) => break ConsumerEnd::LeaseLost,
                Err(e) => warn!(error = %e, "checkpoint failed; will try again"),
            }
        }
    };
    if end == ConsumerEnd::ShutDown
        && applied != last_checkpointed
        && let Some(position) = &applied
    {
        match checkpoint(&context, &held, position, lag_millis).await {
            Ok(()) => {
                info!(sequence = %position.sequence, sub_sequence = position.sub_sequence, "checkpointed at shutdown")
            }
            Err(e) => warn!(error = %e, "checkpoint at shutdown failed"),
        }
    }
    if end == ConsumerEnd::LeaseLost {
        warn!("lease lost: stopped without a checkpoint");
    }
    end
}

impl InitialPosition {
    fn as_start(&self) -> Start {
        match self {
            InitialPosition::TrimHorizon => Start::Sentinel(ShardIteratorType::TrimHorizon),
            InitialPosition::Latest => Start::Sentinel(ShardIteratorType::Latest),
            InitialPosition::AtTimestamp(at) => Start::Timestamp(*at),
        }
    }
}

async fn checkpoint(
    context: &ConsumerContext,
    held: &HeldLease,
    position: &Position,
    lag_millis: Option<u64>,
) -> Result<(), LeaseError> {
    held.checkpoint(
        &context.table,
        position.sequence.as_str(),
        position.sub_sequence,
        lag_millis,
    )
    .await
}

/// Applies a batch, retrying what can change. Returns the last position
/// applied and what the sink did, or `None` if the lease was lost or the
/// worker stops first.
async fn apply(
    context: &ConsumerContext,
    batch: &[Record],
    lost: &CancellationToken,
    shutdown: &CancellationToken,
) -> Option<(Position, ApplyReport)> {
    let mut failures = 0;
    loop {
        match context.sink.apply(batch).await {
            Ok((report, counts)) => {
                counts.bad.iter().for_each(BadRecord::report);
                let last = batch.last().map(|r| r.position.clone());
                debug!(
                    records = batch.len(),
                    words = report.words,
                    writes = report.writes,
                    recounted = report.recounted,
                    first_sequence = %batch.first().map(|r| r.position.sequence.to_string()).unwrap_or_default(),
                    last_sequence = %last.as_ref().map(|p| p.sequence.to_string()).unwrap_or_default(),
                    "batch applied"
                );
                return last.map(|position| (position, report));
            }
            Err(error) => {
                failures += 1;
                telemetry::sink_failed(batch.first().map_or("", |r| r.shard_id.as_str()));
                // A refusal (missing table) may be fixed by an operator:
                // the shard waits, never skips the batch.
                warn!(error = %error, failures, retriable = error.is_retriable(), "batch not applied; retrying");
                // A lost lease stops at once; on shutdown the batch is
                // given up (nothing was checkpointed past it).
                if lost.is_cancelled()
                    || shutdown.is_cancelled()
                    || wait(backoff(failures), lost, shutdown).await
                {
                    return None;
                }
            }
        }
    }
}

async fn shard_end(
    context: &ConsumerContext,
    held: &HeldLease,
    lease: &Lease,
    children: Vec<aws_sdk_kinesis::types::ChildShard>,
) -> ConsumerEnd {
    for child in &children {
        let child_lease = Lease::new_shard(
            &child.shard_id,
            child.parent_shards.clone(),
            child.hash_key_range.as_ref(),
            context.stream.name(),
            lease::TRIM_HORIZON,
        );
        if let Err(e) = context.table.create(&child_lease).await {
            warn!(child = %child.shard_id, error = %e, "could not create the child's lease; shard sync will");
        }
    }
    let names: Vec<String> = children.iter().map(|c| c.shard_id.clone()).collect();
    if let Err(e) = context.table.set_children(&lease.key, &names).await {
        warn!(error = %e, "could not record the children");
    }
    match held
        .checkpoint(&context.table, lease::SHARD_END, 0, Some(0))
        .await
    {
        Ok(()) => {
            info!(children = ?names, "shard ended: checkpointed SHARD_END");
            ConsumerEnd::ShardEnded
        }
        Err(LeaseError::Lost { .. }) => ConsumerEnd::LeaseLost,
        Err(e) => {
            warn!(error = %e, "could not checkpoint SHARD_END; the next owner will read the end again");
            ConsumerEnd::ShutDown
        }
    }
}

fn log_failure(retry: Retry, failures: u32, what: &str, detail: &str) {
    if failures == 1 || failures.is_multiple_of(10) {
        match retry {
            Retry::Transient => warn!(failures, detail, "{what}; backing off"),
            Retry::Permanent => {
                tracing::error!(failures, detail, "{what}; backing off (this needs a fix)")
            }
        }
    }
}

/// Full jitter up to an exponential bound.
fn backoff(failures: u32) -> Duration {
    let bound = BACKOFF_FIRST
        .saturating_mul(1u32 << failures.min(8))
        .min(BACKOFF_MAX);
    bound.mul_f64(0.5 + fastrand::f64() / 2.0)
}

/// Sleeps; returns true if interrupted by a lost lease or shutdown.
async fn wait(duration: Duration, lost: &CancellationToken, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = lost.cancelled() => true,
        _ = shutdown.cancelled() => true,
        _ = tokio::time::sleep(duration) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        for failures in 1..20 {
            let bound = BACKOFF_FIRST
                .saturating_mul(1 << failures.min(8))
                .min(BACKOFF_MAX);
            for _ in 0..50 {
                let pause = backoff(failures);
                assert!(
                    pause >= bound / 2 && pause <= bound,
                    "{failures}: {pause:?} vs {bound:?}"
                );
            }
        }
        assert!(backoff(30) <= BACKOFF_MAX);
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_ends_at_once_when_the_lease_is_lost() {
        let (lost, shutdown) = (CancellationToken::new(), CancellationToken::new());
        let start = Instant::now();
        let waiting = tokio::spawn({
            let (lost, shutdown) = (lost.clone(), shutdown.clone());
            async move { wait(Duration::from_secs(60), &lost, &shutdown).await }
        });
        tokio::time::advance(Duration::from_secs(1)).await;
        lost.cancel();
        assert!(waiting.await.expect("task"), "interrupted");
        assert!(start.elapsed() < Duration::from_secs(2));
    }
}
