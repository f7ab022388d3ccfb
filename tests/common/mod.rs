//! Shared by the integration tests: names that never collide, and clients
//! built exactly as the binary builds them.
#![allow(dead_code)] // each test crate uses a different part of this module

use shardwise::aws::Clients;

pub mod emf;
pub mod fault_proxy;
pub mod private_aws;
pub mod worker_process;

/// A resource name unique to this test run, so tests never share state.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}-{}-{:08x}", std::process::id(), fastrand::u32(..))
}

/// The clients the binary would build from this environment. Refuses to
/// run without a local endpoint: these tests create and delete resources and
/// must never reach a real AWS account by accident.
pub async fn local_clients() -> Clients {
    let local = ["AWS_ENDPOINT_URL_KINESIS", "AWS_ENDPOINT_URL"]
        .iter()
        .any(|name| std::env::var_os(name).is_some());
    assert!(
        local,
        "no local AWS endpoint set: run the tests with scripts/test, \
         or `eval \"$(localstack/up)\"` first"
    );
    Clients::from_env().await.expect("AWS configuration")
}

/// Path of the project's checkout (for its scripts).
pub fn project_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A record to put: partition key, explicit hash key, data.
pub struct Put {
    pub partition_key: String,
    pub explicit_hash_key: Option<String>,
    pub data: Vec<u8>,
}

/// A new stream of `shards` shards and a new counts table, both named
/// after `prefix`: every test has its own.
pub async fn new_stream_and_counts(
    clients: &Clients,
    prefix: &str,
    shards: u32,
) -> (String, String) {
    let stream = unique_name(prefix);
    let counts = unique_name(&format!("{prefix}-counts"));
    shardwise::setup::ensure_stream(&clients.kinesis, &stream, shards)
        .await
        .expect("stream");
    shardwise::sink::create_table_if_missing(&clients.dynamodb, &counts)
        .await
        .expect("counts table");
    (stream, counts)
}

/// One `Put` per text, each with its own partition key `<prefix>-<n>`.
pub fn puts_of(texts: &[Vec<u8>], prefix: &str) -> Vec<Put> {
    texts
        .iter()
        .enumerate()
        .map(|(i, data)| Put {
            partition_key: format!("{prefix}-{i}"),
            explicit_hash_key: None,
            data: data.clone(),
        })
        .collect()
}

/// Puts `puts` into an empty `stream`, then reads every shard back from
/// TRIM_HORIZON: `(shard id, records)` for each shard that holds any.
pub async fn put_and_read_back(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
    puts: &[Put],
) -> Vec<(String, Vec<aws_sdk_kinesis::types::Record>)> {
    put_records(kinesis, stream, puts).await;
    let read = read_all(kinesis, stream).await;
    let total: usize = read.iter().map(|(_, records)| records.len()).sum();
    assert_eq!(total, puts.len(), "every record read back");
    read
}

/// Puts `puts` into `stream`, at most 500 a call; all must succeed.
pub async fn put_records(kinesis: &aws_sdk_kinesis::Client, stream: &str, puts: &[Put]) {
    use aws_sdk_kinesis::primitives::Blob;
    use aws_sdk_kinesis::types::PutRecordsRequestEntry;
    for chunk in puts.chunks(500) {
        let entries = chunk
            .iter()
            .map(|p| {
                PutRecordsRequestEntry::builder()
                    .partition_key(&p.partition_key)
                    .set_explicit_hash_key(p.explicit_hash_key.clone())
                    .data(Blob::new(p.data.clone()))
                    .build()
                    .expect("entry")
            })
            .collect::<Vec<_>>();
        let out = kinesis
            .put_records()
            .stream_name(stream)
            .set_records(Some(entries))
            .send()
            .await
            .expect("PutRecords");
        assert_eq!(
            out.failed_record_count(),
            Some(0),
            "kinesis-mock never throttles"
        );
    }
}

/// The last sequence number of each shard, from a read-back.
pub fn last_sequences(
    read: Vec<(String, Vec<aws_sdk_kinesis::types::Record>)>,
) -> std::collections::HashMap<String, String> {
    read.into_iter()
        .filter_map(|(shard, records)| Some((shard, records.last()?.sequence_number().to_string())))
        .collect()
}

/// Every record of every shard of `stream`, from TRIM_HORIZON: `(shard id,
/// records)` for each shard that holds any, in order.
pub async fn read_all(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
) -> Vec<(String, Vec<aws_sdk_kinesis::types::Record>)> {
    use aws_sdk_kinesis::types::ShardIteratorType;
    let shards = kinesis
        .list_shards()
        .stream_name(stream)
        .send()
        .await
        .expect("ListShards");
    let mut read = Vec::new();
    for shard in shards.shards() {
        let mut iterator = kinesis
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(shard.shard_id())
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .expect("GetShardIterator")
            .shard_iterator;
        let mut records = Vec::new();
        // Until a page comes back empty and caught up.
        while let Some(it) = iterator {
            let page = kinesis
                .get_records()
                .shard_iterator(it)
                .send()
                .await
                .expect("GetRecords");
            let empty = page.records().is_empty();
            records.extend(page.records().iter().cloned());
            iterator = page.next_shard_iterator;
            if empty && page.millis_behind_latest.unwrap_or(0) == 0 {
                break;
            }
        }
        if !records.is_empty() {
            read.push((shard.shard_id().to_string(), records));
        }
    }
    read
}

/// One shard's records as a Lambda event source mapping sends them.
pub fn lambda_event(
    stream_arn: &str,
    shard_id: &str,
    records: &[aws_sdk_kinesis::types::Record],
) -> serde_json::Value {
    use base64::Engine;
    let records: Vec<serde_json::Value> = records
        .iter()
        .map(|r| {
            let arrival = r
                .approximate_arrival_timestamp()
                .map(|t| t.as_secs_f64())
                .unwrap_or_default();
            serde_json::json!({
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": r.partition_key(),
                    "sequenceNumber": r.sequence_number(),
                    "data": base64::engine::general_purpose::STANDARD.encode(r.data().as_ref()),
                    "approximateArrivalTimestamp": arrival
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": format!("{shard_id}:{}", r.sequence_number()),
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::000000000000:role/shardwise",
                "awsRegion": "us-east-1",
                "eventSourceARN": stream_arn
            })
        })
        .collect();
    serde_json::json!({ "Records": records })
}

/// Word totals of texts, counted independently of shardwise.
pub fn expected_counts<'a>(
    texts: impl IntoIterator<Item = &'a [u8]>,
) -> std::collections::BTreeMap<String, u64> {
    let mut counts = std::collections::BTreeMap::new();
    for text in texts {
        if let Ok(text) = std::str::from_utf8(text) {
            for word in text.split_whitespace() {
                *counts.entry(word.to_string()).or_insert(0) += 1;
            }
        }
    }
    counts
}

/// Clients and a stream, for tests that share a setup.
pub struct Fixture {
    pub clients: Clients,
    pub stream_arn: String,
}

/// Polls `check` every 200 ms until it holds; returns how long it took.
pub async fn until<F, Fut>(
    what: &str,
    limit: std::time::Duration,
    mut check: F,
) -> std::time::Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    while !check().await {
        assert!(start.elapsed() < limit, "not within {limit:?}: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    start.elapsed()
}
