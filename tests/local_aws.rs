//! The foundation's proof that the wiring is real: the local engines that
//! `localstack/up` starts answer the AWS SDK exactly where the binary's own
//! client construction points it, and they listen on loopback only.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use aws_sdk_dynamodb::client::Waiters;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ReturnValuesOnConditionCheckFailure, ScalarAttributeType,
};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType};
use common::{local_clients, unique_name};

/// Create a 2-shard stream and a table, put records and read every one back
/// from TRIM_HORIZON, then make a conditional UpdateItem fail and check that
/// the failure carries the old item: the mechanism the counts sink relies on.
#[tokio::test]
async fn sdk_reaches_local_kinesis_and_dynamodb() {
    let clients = local_clients().await;
    let stream = unique_name("wiring");
    let table = unique_name("wiring");

    // --- Kinesis: create, put, read back ---------------------------------
    let ready = shardwise::setup::ensure_stream(&clients.kinesis, &stream, 2)
        .await
        .expect("stream becomes ACTIVE");
    assert!(ready.created);
    assert_eq!(ready.open_shards, 2);

    let sent: Vec<(String, String)> = (0..20)
        .map(|i| (format!("key-{i}"), format!("record {i} of the wiring test")))
        .collect();
    let entries = sent
        .iter()
        .map(|(key, data)| {
            PutRecordsRequestEntry::builder()
                .partition_key(key)
                .data(Blob::new(data.as_bytes()))
                .build()
                .expect("entry")
        })
        .collect::<Vec<_>>();
    let put = clients
        .kinesis
        .put_records()
        .stream_name(&stream)
        .set_records(Some(entries))
        .send()
        .await
        .expect("PutRecords");
    assert_eq!(put.failed_record_count(), Some(0));
    let mut sequence_by_data = HashMap::new();
    for ((_, data), result) in sent.iter().zip(put.records()) {
        let sequence = result.sequence_number().expect("sequence number");
        assert!(
            sequence.len() >= 20,
            "real-length sequence number: {sequence}"
        );
        sequence_by_data.insert(data.clone(), sequence.to_string());
    }

    let shards = clients
        .kinesis
        .list_shards()
        .stream_name(&stream)
        .send()
        .await
        .expect("ListShards");
    assert_eq!(shards.shards().len(), 2);
    let mut received = BTreeMap::new();
    let mut shards_with_records = 0;
    for shard in shards.shards() {
        let mut iterator = clients
            .kinesis
            .get_shard_iterator()
            .stream_name(&stream)
            .shard_id(shard.shard_id())
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .expect("GetShardIterator")
            .shard_iterator
            .expect("iterator");
        let mut from_this_shard = 0;
        // A few reads: an empty page does not prove the shard is drained.
        for _ in 0..5 {
            let page = clients
                .kinesis
                .get_records()
                .shard_iterator(&iterator)
                .send()
                .await
                .expect("GetRecords");
            for record in page.records() {
                let data = String::from_utf8(record.data().as_ref().to_vec()).expect("utf-8");
                received.insert(data, record.sequence_number().to_string());
                from_this_shard += 1;
            }
            match page.next_shard_iterator {
                Some(next) => iterator = next,
                None => break,
            }
        }
        if from_this_shard > 0 {
            shards_with_records += 1;
        }
    }
    assert_eq!(received.len(), sent.len(), "every record read back once");
    for (data, sequence) in &received {
        assert_eq!(sequence_by_data.get(data), Some(sequence), "{data}");
    }
    assert_eq!(shards_with_records, 2, "20 keys spread over both shards");

    // --- DynamoDB: conditional update whose failure returns the old item --
    clients
        .dynamodb
        .create_table()
        .table_name(&table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("word")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("attribute"),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("word")
                .key_type(KeyType::Hash)
                .build()
                .expect("key"),
        )
        .send()
        .await
        .expect("CreateTable");
    clients
        .dynamodb
        .wait_until_table_exists()
        .table_name(&table)
        .wait(Duration::from_secs(60))
        .await
        .expect("table ACTIVE");

    let apply = |first: &str, last: &str, add: i64| {
        clients
            .dynamodb
            .update_item()
            .table_name(&table)
            .key("word", AttributeValue::S("hello".into()))
            .update_expression("ADD #count :n SET #mark = :last")
            .condition_expression("attribute_not_exists(#mark) OR #mark < :first")
            .expression_attribute_names("#count", "count")
            .expression_attribute_names("#mark", "mark")
            .expression_attribute_values(":n", AttributeValue::N(add.to_string()))
            .expression_attribute_values(":first", AttributeValue::S(first.into()))
            .expression_attribute_values(":last", AttributeValue::S(last.into()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
    };
    apply("0001", "0005", 3)
        .await
        .expect("first apply succeeds");
    let error = apply("0003", "0007", 2)
        .await
        .expect_err("an overlapping batch must fail the condition");
    let Some(UpdateItemError::ConditionalCheckFailedException(failed)) = error.as_service_error()
    else {
        panic!("expected ConditionalCheckFailedException, got {error:?}");
    };
    let old = failed.item().expect("old item returned with the failure");
    assert_eq!(old.get("mark"), Some(&AttributeValue::S("0005".into())));
    assert_eq!(old.get("count"), Some(&AttributeValue::N("3".into())));
    apply("0006", "0009", 4)
        .await
        .expect("a later batch applies");
    let item = clients
        .dynamodb
        .get_item()
        .table_name(&table)
        .key("word", AttributeValue::S("hello".into()))
        .consistent_read(true)
        .send()
        .await
        .expect("GetItem")
        .item
        .expect("item");
    assert_eq!(item.get("count"), Some(&AttributeValue::N("7".into())));

    // --- clean up ---------------------------------------------------------
    clients
        .kinesis
        .delete_stream()
        .stream_name(&stream)
        .send()
        .await
        .expect("DeleteStream");
    clients
        .dynamodb
        .delete_table()
        .table_name(&table)
        .send()
        .await
        .expect("DeleteTable");
}

/// The ports of the endpoints in this environment must be served on
/// loopback only (DESIGN: servers the project starts never face the network).
#[test]
fn local_engines_listen_on_loopback_only() {
    let mut ports = Vec::new();
    for name in ["AWS_ENDPOINT_URL_KINESIS", "AWS_ENDPOINT_URL_DYNAMODB"] {
        let url =
            std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run scripts/test"));
        let port: u16 = url
            .rsplit(':')
            .next()
            .and_then(|p| p.trim_end_matches('/').parse().ok())
            .unwrap_or_else(|| panic!("{name}={url} has no port"));
        ports.push(port);
    }
    let listeners = listening_sockets();
    for port in ports {
        let on_port: Vec<_> = listeners.iter().filter(|(_, p)| *p == port).collect();
        assert!(!on_port.is_empty(), "nothing listens on port {port}");
        for (address, _) in on_port {
            assert!(
                address.is_loopback()
                    || matches!(address, std::net::IpAddr::V6(v6)
                        if v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())),
                "port {port} is open on {address}, not only on loopback"
            );
        }
    }
}

/// Every TCP socket in LISTEN state on this machine, from /proc/net/tcp{,6}.
fn listening_sockets() -> Vec<(std::net::IpAddr, u16)> {
    const LISTEN: &str = "0A";
    let mut sockets = Vec::new();
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(table) = std::fs::read_to_string(file) else {
            continue;
        };
        for line in table.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 4 || fields[3] != LISTEN {
                continue;
            }
            let (address, port) = fields[1].split_once(':').expect("address:port");
            let port = u16::from_str_radix(port, 16).expect("hex port");
            // The kernel prints each 32-bit word of the address in host
            // (little-endian) order.
            let mut bytes = Vec::new();
            for word in address.as_bytes().chunks(8) {
                let word = u32::from_str_radix(std::str::from_utf8(word).expect("hex"), 16)
                    .expect("hex word");
                bytes.extend_from_slice(&word.to_le_bytes());
            }
            let address = match bytes.len() {
                4 => std::net::IpAddr::from(<[u8; 4]>::try_from(bytes).expect("4 bytes")),
                16 => std::net::IpAddr::from(<[u8; 16]>::try_from(bytes).expect("16 bytes")),
                other => panic!("unexpected address length {other} in {file}"),
            };
            sockets.push((address, port));
        }
    }
    sockets
}
