//! Enhanced fan-out (EFO): the registered stream consumer, and one shard's
//! SubscribeToShard reader.
//!
//! A subscription is one HTTP response that Kinesis keeps open for up to 5
//! minutes, pushing a `SubscribeToShardEvent` (records, the continuation
//! sequence number, MillisBehindLatest, and at a shard's end its children)
//! as records arrive, and an empty one about every 5 s when none do. When
//! it ends, or the connection drops, the reader subscribes again
//! `AFTER_SEQUENCE_NUMBER` the last continuation: the consumer applies each
//! event before it asks for the next, so nothing between is lost, and the
//! counts sink's marks make anything read twice count once.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_kinesis::primitives::event_stream::EventReceiver;
use aws_sdk_kinesis::types::error::SubscribeToShardEventStreamError;
use aws_sdk_kinesis::types::{
    ConsumerStatus, ShardIteratorType, StartingPosition, SubscribeToShardEvent,
    SubscribeToShardEventStream,
};
use tokio::time::Instant;
use tracing::{debug, info};

use super::StreamRef;
use super::retrieval::{Page, ReadError, Start};
use crate::aws::{Retry, describe_error};
use crate::record::ShardId;

/// Kinesis allows one SubscribeToShard call a second per consumer and
/// shard (more are refused with `LimitExceededException`).
const SUBSCRIBE_INTERVAL: Duration = Duration::from_secs(1);
/// Kinesis sends an event at least every ~5 s, records or not; a
/// subscription silent for this long is taken for dead and replaced.
const EVENT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a new consumer may stay CREATING before the worker gives up.
const ACTIVE_TIMEOUT: Duration = Duration::from_secs(120);

/// Why the stream consumer could not be registered or found.
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error(
        "could not register stream consumer \"{consumer}\" on stream \"{stream}\": {detail} \
         (EFO needs kinesis:RegisterStreamConsumer and kinesis:DescribeStreamConsumer; \
         a stream takes at most 20 consumers)"
    )]
    Register {
        consumer: String,
        stream: String,
        detail: String,
    },
    #[error(
        "stream consumer \"{consumer}\" on stream \"{stream}\" is still {status} after {waited:?}: \
         try again later, or check it with `aws kinesis describe-stream-consumer`"
    )]
    NotActive {
        consumer: String,
        stream: String,
        status: String,
        waited: Duration,
    },
    #[error("could not deregister stream consumer \"{consumer}\" on stream \"{stream}\": {detail}")]
    Deregister {
        consumer: String,
        stream: String,
        detail: String,
    },
}

/// The stream's ARN (SubscribeToShard and the consumer calls take ARNs).
///
/// # Errors
/// The failed call, described.
pub async fn stream_arn(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &StreamRef,
) -> Result<String, String> {
    if let StreamRef::Arn { arn, .. } = stream {
        return Ok(arn.clone());
    }
    let summary = kinesis
        .describe_stream_summary()
        .stream_name(stream.name())
        .send()
        .await
        .map_err(|e| describe_error(&e))?;
    summary
        .stream_description_summary
        .map(|s| s.stream_arn)
        .ok_or_else(|| "DescribeStreamSummary returned no stream".to_string())
}

/// Registers the stream consumer `name` unless it exists, waits until it
/// is ACTIVE, and returns its ARN. Workers of one application all call
/// this at start; whoever registers first wins and the others find it.
///
/// # Errors
/// [`ConsumerError`] when it cannot be registered or does not become ACTIVE.
pub async fn ensure_consumer(
    kinesis: &aws_sdk_kinesis::Client,
    stream_arn: &str,
    stream_name: &str,
    name: &str,
) -> Result<String, ConsumerError> {
    let register_error = |detail: String| ConsumerError::Register {
        consumer: name.to_string(),
        stream: stream_name.to_string(),
        detail,
    };
    let started = Instant::now();
    let mut failures = 0u32;
    loop {
        let described = kinesis
            .describe_stream_consumer()
            .stream_arn(stream_arn)
            .consumer_name(name)
            .send()
            .await;
        match described {
            Ok(out) => {
                let Some(consumer) = out.consumer_description else {
                    return Err(register_error(
                        "DescribeStreamConsumer returned nothing".into(),
                    ));
                };
                match consumer.consumer_status {
                    ConsumerStatus::Active => {
                        info!(consumer = %name, consumer_arn = %consumer.consumer_arn, "stream consumer active");
                        return Ok(consumer.consumer_arn);
                    }
                    status => {
                        if started.elapsed() >= ACTIVE_TIMEOUT {
                            return Err(ConsumerError::NotActive {
                                consumer: name.to_string(),
                                stream: stream_name.to_string(),
                                status: status.as_str().to_string(),
                                waited: ACTIVE_TIMEOUT,
                            });
                        }
                        // CREATING: wait. DELETING (a retired consumer of
                        // the same name): wait until it is gone, then
                        // register anew.
                        debug!(consumer = %name, status = %status.as_str(), "waiting for the stream consumer");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                match kinesis
                    .register_stream_consumer()
                    .stream_arn(stream_arn)
                    .consumer_name(name)
                    .send()
                    .await
                {
                    Ok(_) => info!(consumer = %name, "registered the stream consumer"),
                    // A peer registered it first: describe it again.
                    Err(e)
                        if e.as_service_error()
                            .is_some_and(|s| s.is_resource_in_use_exception()) => {}
                    Err(e) => {
                        pause_or_give_up(&mut failures, crate::aws::retry_class(&e))
                            .await
                            .map_err(|()| register_error(describe_error(&e)))?;
                    }
                }
            }
            Err(e) => {
                pause_or_give_up(&mut failures, crate::aws::retry_class(&e))
                    .await
                    .map_err(|()| register_error(describe_error(&e)))?;
            }
        }
    }
}

/// After a failed consumer call: a short, growing pause if it may pass
/// (at most 8 times), else `Err` to give up.
async fn pause_or_give_up(failures: &mut u32, retry: Retry) -> Result<(), ()> {
    if retry == Retry::Permanent || *failures >= 8 {
        return Err(());
    }
    *failures += 1;
    tokio::time::sleep(Duration::from_millis(250) * *failures).await;
    Ok(())
}

/// Deregisters the stream consumer `name` (registered consumers are
/// billed by the hour). Returns false if there was none.
///
/// # Errors
/// [`ConsumerError::Deregister`] when the call fails.
pub async fn deregister_consumer(
    kinesis: &aws_sdk_kinesis::Client,
    stream_arn: &str,
    stream_name: &str,
    name: &str,
) -> Result<bool, ConsumerError> {
    match kinesis
        .deregister_stream_consumer()
        .stream_arn(stream_arn)
        .consumer_name(name)
        .send()
        .await
    {
        Ok(_) => Ok(true),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            Ok(false)
        }
        Err(e) => Err(ConsumerError::Deregister {
            consumer: name.to_string(),
            stream: stream_name.to_string(),
            detail: describe_error(&e),
        }),
    }
}

type Events = EventReceiver<SubscribeToShardEventStream, SubscribeToShardEventStreamError>;

/// One shard's SubscribeToShard reader.
pub struct FanOut {
    kinesis: aws_sdk_kinesis::Client,
    consumer_arn: Arc<str>,
    shard_id: ShardId,
    /// Where the first subscription starts (the checkpoint or the initial
    /// position); every later one starts after `continuation`.
    start: Start,
    /// The last event's continuation: where the next subscription starts.
    continuation: Option<String>,
    events: Option<Events>,
    last_subscribe: Option<Instant>,
}

impl std::fmt::Debug for FanOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FanOut")
            .field("shard_id", &self.shard_id)
            .field("start", &self.start)
            .field("continuation", &self.continuation)
            .field("subscribed", &self.events.is_some())
            .finish()
    }
}

impl FanOut {
    pub fn new(
        kinesis: aws_sdk_kinesis::Client,
        consumer_arn: Arc<str>,
        shard_id: ShardId,
        start: Start,
    ) -> Self {
        Self {
            kinesis,
            consumer_arn,
            shard_id,
            start,
            continuation: None,
            events: None,
            last_subscribe: None,
        }
    }

    fn starting_position(&self) -> Result<StartingPosition, ReadError> {
        let builder = StartingPosition::builder();
        let builder = match (&self.continuation, &self.start) {
            (Some(continuation), _) => builder
                .r#type(ShardIteratorType::AfterSequenceNumber)
                .sequence_number(continuation),
            (None, Start::At(position)) => builder
                .r#type(ShardIteratorType::AtSequenceNumber)
                .sequence_number(position.sequence.as_str()),
            (None, Start::Sentinel(kind)) => builder.r#type(kind.clone()),
            (None, Start::Timestamp(at)) => builder
                .r#type(ShardIteratorType::AtTimestamp)
                .timestamp(*at),
        };
        builder.build().map_err(|e| ReadError {
            retry: Retry::Permanent,
            what: "SubscribeToShard not sent",
            detail: e.to_string(),
        })
    }

    async fn subscribe(&mut self) -> Result<Events, ReadError> {
        if let Some(last) = self.last_subscribe {
            tokio::time::sleep_until(last + SUBSCRIBE_INTERVAL).await;
        }
        self.last_subscribe = Some(Instant::now());
        let request = self
            .kinesis
            .subscribe_to_shard()
            .consumer_arn(self.consumer_arn.as_ref())
            .shard_id(self.shard_id.as_str())
            .starting_position(self.starting_position()?)
            .send();
        // The SDK's send waits for the first event (or Kinesis's
        // `initial-response`), so it is bounded like a silent stream.
        match tokio::time::timeout(EVENT_TIMEOUT, request).await {
            Err(_) => Err(ReadError {
                retry: Retry::Transient,
                what: "SubscribeToShard failed",
                detail: format!("no answer in {EVENT_TIMEOUT:?}"),
            }),
            // Including `ResourceInUseException` (a previous owner's
            // subscription still open, for up to 5 s): transient.
            Ok(Err(error)) => Err(ReadError::of("SubscribeToShard failed", &error)),
            Ok(Ok(out)) => {
                debug!(position = ?self.continuation.as_ref().map_or_else(|| format!("{:?}", self.start), |c| format!("after {c}")), "subscribed");
                Ok(out.event_stream)
            }
        }
    }

    pub(super) async fn next_page(&mut self) -> Result<Page, ReadError> {
        loop {
            let events = match &mut self.events {
                Some(events) => events,
                None => {
                    let events = self.subscribe().await?;
                    self.events.insert(events)
                }
            };
            let event = match tokio::time::timeout(EVENT_TIMEOUT, events.recv()).await {
                Ok(Ok(Some(event))) => event,
                Ok(Ok(None)) => {
                    // Kinesis ends every subscription after 5 minutes.
                    self.events = None;
                    info!("subscription ended; subscribing again from the continuation");
                    continue;
                }
                Ok(Err(error)) => {
                    self.events = None;
                    return Err(ReadError::of(
                        "SubscribeToShard event stream failed",
                        &error,
                    ));
                }
                Err(_) => {
                    self.events = None;
                    return Err(ReadError {
                        retry: Retry::Transient,
                        what: "SubscribeToShard went silent",
                        detail: format!("no event in {EVENT_TIMEOUT:?}; subscribing again"),
                    });
                }
            };
            let SubscribeToShardEventStream::SubscribeToShardEvent(event) = event else {
                // An event type this SDK does not know: nothing to apply.
                continue;
            };
            let (page, continuation) = page_of(event);
            match continuation {
                Some(continuation) => self.continuation = Some(continuation),
                // The shard's end: nothing follows on this subscription.
                None => self.events = None,
            }
            return Ok(page);
        }
    }
}

/// An event as a page, with the continuation to subscribe from next
/// (`None` at the shard's end). The last event of a closed shard has no
/// continuation and lists the children (KCL's FanOutRecordsPublisher reads
/// it so); either sign is taken as the end.
fn page_of(event: SubscribeToShardEvent) -> (Page, Option<String>) {
    let children = event.child_shards.unwrap_or_default();
    let ended = event.continuation_sequence_number.is_empty() || !children.is_empty();
    let page = Page {
        records: event.records,
        millis_behind_latest: Some(event.millis_behind_latest),
        shard_end: ended.then_some(children),
    };
    (page, (!ended).then_some(event.continuation_sequence_number))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_kinesis::types::{ChildShard, HashKeyRange};

    fn event(continuation: &str, children: Option<Vec<ChildShard>>) -> SubscribeToShardEvent {
        SubscribeToShardEvent::builder()
            .continuation_sequence_number(continuation)
            .millis_behind_latest(0)
            .set_records(Some(Vec::new()))
            .set_child_shards(children)
            .build()
            .expect("event")
    }

    fn child(id: &str) -> ChildShard {
        ChildShard::builder()
            .shard_id(id)
            .parent_shards("shardId-000000000000")
            .hash_key_range(
                HashKeyRange::builder()
                    .starting_hash_key("0")
                    .ending_hash_key("1")
                    .build()
                    .expect("range"),
            )
            .build()
            .expect("child")
    }

    #[test]
    fn an_event_with_a_continuation_carries_on_from_it() {
        let (page, next) = page_of(event("49000000000000000000000000000001", None));
        assert_eq!(next.as_deref(), Some("49000000000000000000000000000001"));
        assert!(page.shard_end.is_none());
        assert_eq!(page.millis_behind_latest, Some(0));
    }

    #[test]
    fn the_last_event_of_a_closed_shard_ends_it_with_its_children() {
        // As Kinesis sends it: no continuation, the children listed.
        let (page, next) = page_of(event("", Some(vec![child("a"), child("b")])));
        assert_eq!(next, None);
        let ids: Vec<String> = page
            .shard_end
            .expect("end")
            .into_iter()
            .map(|c| c.shard_id)
            .collect();
        assert_eq!(ids, ["a", "b"]);
        // Children listed beside a continuation still end the shard.
        let (page, next) = page_of(event("4900", Some(vec![child("a")])));
        assert!(page.shard_end.is_some() && next.is_none());
    }
}
