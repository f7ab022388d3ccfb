//! The Lambda handler, called with events in the exact JSON shape Lambda
//! sends, against the local DynamoDB: counts are exact however the batches
//! are re-delivered, bad records never block, and an unavailable table
//! turns into `batchItemFailures` that a later retry makes good.

mod common;

use std::collections::BTreeMap;
use std::num::NonZeroUsize;

use aws_lambda_events::event::kinesis::KinesisEvent;
use base64::Engine;
use common::{local_clients, unique_name};
use shardwise::lambda::Handler;
use shardwise::sink::{self, CountsSink};

/// One record as the test sends it: shard, record index, data.
#[derive(Clone)]
struct Sent {
    shard: usize,
    index: u64,
    data: Vec<u8>,
}

/// A real-length (56-digit) sequence number, increasing with `index`.
fn sequence(shard: usize, index: u64) -> String {
    format!("4956816737{shard:02}{index:044}")
}

/// The event Lambda would send for `records` of stream `stream`.
fn event(stream: &str, records: &[Sent]) -> KinesisEvent {
    let records: Vec<serde_json::Value> = records
        .iter()
        .map(|r| {
            let seq = sequence(r.shard, r.index);
            serde_json::json!({
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": format!("key-{}", r.index % 7),
                    "sequenceNumber": seq,
                    "data": base64::engine::general_purpose::STANDARD.encode(&r.data),
                    "approximateArrivalTimestamp": 1_764_000_000.125 + r.index as f64
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": format!("shardId-{:012}:{seq}", r.shard),
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/shardwise",
                "awsRegion": "us-east-1",
                "eventSourceARN": format!("arn:aws:kinesis:us-east-1:123456789012:stream/{stream}")
            })
        })
        .collect();
    let json = serde_json::json!({ "Records": records }).to_string();
    serde_json::from_str(&json).expect("a Kinesis event")
}

/// Records of the producer's kind (10 digits) with a few other words.
fn producer_records(shard: usize, range: std::ops::RangeInclusive<u64>) -> Vec<Sent> {
    range
        .map(|index| {
            let mut words: Vec<String> = (0..10)
                .map(|k| ((index * 7 + k * 3 + shard as u64) % 10).to_string())
                .collect();
            if index % 10 == 0 {
                words.push("Grüße,".to_string());
            }
            Sent {
                shard,
                index,
                data: words.join(" ").into_bytes(),
            }
        })
        .collect()
}

/// What an exact count of `records` gives, by an independent method.
fn expected(records: &[Sent]) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for record in records {
        if let Ok(text) = std::str::from_utf8(&record.data) {
            for word in text.split_whitespace() {
                *counts.entry(word.to_string()).or_insert(0) += 1;
            }
        }
    }
    counts
}

struct Fixture {
    handler: Handler,
    dynamodb: aws_sdk_dynamodb::Client,
    table: String,
    stream: String,
}

impl Fixture {
    async fn new() -> Self {
        let clients = local_clients().await;
        let table = unique_name("counts");
        sink::create_table_if_missing(&clients.dynamodb, &table)
            .await
            .expect("counts table");
        let sink = CountsSink::new(
            clients.dynamodb.clone(),
            &table,
            NonZeroUsize::new(16).expect("16"),
        );
        Self {
            handler: Handler::new(sink),
            dynamodb: clients.dynamodb,
            table,
            stream: unique_name("stream"),
        }
    }

    async fn deliver(&self, records: &[Sent]) -> Vec<String> {
        let response = self
            .handler
            .handle(event(&self.stream, records))
            .await
            .expect("the handler answers");
        response
            .batch_item_failures
            .into_iter()
            .map(|f| f.item_identifier.unwrap_or_default())
            .collect()
    }

    async fn totals(&self) -> BTreeMap<String, u64> {
        sink::read_totals(&self.dynamodb, &self.table)
            .await
            .expect("totals")
            .into_iter()
            .collect()
    }
}

#[tokio::test]
async fn counts_are_exact_and_a_redelivered_event_changes_nothing() {
    let fx = Fixture::new().await;
    let mut records = producer_records(0, 1..=120);
    records.extend(producer_records(1, 1..=80));
    assert_eq!(fx.deliver(&records).await, Vec::<String>::new());
    let want = expected(&records);
    assert_eq!(want.values().sum::<u64>(), 200 * 10 + 20);
    assert_eq!(fx.totals().await, want);

    assert_eq!(fx.deliver(&records).await, Vec::<String>::new());
    assert_eq!(fx.totals().await, want, "the same event twice counts once");
}

#[tokio::test]
async fn overlapping_batches_count_each_record_once() {
    let fx = Fixture::new().await;
    let all = producer_records(0, 1..=150);
    fx.deliver(&all[0..100]).await; // records 1–100
    fx.deliver(&all[49..150]).await; // records 50–150
    assert_eq!(fx.totals().await, expected(&all));
}

#[tokio::test]
async fn bisected_batches_delivered_in_order_count_each_record_once() {
    let fx = Fixture::new().await;
    let all = producer_records(3, 1..=100);
    // Lambda's BisectBatchOnFunctionError: after a failed attempt, the
    // halves come again, first then second, and then the rest of the shard.
    fx.deliver(&all[0..50]).await;
    assert_eq!(fx.totals().await, expected(&all[0..50]));
    fx.deliver(&all[0..100]).await;
    assert_eq!(
        fx.totals().await,
        expected(&all),
        "the whole batch after its first half"
    );
    fx.deliver(&all[50..100]).await;
    fx.deliver(&all[0..25]).await;
    assert_eq!(fx.totals().await, expected(&all));
}

/// A slow invocation racing its own retries: Lambda timed out on records
/// 51–200, and its UpdateItem calls land while the retry (51–200) and a
/// bisected half (51–125) run. Every recount is conditioned on the mark it
/// read, so the losers re-read, and each record still counts once.
#[tokio::test]
async fn an_invocation_racing_its_retries_counts_each_record_once() {
    let fx = Fixture::new().await;
    let all = producer_records(5, 1..=300);
    fx.deliver(&all[0..50]).await;
    for _ in 0..3 {
        let (a, b, c) = tokio::join!(
            fx.deliver(&all[50..200]),
            fx.deliver(&all[50..200]),
            fx.deliver(&all[50..125])
        );
        assert!(
            a.is_empty() && b.is_empty() && c.is_empty(),
            "{a:?} {b:?} {c:?}"
        );
        assert_eq!(fx.totals().await, expected(&all[0..200]));
    }
    fx.deliver(&all[125..300]).await;
    assert_eq!(fx.totals().await, expected(&all));
}

#[tokio::test]
async fn bad_records_are_skipped_and_never_reported() {
    let fx = Fixture::new().await;
    let mut records = producer_records(0, 1..=10);
    records.push(Sent {
        shard: 0,
        index: 11,
        data: b"caf\xe9 latte".to_vec(),
    });
    records.push(Sent {
        shard: 0,
        index: 12,
        data: Vec::new(),
    });
    records.push(Sent {
        shard: 0,
        index: 13,
        data: "after bad ones".as_bytes().to_vec(),
    });
    assert_eq!(
        fx.deliver(&records).await,
        Vec::<String>::new(),
        "nothing to retry"
    );
    let totals = fx.totals().await;
    assert_eq!(totals, expected(&records));
    assert_eq!(
        totals.get("after"),
        Some(&1),
        "the shard moved past the bad records"
    );
    assert_eq!(
        totals.get("latte"),
        None,
        "the invalid UTF-8 record is skipped whole"
    );
}

#[tokio::test]
async fn unreachable_table_reports_each_shard_from_its_lowest_sequence_then_retry_is_exact() {
    let fx = Fixture::new().await;
    // The same handler code, pointed at a port where nothing listens.
    let config = shardwise::aws::load_sdk_config().await;
    let closed = aws_sdk_dynamodb::config::Builder::from(&config)
        .endpoint_url("http://127.0.0.1:9")
        .build();
    let broken = Handler::new(CountsSink::new(
        aws_sdk_dynamodb::Client::from_conf(closed),
        &fx.table,
        NonZeroUsize::new(4).expect("4"),
    ));
    let mut records = producer_records(0, 5..=40);
    records.extend(producer_records(2, 9..=30));
    let response = broken
        .handle(event(&fx.stream, &records))
        .await
        .expect("an unavailable table is reported, not fatal");
    let mut failures: Vec<String> = response
        .batch_item_failures
        .into_iter()
        .map(|f| f.item_identifier.unwrap_or_default())
        .collect();
    failures.sort();
    assert_eq!(failures, vec![sequence(0, 5), sequence(2, 9)]);

    // Lambda retries from those sequence numbers: the whole event again.
    assert_eq!(fx.deliver(&records).await, Vec::<String>::new());
    assert_eq!(fx.totals().await, expected(&records));
}

#[tokio::test]
async fn a_missing_table_fails_the_invocation_with_a_short_error_type() {
    let clients = local_clients().await;
    let handler = Handler::new(CountsSink::new(
        clients.dynamodb,
        unique_name("no-such-table"),
        NonZeroUsize::new(4).expect("4"),
    ));
    let error = handler
        .handle(event("s", &producer_records(0, 1..=3)))
        .await
        .expect_err("a missing table cannot be retried away");
    let diagnostic = lambda_runtime::Diagnostic::from(error);
    assert_eq!(diagnostic.error_type, "SinkRejected");
    assert!(
        diagnostic.error_message.contains("no-such-table"),
        "{}",
        diagnostic.error_message
    );
}

#[tokio::test]
async fn the_published_example_event_is_counted() {
    // aws_lambda_events' fixture: two "Hello World" records of one shard.
    let fx = Fixture::new().await;
    let json = r#"{"Records":[
      {"kinesis":{"kinesisSchemaVersion":"1.0","partitionKey":"s1","sequenceNumber":"49568167373333333333333333333333333333333333333333333333","data":"SGVsbG8gV29ybGQ=","approximateArrivalTimestamp":1480641523.477},"eventSource":"aws:kinesis","eventVersion":"1.0","eventID":"shardId-000000000000:49568167373333333333333333333333333333333333333333333333","eventName":"aws:kinesis:record","invokeIdentityArn":"arn:aws:iam::123456789012:role/LambdaRole","awsRegion":"us-east-1","eventSourceARN":"arn:aws:kinesis:us-east-1:123456789012:stream/simple-stream"},
      {"kinesis":{"kinesisSchemaVersion":"1.0","partitionKey":"s1","sequenceNumber":"49568167373333333334444444444444444444444444444444444444","data":"SGVsbG8gV29ybGQ=","approximateArrivalTimestamp":1480841523.477},"eventSource":"aws:kinesis","eventVersion":"1.0","eventID":"shardId-000000000000:49568167373333333334444444444444444444444444444444444444","eventName":"aws:kinesis:record","invokeIdentityArn":"arn:aws:iam::123456789012:role/LambdaRole","awsRegion":"us-east-1","eventSourceARN":"arn:aws:kinesis:us-east-1:123456789012:stream/simple-stream"}]}"#;
    let event: KinesisEvent = serde_json::from_str(json).expect("event");
    let response = fx.handler.handle(event).await.expect("handled");
    assert!(response.batch_item_failures.is_empty());
    let totals = fx.totals().await;
    assert_eq!(totals.get("Hello"), Some(&2));
    assert_eq!(totals.get("World"), Some(&2));
}
