//! How a shard consumer gets its records: one interface, two retrievals.
//!
//! - [`Polling`]: GetShardIterator + GetRecords, paced to Kinesis's five
//!   reads a second per shard and, at the tip, to `--idle-time` (KCL's
//!   polling). The stream's 2 MB/s per shard is shared by every polling
//!   application.
//! - [`FanOut`](super::fanout::FanOut): enhanced fan-out, SubscribeToShard
//!   pushing records over one long-lived response per shard, with 2 MB/s of
//!   its own per shard and ~70 ms propagation.
//!
//! A consumer only sees [`Page`]s: records, the lag, and at the end of a
//! closed shard its children. It applies each page before asking for the
//! next, so a reader may resume after the last page it returned; after a
//! lost connection or an expired iterator a reader resumes itself, from the
//! position it was last told was applied ([`ShardReader::applied`]).

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_kinesis::types::{ChildShard, ShardIteratorType};
use tokio::time::Instant;
use tracing::info;

use super::StreamRef;
use super::fanout::FanOut;
use crate::aws::{Retry, describe_error, retry_class};
use crate::record::{Position, ShardId};

/// Kinesis allows 5 GetRecords calls a second per shard.
pub const MIN_CALL_INTERVAL: Duration = Duration::from_millis(200);

/// Which retrieval a worker uses (`--retrieval`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retrieval {
    Polling,
    /// Enhanced fan-out through the registered stream consumer.
    FanOut {
        consumer_arn: Arc<str>,
    },
}

impl Retrieval {
    /// The name `status` shows and the lease table records.
    pub fn name(&self) -> &'static str {
        match self {
            Retrieval::Polling => "polling",
            Retrieval::FanOut { .. } => "efo",
        }
    }
}

/// Where a shard's reading starts: a sentinel, a timestamp, or the last
/// applied position (read again from its sequence number: a checkpoint
/// inside a KPL aggregate re-reads that aggregate, and the consumer drops
/// what was applied).
#[derive(Debug, Clone)]
pub enum Start {
    Sentinel(ShardIteratorType),
    Timestamp(aws_sdk_kinesis::primitives::DateTime),
    At(Position),
}

/// What a reader returns: one GetRecords page or one SubscribeToShard event.
#[derive(Debug, Default)]
pub struct Page {
    pub records: Vec<aws_sdk_kinesis::types::Record>,
    pub millis_behind_latest: Option<i64>,
    /// `Some` when the shard is closed and this page is its last: the
    /// children (empty if none are listed).
    pub shard_end: Option<Vec<ChildShard>>,
}

/// A read that failed; the consumer backs off and asks again.
#[derive(Debug)]
pub struct ReadError {
    pub retry: Retry,
    pub what: &'static str,
    pub detail: String,
}

impl ReadError {
    pub fn of<E, R>(
        what: &'static str,
        error: &aws_smithy_runtime_api::client::result::SdkError<E, R>,
    ) -> Self
    where
        E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + 'static,
        R: crate::aws::HttpStatus + std::fmt::Debug + 'static,
    {
        Self {
            retry: retry_class(error),
            what,
            detail: describe_error(error),
        }
    }
}

/// One shard's reader, whichever retrieval it uses.
#[derive(Debug)]
pub enum ShardReader {
    Polling(Polling),
    FanOut(FanOut),
}

impl ShardReader {
    /// The next page. Cancel-safe in the way the consumer needs: dropping
    /// the future loses at most an unapplied page, which is read again.
    ///
    /// # Errors
    /// [`ReadError`] for a failed call; the reader resumes on the next call.
    pub async fn next_page(&mut self) -> Result<Page, ReadError> {
        match self {
            ShardReader::Polling(reader) => reader.next_page().await,
            ShardReader::FanOut(reader) => reader.next_page().await,
        }
    }

    /// Records that `position` is applied: where polling resumes after an
    /// expired iterator. (Fan-out resumes after the last event's
    /// continuation, which already covers every applied record.)
    pub fn applied(&mut self, position: &Position) {
        if let ShardReader::Polling(reader) = self {
            reader.start = Start::At(position.clone());
        }
    }
}

/// GetRecords polling of one shard.
#[derive(Debug)]
pub struct Polling {
    kinesis: aws_sdk_kinesis::Client,
    stream: StreamRef,
    shard_id: ShardId,
    max_records: i32,
    idle_time: Duration,
    start: Start,
    iterator: Option<String>,
    last_call: Option<Instant>,
    /// The last page was at the tip: the next read waits the idle time.
    caught_up: bool,
}

impl Polling {
    pub fn new(
        kinesis: aws_sdk_kinesis::Client,
        stream: StreamRef,
        shard_id: ShardId,
        max_records: i32,
        idle_time: Duration,
        start: Start,
    ) -> Self {
        Self {
            kinesis,
            stream,
            shard_id,
            max_records,
            idle_time,
            start,
            iterator: None,
            last_call: None,
            caught_up: false,
        }
    }

    async fn next_page(&mut self) -> Result<Page, ReadError> {
        loop {
            // At the tip of the shard the next read waits the idle time, as
            // KCL's polling does: one read (and one batch of writes) a
            // second per shard at a steady rate, instead of five. Behind
            // the tip, reads follow each other at Kinesis's rate.
            let pause = if self.caught_up {
                self.idle_time
            } else {
                MIN_CALL_INTERVAL
            };
            if let Some(last) = self.last_call {
                tokio::time::sleep_until(last + pause).await;
            }
            let iterator = match self.iterator.take() {
                Some(it) => it,
                None => self.shard_iterator().await?,
            };
            self.last_call = Some(Instant::now());
            let page = match self
                .kinesis
                .get_records()
                .shard_iterator(&iterator)
                .limit(self.max_records)
                .send()
                .await
            {
                Ok(page) => page,
                Err(error) => {
                    let expired = error
                        .as_service_error()
                        .is_some_and(|e| e.is_expired_iterator_exception());
                    if expired {
                        // Iterators live 5 minutes: a shard that waited on
                        // a long sink outage, say. Re-acquired from the
                        // last applied position, at once.
                        info!(
                            "shard iterator expired; re-acquiring from the last applied position"
                        );
                        continue;
                    }
                    self.iterator = Some(iterator);
                    return Err(ReadError::of("GetRecords failed", &error));
                }
            };
            self.caught_up = page.millis_behind_latest == Some(0);
            self.iterator = page.next_shard_iterator;
            return Ok(Page {
                records: page.records,
                millis_behind_latest: page.millis_behind_latest,
                // No next iterator: the shard is closed and read to its end.
                shard_end: self
                    .iterator
                    .is_none()
                    .then(|| page.child_shards.unwrap_or_default()),
            });
        }
    }

    async fn shard_iterator(&self) -> Result<String, ReadError> {
        let request = self.stream.apply_get_iterator(
            self.kinesis
                .get_shard_iterator()
                .shard_id(self.shard_id.as_str()),
        );
        let request = match &self.start {
            Start::Sentinel(kind) => request.shard_iterator_type(kind.clone()),
            Start::Timestamp(at) => request
                .shard_iterator_type(ShardIteratorType::AtTimestamp)
                .timestamp(*at),
            Start::At(position) => request
                .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
                .starting_sequence_number(position.sequence.as_str()),
        };
        match request.send().await {
            Ok(out) => out.shard_iterator.ok_or(ReadError {
                retry: Retry::Transient,
                what: "GetShardIterator failed",
                detail: "no iterator returned".to_string(),
            }),
            Err(error) => Err(ReadError::of("GetShardIterator failed", &error)),
        }
    }
}
