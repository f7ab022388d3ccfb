//! Aggregated records made by the reference implementation (awslabs'
//! `aws-kinesis-agg`, PyPI 1.2.3; see tests/fixtures/kpl/generate.py)
//! decode to exactly the user records that went in, and shardwise's
//! encoder writes the same bytes for the same user records.

use base64::Engine;
use shardwise::aggregation::{self, UserRecord};
use shardwise::record::{Position, Record, SequenceNumber, ShardId};

#[derive(serde::Deserialize)]
struct Fixture {
    name: String,
    kinesis_records: Vec<Encoded>,
    user_records: Vec<Encoded>,
}

#[derive(serde::Deserialize)]
struct Encoded {
    partition_key: String,
    explicit_hash_key: Option<String>,
    data: String,
}

fn bytes(b64: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("base64")
}

fn fixtures() -> Vec<Fixture> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/kpl/aws_kinesis_agg_fixtures.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixtures")).expect("json")
}

fn users(fixture: &Fixture) -> Vec<UserRecord> {
    fixture
        .user_records
        .iter()
        .map(|u| UserRecord {
            partition_key: u.partition_key.clone(),
            explicit_hash_key: u.explicit_hash_key.clone(),
            data: bytes(&u.data),
        })
        .collect()
}

#[test]
fn reference_aggregates_decode_to_the_user_records_that_went_in() {
    let fixtures = fixtures();
    assert_eq!(fixtures.len(), 6);
    for fixture in &fixtures {
        let mut decoded = Vec::new();
        for (n, kinesis) in fixture.kinesis_records.iter().enumerate() {
            let data = bytes(&kinesis.data);
            assert!(aggregation::is_aggregated(&data), "{}", fixture.name);
            let message =
                aggregation::decode(&data).unwrap_or_else(|e| panic!("{}: {e}", fixture.name));
            for user in message.records {
                decoded.push(UserRecord {
                    partition_key: message.partition_key_table[user.partition_key_index as usize]
                        .clone(),
                    explicit_hash_key: user
                        .explicit_hash_key_index
                        .map(|i| message.explicit_hash_key_table[i as usize].clone()),
                    data: user.data.to_vec(),
                });
            }
            // Through deaggregate: sub-sequence numbers 0..n under one
            // sequence number.
            let record = Record {
                stream: "s".into(),
                shard_id: ShardId::new("shardId-000000000000"),
                position: Position::new(
                    SequenceNumber::parse(&format!("4956{n:052}")).expect("seq"),
                    0,
                ),
                partition_key: kinesis.partition_key.as_str().into(),
                arrival: None,
                data: data.into(),
            };
            let user_records = aggregation::deaggregate(record).expect("valid");
            for (i, user) in user_records.iter().enumerate() {
                assert_eq!(user.position.sub_sequence, i as u64, "{}", fixture.name);
            }
        }
        assert_eq!(decoded, users(fixture), "{}", fixture.name);
    }
}

#[test]
fn our_encoder_writes_the_reference_bytes() {
    for fixture in fixtures().iter().filter(|f| f.kinesis_records.len() == 1) {
        let ours = aggregation::aggregate_all(users(fixture), aggregation::MAX_RECORD_BYTES);
        assert_eq!(ours.len(), 1, "{}", fixture.name);
        let theirs = &fixture.kinesis_records[0];
        assert_eq!(ours[0].data, bytes(&theirs.data), "{}", fixture.name);
        assert_eq!(
            ours[0].partition_key, theirs.partition_key,
            "{}",
            fixture.name
        );
    }
}
