//! KPL aggregates in the local Kinesis stream, counted by the Lambda
//! handler exactly once: plain and aggregated records side by side, a
//! corrupt aggregate that never blocks the shard, a redelivered event, and a
//! restart whose mark sits inside an aggregate.

mod common;

use std::num::NonZeroUsize;

use aws_lambda_events::event::kinesis::KinesisEvent;
use common::{Put, expected_counts, lambda_event, local_clients, put_and_read_back, unique_name};
use shardwise::aggregation::{self, UserRecord};
use shardwise::lambda::Handler;
use shardwise::record::Record;
use shardwise::sink::{self, CountsSink};

fn user_texts() -> Vec<Vec<u8>> {
    (0..1500u64)
        .map(|i| format!("{} {} {} kpl", i % 10, (i * 7) % 10, (i * 3) % 10).into_bytes())
        .collect()
}

async fn stream_with_aggregates() -> (
    common::Fixture,
    Vec<(String, Vec<aws_sdk_kinesis::types::Record>)>,
) {
    let clients = local_clients().await;
    let stream = unique_name("kpl");
    let ready = shardwise::setup::ensure_stream(&clients.kinesis, &stream, 1)
        .await
        .expect("stream");
    let users = user_texts()
        .into_iter()
        .enumerate()
        .map(|(i, data)| UserRecord {
            partition_key: format!("user-{}", i % 20),
            explicit_hash_key: None,
            data,
        });
    // Small aggregates, so that there are several; one plain record in
    // between, and a corrupt aggregate (digest cut short) among them.
    let mut puts: Vec<Put> = aggregation::aggregate_all(users, 4 * 1024)
        .into_iter()
        .map(|a| Put {
            partition_key: a.partition_key,
            explicit_hash_key: a.explicit_hash_key,
            data: a.data,
        })
        .collect();
    assert!(puts.len() >= 4, "{} aggregates", puts.len());
    puts.insert(
        2,
        Put {
            partition_key: "plain".into(),
            explicit_hash_key: None,
            data: b"plain record".to_vec(),
        },
    );
    let mut corrupt = puts[3].data.clone();
    corrupt.truncate(corrupt.len() - 5);
    puts.insert(
        4,
        Put {
            partition_key: "bad".into(),
            explicit_hash_key: None,
            data: corrupt,
        },
    );
    let read = put_and_read_back(&clients.kinesis, &stream, &puts).await;
    (
        common::Fixture {
            clients,
            stream_arn: ready.arn,
        },
        read,
    )
}

fn expected() -> std::collections::BTreeMap<String, u64> {
    let mut texts = user_texts();
    texts.push(b"plain record".to_vec());
    expected_counts(texts.iter().map(Vec::as_slice))
}

async fn counts_table(clients: &shardwise::aws::Clients) -> (String, Handler) {
    let table = unique_name("kpl-counts");
    sink::create_table_if_missing(&clients.dynamodb, &table)
        .await
        .expect("table");
    let sink = CountsSink::new(
        clients.dynamodb.clone(),
        &table,
        NonZeroUsize::new(16).expect("16"),
    );
    (table, Handler::new(sink))
}

async fn totals(
    clients: &shardwise::aws::Clients,
    table: &str,
) -> std::collections::BTreeMap<String, u64> {
    sink::read_totals(&clients.dynamodb, table)
        .await
        .expect("totals")
        .into_iter()
        .collect()
}

#[tokio::test]
async fn aggregated_records_are_counted_once_even_when_redelivered() {
    let (fx, read) = stream_with_aggregates().await;
    let (table, handler) = counts_table(&fx.clients).await;
    let (shard, records) = &read[0];
    let event: KinesisEvent =
        serde_json::from_value(lambda_event(&fx.stream_arn, shard, records)).expect("event");
    for round in ["first", "redelivered"] {
        let response = handler.handle(event.clone()).await.expect("handled");
        assert!(
            response.batch_item_failures.is_empty(),
            "{round}: the corrupt aggregate is skipped, not retried"
        );
        assert_eq!(totals(&fx.clients, &table).await, expected(), "{round}");
    }
}

#[tokio::test]
async fn a_mark_inside_an_aggregate_resumes_after_the_last_applied_user_record() {
    let (fx, read) = stream_with_aggregates().await;
    let (table, handler) = counts_table(&fx.clients).await;
    let (shard, records) = &read[0];
    let event: KinesisEvent =
        serde_json::from_value(lambda_event(&fx.stream_arn, shard, records)).expect("event");

    // A consumer stopped part-way through the first aggregate: its first
    // 37 user records were applied. Lambda then delivers the whole batch,
    // aggregate included (all its user records share one sequence number).
    let kinesis_records: Vec<Record> = event
        .records
        .iter()
        .cloned()
        .map(|r| Record::from_lambda(r).expect("record"))
        .collect();
    let (users, _) = aggregation::deaggregate_batch(kinesis_records);
    assert_eq!(users[36].position.sub_sequence, 36);
    let partial = CountsSink::new(
        fx.clients.dynamodb.clone(),
        &table,
        NonZeroUsize::new(8).expect("8"),
    );
    partial.apply(&users[..37]).await.expect("partial apply");

    let response = handler.handle(event).await.expect("handled");
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(totals(&fx.clients, &table).await, expected());
}
