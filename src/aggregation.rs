//! KPL aggregated records: decode (both modes) and encode (the producer).
//!
//! The Kinesis Producer Library packs many *user records* into one Kinesis
//! record. The published format (awslabs/amazon-kinesis-producer,
//! `aggregation-format.md`):
//!
//! ```text
//! F3 89 9A C2 | protobuf AggregatedRecord (proto2) | MD5 of the protobuf (16 bytes)
//! ```
//!
//! KCL de-aggregates; Lambda does not, so both modes do it here. Each user
//! record keeps the Kinesis record's sequence number and gets its index in
//! the aggregate as sub-sequence number, so positions (the sink's marks, the
//! worker's checkpoints) can stop inside an aggregate. A record without the
//! magic passes through unchanged.
//!
//! Unlike KCL 2.x, user records whose explicit hash key falls outside the
//! shard's range (possible after a reshard) are **not** dropped: shardwise
//! counts what the shard delivered.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use md5::{Digest, Md5};
use prost::Message;

use crate::record::{Position, Record};
use crate::wordcount::{BadRecord, BadRecordReason};

/// The four bytes that open every aggregated record.
pub const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];
const DIGEST_LEN: usize = 16;
/// Kinesis's limit on one record: data plus partition key, 1 MiB.
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;

/// `message AggregatedRecord` of the KPL's `messages.proto`.
#[derive(Clone, PartialEq, Message)]
pub struct AggregatedRecord {
    #[prost(string, repeated, tag = "1")]
    pub partition_key_table: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    pub explicit_hash_key_table: Vec<String>,
    #[prost(message, repeated, tag = "3")]
    pub records: Vec<UserRecordProto>,
}

/// `message Record` of the KPL's `messages.proto`: one user record.
#[derive(Clone, PartialEq, Message)]
pub struct UserRecordProto {
    #[prost(uint64, required, tag = "1")]
    pub partition_key_index: u64,
    #[prost(uint64, optional, tag = "2")]
    pub explicit_hash_key_index: Option<u64>,
    /// `Bytes`: decoded from a `Bytes` buffer, a slice of it, not a copy.
    #[prost(bytes = "bytes", required, tag = "3")]
    pub data: Bytes,
    #[prost(message, repeated, tag = "4")]
    pub tags: Vec<Tag>,
}

/// `message Tag` of the KPL's `messages.proto` (read, never used).
#[derive(Clone, PartialEq, Message)]
pub struct Tag {
    #[prost(string, required, tag = "1")]
    pub key: String,
    #[prost(string, optional, tag = "2")]
    pub value: Option<String>,
}

/// Why an aggregated record could not be decoded. Every one is permanent:
/// the record is skipped as bad, never retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum AggregationError {
    #[error("aggregated record of {len} bytes is too short to hold its MD5 digest")]
    TooShort { len: usize },
    #[error("aggregated record's MD5 digest does not match its contents")]
    Md5Mismatch,
    #[error("aggregated record does not hold a valid protobuf AggregatedRecord")]
    Protobuf,
    #[error("user record {index} names partition key {key_index} of a table of {table_len}")]
    PartitionKeyIndex {
        index: usize,
        key_index: u64,
        table_len: usize,
    },
    #[error("user record {index} names explicit hash key {key_index} of a table of {table_len}")]
    ExplicitHashKeyIndex {
        index: usize,
        key_index: u64,
        table_len: usize,
    },
}

impl AggregationError {
    /// A short, bounded label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            AggregationError::TooShort { .. } => "aggregate_truncated",
            AggregationError::Md5Mismatch => "aggregate_md5_mismatch",
            AggregationError::Protobuf => "aggregate_invalid_protobuf",
            AggregationError::PartitionKeyIndex { .. }
            | AggregationError::ExplicitHashKeyIndex { .. } => "aggregate_bad_index",
        }
    }
}

/// Whether `data` claims to be an aggregate (starts with the magic).
pub fn is_aggregated(data: &[u8]) -> bool {
    data.starts_with(&MAGIC)
}

/// Splits a Kinesis record into its user records: several for an
/// aggregate (sub-sequence numbers 0..n), itself for any other record.
///
/// # Errors
/// [`AggregationError`] when the record has the magic but is corrupt.
pub fn deaggregate(record: Record) -> Result<Vec<Record>, AggregationError> {
    if !is_aggregated(&record.data) {
        return Ok(vec![record]);
    }
    let AggregatedRecord {
        partition_key_table,
        records,
        ..
    } = decode_bytes(record.data.clone())?;
    // Each key once; user records share it.
    let keys: Vec<Arc<str>> = partition_key_table.into_iter().map(Arc::from).collect();
    let mut users = Vec::with_capacity(records.len());
    for (index, user) in records.into_iter().enumerate() {
        let partition_key = usize::try_from(user.partition_key_index)
            .ok()
            .and_then(|i| keys.get(i))
            .cloned()
            .unwrap_or_else(|| Arc::from(""));
        users.push(Record {
            stream: record.stream.clone(),
            shard_id: record.shard_id.clone(),
            position: Position::new(record.position.sequence.clone(), index as u64),
            partition_key,
            arrival: record.arrival,
            data: user.data,
        });
    }
    Ok(users)
}

/// Splits a batch of Kinesis records into user records, in order. Corrupt
/// aggregates are returned as bad records: skipped, never retried, and
/// never in the way of the records after them.
pub fn deaggregate_batch(records: Vec<Record>) -> (Vec<Record>, Vec<BadRecord>) {
    let mut users = Vec::with_capacity(records.len());
    let mut bad = Vec::new();
    for record in records {
        let (shard_id, position) = (record.shard_id.clone(), record.position.clone());
        match deaggregate(record) {
            Ok(mut user_records) => users.append(&mut user_records),
            Err(error) => bad.push(BadRecord {
                shard_id,
                position,
                reason: BadRecordReason::CorruptAggregate(error),
            }),
        }
    }
    (users, bad)
}

/// Decodes and checks an aggregated record's bytes (magic included):
/// digest, protobuf, and every table index.
///
/// # Errors
/// [`AggregationError`] for any corruption.
pub fn decode(data: &[u8]) -> Result<AggregatedRecord, AggregationError> {
    decode_bytes(Bytes::copy_from_slice(data))
}

/// [`decode`] without copying: user records' data are slices of `data`.
///
/// # Errors
/// [`AggregationError`] for any corruption.
pub fn decode_bytes(data: Bytes) -> Result<AggregatedRecord, AggregationError> {
    let len = data.len();
    if len < MAGIC.len() + DIGEST_LEN {
        return Err(AggregationError::TooShort { len });
    }
    let message = data.slice(MAGIC.len()..len - DIGEST_LEN);
    if Md5::digest(&message).as_slice() != &data[len - DIGEST_LEN..] {
        return Err(AggregationError::Md5Mismatch);
    }
    let aggregate = AggregatedRecord::decode(message).map_err(|_| AggregationError::Protobuf)?;
    for (index, user) in aggregate.records.iter().enumerate() {
        let table_len = aggregate.partition_key_table.len();
        if user.partition_key_index >= table_len as u64 {
            return Err(AggregationError::PartitionKeyIndex {
                index,
                key_index: user.partition_key_index,
                table_len,
            });
        }
        if let Some(key_index) = user.explicit_hash_key_index {
            let table_len = aggregate.explicit_hash_key_table.len();
            if key_index >= table_len as u64 {
                return Err(AggregationError::ExplicitHashKeyIndex {
                    index,
                    key_index,
                    table_len,
                });
            }
        }
    }
    Ok(aggregate)
}

/// One user record to aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub partition_key: String,
    pub explicit_hash_key: Option<String>,
    pub data: Vec<u8>,
}

/// A Kinesis record ready for PutRecords: the aggregate's bytes and the
/// partition key (and explicit hash key) that route it, those of its first
/// user record, as the KPL does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggregatedPut {
    pub partition_key: String,
    pub explicit_hash_key: Option<String>,
    pub data: Vec<u8>,
    /// How many user records it carries.
    pub user_records: usize,
}

/// Packs user records into aggregates no larger than a limit (by default
/// Kinesis's 1 MiB per record, partition key included). Sizes are tracked
/// as the protobuf encoding will have them, so no aggregate is encoded
/// twice.
#[derive(Debug)]
pub struct Aggregator {
    limit: usize,
    message: AggregatedRecord,
    /// Encoded length of `message` so far.
    message_len: usize,
    first_partition_key: Option<String>,
    first_explicit_hash_key: Option<String>,
    /// Where each key sits in its table (a producer may use thousands).
    key_indexes: HashMap<String, usize>,
    hash_key_indexes: HashMap<String, usize>,
}

impl Default for Aggregator {
    fn default() -> Self {
        Self::with_limit(MAX_RECORD_BYTES)
    }
}

impl Aggregator {
    /// An aggregator whose records (data + partition key) stay within
    /// `limit` bytes.
    pub fn with_limit(limit: usize) -> Self {
        Self {
            limit,
            message: AggregatedRecord::default(),
            message_len: 0,
            first_partition_key: None,
            first_explicit_hash_key: None,
            key_indexes: HashMap::new(),
            hash_key_indexes: HashMap::new(),
        }
    }

    /// Adds a user record. Returns the aggregate that was full, if adding
    /// this one needed a new aggregate. A user record too large to share an
    /// aggregate at all is packed alone (and rejected later by Kinesis if
    /// it alone is over the limit, as the KPL does).
    pub fn push(&mut self, user: UserRecord) -> Option<AggregatedPut> {
        let flushed = if !self.message.records.is_empty() && !self.fits(&user) {
            self.flush()
        } else {
            None
        };
        self.add(user);
        flushed
    }

    /// The aggregate being built, if it holds anything.
    pub fn flush(&mut self) -> Option<AggregatedPut> {
        if self.message.records.is_empty() {
            return None;
        }
        let message = std::mem::take(&mut self.message);
        self.message_len = 0;
        self.key_indexes.clear();
        self.hash_key_indexes.clear();
        let user_records = message.records.len();
        let encoded = message.encode_to_vec();
        let mut data = Vec::with_capacity(MAGIC.len() + encoded.len() + DIGEST_LEN);
        data.extend_from_slice(&MAGIC);
        data.extend_from_slice(&encoded);
        data.extend_from_slice(Md5::digest(&encoded).as_slice());
        Some(AggregatedPut {
            partition_key: self.first_partition_key.take().unwrap_or_default(),
            explicit_hash_key: self.first_explicit_hash_key.take(),
            data,
            user_records,
        })
    }

    /// What adding `user` would add to the encoded message.
    fn added_len(&self, user: &UserRecord) -> usize {
        use prost::encoding::{encoded_len_varint, key_len};
        let mut added = 0;
        let mut record_len = 0;
        let key_index = match self.key_index(&user.partition_key) {
            Some(i) => i,
            None => {
                added += key_len(1)
                    + encoded_len_varint(user.partition_key.len() as u64)
                    + user.partition_key.len();
                self.message.partition_key_table.len()
            }
        };
        record_len += key_len(1) + encoded_len_varint(key_index as u64);
        if let Some(hash_key) = &user.explicit_hash_key {
            let hash_index = match self.hash_key_index(hash_key) {
                Some(i) => i,
                None => {
                    added +=
                        key_len(2) + encoded_len_varint(hash_key.len() as u64) + hash_key.len();
                    self.message.explicit_hash_key_table.len()
                }
            };
            record_len += key_len(2) + encoded_len_varint(hash_index as u64);
        }
        record_len += key_len(3) + encoded_len_varint(user.data.len() as u64) + user.data.len();
        added + key_len(3) + encoded_len_varint(record_len as u64) + record_len
    }

    fn fits(&self, user: &UserRecord) -> bool {
        let routing_key = self
            .first_partition_key
            .as_deref()
            .map_or(user.partition_key.len(), str::len);
        let total =
            MAGIC.len() + self.message_len + self.added_len(user) + DIGEST_LEN + routing_key;
        total <= self.limit
    }

    fn add(&mut self, user: UserRecord) {
        self.message_len += self.added_len(&user);
        if self.first_partition_key.is_none() {
            self.first_partition_key = Some(user.partition_key.clone());
            self.first_explicit_hash_key = user.explicit_hash_key.clone();
        }
        let table = &mut self.message.partition_key_table;
        let partition_key_index = *self
            .key_indexes
            .entry(user.partition_key)
            .or_insert_with_key(|key| {
                table.push(key.clone());
                table.len() - 1
            });
        let table = &mut self.message.explicit_hash_key_table;
        let indexes = &mut self.hash_key_indexes;
        let explicit_hash_key_index = user.explicit_hash_key.map(|hash_key| {
            *indexes.entry(hash_key).or_insert_with_key(|key| {
                table.push(key.clone());
                table.len() - 1
            })
        });
        self.message.records.push(UserRecordProto {
            partition_key_index: partition_key_index as u64,
            explicit_hash_key_index: explicit_hash_key_index.map(|i| i as u64),
            data: Bytes::from(user.data),
            tags: Vec::new(),
        });
    }

    fn key_index(&self, key: &str) -> Option<usize> {
        self.key_indexes.get(key).copied()
    }

    fn hash_key_index(&self, key: &str) -> Option<usize> {
        self.hash_key_indexes.get(key).copied()
    }
}

/// Aggregates `users` into as few records as the limit allows.
pub fn aggregate_all(
    users: impl IntoIterator<Item = UserRecord>,
    limit: usize,
) -> Vec<AggregatedPut> {
    let mut aggregator = Aggregator::with_limit(limit);
    let mut puts: Vec<AggregatedPut> = users
        .into_iter()
        .filter_map(|u| aggregator.push(u))
        .collect();
    puts.extend(aggregator.flush());
    puts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{SequenceNumber, ShardId};
    use proptest::prelude::*;

    fn kinesis_record(data: Vec<u8>) -> Record {
        Record {
            stream: "s".into(),
            shard_id: ShardId::new("shardId-000000000001"),
            position: Position::new(SequenceNumber::parse("4956816737").expect("seq"), 0),
            partition_key: "outer".into(),
            arrival: None,
            data: Bytes::from(data),
        }
    }

    fn user(key: &str, hash: Option<&str>, data: &[u8]) -> UserRecord {
        UserRecord {
            partition_key: key.to_string(),
            explicit_hash_key: hash.map(String::from),
            data: data.to_vec(),
        }
    }

    /// Encodes `message` as an aggregate with a correct digest.
    fn framed(message: &AggregatedRecord) -> Vec<u8> {
        let encoded = message.encode_to_vec();
        let mut data = MAGIC.to_vec();
        data.extend_from_slice(&encoded);
        data.extend_from_slice(Md5::digest(&encoded).as_slice());
        data
    }

    fn small_aggregate() -> Vec<u8> {
        let users = vec![
            user("a", None, b"one two"),
            user("b", Some("12345"), b"three"),
            user("a", None, b""),
        ];
        let puts = aggregate_all(users, MAX_RECORD_BYTES);
        assert_eq!(puts.len(), 1);
        puts[0].data.clone()
    }

    #[test]
    fn user_records_get_sub_sequence_numbers_under_the_kinesis_sequence() {
        let users = deaggregate(kinesis_record(small_aggregate())).expect("valid");
        let summary: Vec<_> = users
            .iter()
            .map(|r| (r.position.sub_sequence, &*r.partition_key, &r.data[..]))
            .collect();
        assert_eq!(
            summary,
            vec![
                (0, "a", &b"one two"[..]),
                (1, "b", &b"three"[..]),
                (2, "a", &b""[..])
            ]
        );
        for r in &users {
            assert_eq!(r.position.sequence.as_str(), "4956816737");
            assert_eq!(r.shard_id.as_str(), "shardId-000000000001");
        }
    }

    #[test]
    fn records_without_the_magic_pass_through_unchanged() {
        let plain = kinesis_record(b"just text".to_vec());
        assert_eq!(deaggregate(plain.clone()), Ok(vec![plain]));
        let empty = kinesis_record(Vec::new());
        assert_eq!(deaggregate(empty.clone()), Ok(vec![empty]));
    }

    #[test]
    fn a_flipped_digest_byte_is_an_md5_mismatch() {
        let mut data = small_aggregate();
        let last = data.len() - 1;
        data[last] ^= 0x01;
        assert_eq!(decode(&data), Err(AggregationError::Md5Mismatch));
        let mut data = small_aggregate();
        data[6] ^= 0x40; // a protobuf byte: the digest no longer matches
        assert_eq!(decode(&data), Err(AggregationError::Md5Mismatch));
    }

    #[test]
    fn every_truncation_is_an_error_never_a_panic() {
        let data = small_aggregate();
        for len in MAGIC.len()..data.len() {
            let error = decode(&data[..len]).expect_err("a truncated aggregate");
            assert!(
                matches!(
                    error,
                    AggregationError::TooShort { .. } | AggregationError::Md5Mismatch
                ),
                "{len}: {error:?}"
            );
        }
    }

    #[test]
    fn indexes_outside_their_tables_are_refused() {
        let bad_key = AggregatedRecord {
            partition_key_table: vec!["only".into()],
            explicit_hash_key_table: vec![],
            records: vec![UserRecordProto {
                partition_key_index: 3,
                explicit_hash_key_index: None,
                data: Bytes::from_static(b"x"),
                tags: vec![],
            }],
        };
        assert_eq!(
            decode(&framed(&bad_key)),
            Err(AggregationError::PartitionKeyIndex {
                index: 0,
                key_index: 3,
                table_len: 1
            })
        );
        let bad_hash = AggregatedRecord {
            partition_key_table: vec!["k".into()],
            explicit_hash_key_table: vec!["1".into()],
            records: vec![
                UserRecordProto {
                    partition_key_index: 0,
                    explicit_hash_key_index: Some(0),
                    data: Bytes::from_static(b"x"),
                    tags: vec![],
                },
                UserRecordProto {
                    partition_key_index: 0,
                    explicit_hash_key_index: Some(1),
                    data: Bytes::from_static(b"y"),
                    tags: vec![],
                },
            ],
        };
        assert_eq!(
            decode(&framed(&bad_hash)),
            Err(AggregationError::ExplicitHashKeyIndex {
                index: 1,
                key_index: 1,
                table_len: 1
            })
        );
    }

    #[test]
    fn a_valid_digest_over_bytes_that_are_not_protobuf_is_refused() {
        for garbage in [
            &[0xffu8, 0xff, 0xff][..],
            &[0x1a, 0x05, 0x08],
            &[0x0a, 0x02, 0xc3, 0x28],
        ] {
            let mut data = MAGIC.to_vec();
            data.extend_from_slice(garbage);
            data.extend_from_slice(Md5::digest(garbage).as_slice());
            assert_eq!(
                decode(&data),
                Err(AggregationError::Protobuf),
                "{garbage:?}"
            );
        }
    }

    #[test]
    fn a_batch_keeps_going_past_a_corrupt_aggregate() {
        let mut corrupt = small_aggregate();
        corrupt.truncate(corrupt.len() - 3);
        let mut second = kinesis_record(b"after".to_vec());
        second.position = Position::new(SequenceNumber::parse("4956816738").expect("seq"), 0);
        let (users, bad) = deaggregate_batch(vec![kinesis_record(corrupt), second.clone()]);
        assert_eq!(users, vec![second]);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].reason.label(), "aggregate_md5_mismatch");
    }

    #[test]
    fn aggregates_stay_within_the_limit() {
        let users: Vec<UserRecord> = (0..10_000)
            .map(|i| {
                user(
                    &format!("key-{}", i % 37),
                    None,
                    format!("{i} 1 2 3 4 5 6 7 8 9").as_bytes(),
                )
            })
            .collect();
        let puts = aggregate_all(users.clone(), 64 * 1024);
        assert!(puts.len() > 1);
        let mut decoded = Vec::new();
        for put in &puts {
            assert!(
                put.data.len() + put.partition_key.len() <= 64 * 1024,
                "{}",
                put.data.len()
            );
            decoded.extend(
                decode(&put.data)
                    .expect("valid")
                    .records
                    .into_iter()
                    .map(|r| r.data),
            );
        }
        assert_eq!(
            decoded,
            users.into_iter().map(|u| u.data).collect::<Vec<_>>()
        );
    }

    proptest! {
        #[test]
        fn encode_then_decode_gives_the_same_user_records(
            users in proptest::collection::vec(
                ("\\PC{1,12}", proptest::option::of("[0-9]{1,38}"), proptest::collection::vec(any::<u8>(), 0..300)),
                1..60,
            ),
            limit in 600usize..20_000,
        ) {
            let users: Vec<UserRecord> = users
                .into_iter()
                .map(|(partition_key, explicit_hash_key, data)| UserRecord { partition_key, explicit_hash_key, data })
                .collect();
            let puts = aggregate_all(users.clone(), limit);
            let mut round_trip = Vec::new();
            for put in &puts {
                let alone = put.user_records == 1;
                prop_assert!(alone || put.data.len() + put.partition_key.len() <= limit);
                let message = decode(&put.data).expect("valid aggregate");
                prop_assert_eq!(message.records.len(), put.user_records);
                let first = &message.records[0];
                prop_assert_eq!(&message.partition_key_table[first.partition_key_index as usize], &put.partition_key);
                for r in message.records {
                    round_trip.push(UserRecord {
                        partition_key: message.partition_key_table[r.partition_key_index as usize].clone(),
                        explicit_hash_key: r.explicit_hash_key_index.map(|i| message.explicit_hash_key_table[i as usize].clone()),
                        data: r.data.to_vec(),
                    });
                }
            }
            prop_assert_eq!(round_trip, users);
        }

        /// Past the digest check: arbitrary bytes framed with a correct MD5
        /// reach the protobuf decoder and the index checks.
        #[test]
        fn decoding_arbitrary_protobuf_bytes_never_panics(message in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut data = MAGIC.to_vec();
            data.extend_from_slice(&message);
            data.extend_from_slice(Md5::digest(&message).as_slice());
            let _ = deaggregate(kinesis_record(data));
        }

        #[test]
        fn decoding_arbitrary_bytes_after_the_magic_never_panics(tail in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut data = MAGIC.to_vec();
            data.extend_from_slice(&tail);
            let _ = deaggregate(kinesis_record(data));
        }
    }
}
