//! The one record type both modes hand to the core, and its position.
//!
//! A Kinesis sequence number is a decimal string of up to 129 digits (real
//! ones have 56); KPL aggregation adds a sub-sequence number for each user
//! record inside one Kinesis record. A [`Position`] is the pair, ordered by
//! numeric value: sequence numbers compare by length, then digit by digit,
//! once leading zeros are gone, so no bignum is needed.

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;

/// Kinesis's limit on a sequence number's length: the API documents the
/// pattern `0|([1-9]\d{0,128})`, so up to 129 digits (real ones have 56).
pub const MAX_SEQUENCE_DIGITS: usize = 129;
/// Width of the sub-sequence part of [`Position::to_sortable`] (`u64::MAX`
/// has 20 digits).
const SUB_SEQUENCE_DIGITS: usize = 20;

/// Why a sequence number, position or record could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("sequence number {0:?} is not 1 to 129 decimal digits")]
    BadSequenceNumber(String),
    #[error("stored position {0:?} is not in the fixed-width form shardwise writes")]
    BadSortablePosition(String),
    #[error("Lambda record has no eventID of the form shardId-…:sequence (got {0:?})")]
    BadEventId(String),
}

/// A shard's id, e.g. `shardId-000000000001`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardId(Arc<str>);

impl ShardId {
    pub fn new(id: impl Into<Arc<str>>) -> Self {
        Self(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A Kinesis sequence number, kept as its decimal digits without leading
/// zeros (`"0"` for zero).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SequenceNumber(Arc<str>);

impl SequenceNumber {
    /// Parses a decimal sequence number.
    ///
    /// # Errors
    /// [`RecordError::BadSequenceNumber`] unless `text` is 1 to 129 ASCII
    /// digits (leading zeros allowed).
    pub fn parse(text: &str) -> Result<Self, RecordError> {
        if text.is_empty()
            || text.len() > MAX_SEQUENCE_DIGITS
            || !text.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(RecordError::BadSequenceNumber(text.to_string()));
        }
        let trimmed = text.trim_start_matches('0');
        let digits = if trimmed.is_empty() { "0" } else { trimmed };
        Ok(Self(digits.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Ord for SequenceNumber {
    fn cmp(&self, other: &Self) -> Ordering {
        // Without leading zeros, a longer number is a larger one.
        self.0
            .len()
            .cmp(&other.0.len())
            .then_with(|| self.0.as_bytes().cmp(other.0.as_bytes()))
    }
}

impl PartialOrd for SequenceNumber {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for SequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a user record sits in its shard: the Kinesis record's sequence
/// number, and the user record's index inside a KPL aggregate (0 for a
/// record that is not aggregated). Ordered by sequence, then sub-sequence.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Position {
    pub sequence: SequenceNumber,
    pub sub_sequence: u64,
}

impl Position {
    pub fn new(sequence: SequenceNumber, sub_sequence: u64) -> Self {
        Self {
            sequence,
            sub_sequence,
        }
    }

    /// Fixed-width text whose string order is the numeric order: the
    /// sequence zero-padded to 129 digits, `.`, the sub-sequence padded to
    /// 20. DynamoDB compares strings byte by byte, so conditions such as
    /// `mark < :first` on this form compare positions.
    pub fn to_sortable(&self) -> String {
        format!(
            "{:0>width$}.{:0>sub$}",
            self.sequence.as_str(),
            self.sub_sequence,
            width = MAX_SEQUENCE_DIGITS,
            sub = SUB_SEQUENCE_DIGITS
        )
    }

    /// Reads the form written by [`Position::to_sortable`].
    ///
    /// # Errors
    /// [`RecordError::BadSortablePosition`] for anything else.
    pub fn from_sortable(text: &str) -> Result<Self, RecordError> {
        let bad = || RecordError::BadSortablePosition(text.to_string());
        let (sequence, sub) = text.split_once('.').ok_or_else(bad)?;
        if sequence.len() != MAX_SEQUENCE_DIGITS || sub.len() != SUB_SEQUENCE_DIGITS {
            return Err(bad());
        }
        let sequence = SequenceNumber::parse(sequence).map_err(|_| bad())?;
        let sub_sequence = sub.parse().map_err(|_| bad())?;
        Ok(Self::new(sequence, sub_sequence))
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.sequence, self.sub_sequence)
    }
}

/// One user record of one shard, as both modes hand it to the core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The stream's name.
    pub stream: Arc<str>,
    pub shard_id: ShardId,
    pub position: Position,
    /// Shared, not copied, by the user records of one KPL aggregate.
    pub partition_key: Arc<str>,
    /// When Kinesis received the record (approximate, from Kinesis).
    pub arrival: Option<SystemTime>,
    /// The bytes. `Bytes` so that the user records of an aggregate are
    /// slices of it rather than copies.
    pub data: Bytes,
}

impl Record {
    /// Builds a record from one that GetRecords returned for `shard_id`.
    ///
    /// # Errors
    /// [`RecordError::BadSequenceNumber`] if Kinesis sent a malformed one.
    pub fn from_kinesis(
        stream: Arc<str>,
        shard_id: ShardId,
        record: aws_sdk_kinesis::types::Record,
    ) -> Result<Self, RecordError> {
        let sequence = SequenceNumber::parse(&record.sequence_number)?;
        Ok(Self {
            stream,
            shard_id,
            position: Position::new(sequence, 0),
            partition_key: record.partition_key.unwrap_or_default().into(),
            arrival: record
                .approximate_arrival_timestamp
                .and_then(|at| SystemTime::try_from(at).ok()),
            data: Bytes::from(record.data.into_inner()),
        })
    }

    /// Builds a record from one of a Lambda Kinesis event. The shard id
    /// comes from `eventID` (`shardId-…:sequence`), the stream from the
    /// event source ARN; `aws_lambda_events` has already decoded the base64.
    ///
    /// # Errors
    /// [`RecordError`] when the event id or sequence number is malformed.
    pub fn from_lambda(
        record: aws_lambda_events::event::kinesis::KinesisEventRecord,
    ) -> Result<Self, RecordError> {
        let event_id = record.event_id.unwrap_or_default();
        let shard = match event_id.split_once(':') {
            Some((shard, _)) if shard.starts_with("shardId-") => shard,
            _ => return Err(RecordError::BadEventId(event_id)),
        };
        let stream = record
            .event_source_arn
            .as_deref()
            .and_then(|arn| arn.rsplit_once(":stream/"))
            .map(|(_, name)| name)
            .unwrap_or("unknown-stream");
        let kinesis = record.kinesis;
        Ok(Self {
            stream: stream.into(),
            shard_id: ShardId::new(shard),
            position: Position::new(SequenceNumber::parse(&kinesis.sequence_number)?, 0),
            partition_key: kinesis.partition_key.into(),
            arrival: Some(kinesis.approximate_arrival_timestamp.0.into()),
            data: Bytes::from(kinesis.data.0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn seq(text: &str) -> SequenceNumber {
        SequenceNumber::parse(text).expect("valid")
    }

    #[test]
    fn sequence_numbers_compare_by_value_not_text() {
        assert!(seq("9") < seq("10"));
        assert!(seq("000123") == seq("123"));
        assert!(seq("0") < seq("1"));
        assert_eq!(seq("0000").as_str(), "0");
        let real = "49568167373333333333333333333333333333333333333333333333";
        assert!(seq(real) > seq("9999"));
    }

    #[test]
    fn malformed_sequence_numbers_are_refused() {
        for bad in ["", "12a", "-1", " 1", &"1".repeat(130)] {
            assert!(SequenceNumber::parse(bad).is_err(), "{bad:?}");
        }
        assert!(SequenceNumber::parse(&"9".repeat(129)).is_ok());
    }

    #[test]
    fn sortable_form_round_trips_and_refuses_other_text() {
        let p = Position::new(seq("4956816737"), 7);
        let text = p.to_sortable();
        assert_eq!(text.len(), 129 + 1 + 20);
        assert_eq!(Position::from_sortable(&text), Ok(p));
        for bad in [
            "",
            "12.3",
            "TRIM_HORIZON",
            &format!("{}.x", "0".repeat(129)),
        ] {
            assert!(Position::from_sortable(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn records_from_get_records_keep_everything_the_core_needs() {
        let sdk = aws_sdk_kinesis::types::Record::builder()
            .sequence_number("49568167373333333333333333333333333333333333333333333333")
            .partition_key("user-7")
            .data(aws_sdk_kinesis::primitives::Blob::new("hello world"))
            .approximate_arrival_timestamp(aws_sdk_kinesis::primitives::DateTime::from_secs(
                1_764_000_000,
            ))
            .build()
            .expect("record");
        let record =
            Record::from_kinesis("orders".into(), ShardId::new("shardId-000000000003"), sdk)
                .expect("valid");
        assert_eq!(&*record.stream, "orders");
        assert_eq!(record.shard_id.as_str(), "shardId-000000000003");
        assert_eq!(
            record.position,
            Position::new(
                seq("49568167373333333333333333333333333333333333333333333333"),
                0
            )
        );
        assert_eq!(&*record.partition_key, "user-7");
        assert_eq!(record.data, &b"hello world"[..]);
        assert_eq!(
            record.arrival,
            Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_764_000_000))
        );
    }

    #[test]
    fn records_from_lambda_take_the_shard_from_the_event_id() {
        let event = |event_id: &str,
                     sequence: &str|
         -> aws_lambda_events::event::kinesis::KinesisEventRecord {
            serde_json::from_value(serde_json::json!({
                "kinesis": {"partitionKey": "k", "sequenceNumber": sequence, "data": "aGk=", "approximateArrivalTimestamp": 1764000000.5},
                "eventID": event_id,
                "eventSourceARN": "arn:aws:kinesis:eu-west-1:123456789012:stream/clicks"
            }))
            .expect("event record")
        };
        let record =
            Record::from_lambda(event("shardId-000000000001:4956", "4956")).expect("valid");
        assert_eq!(record.shard_id.as_str(), "shardId-000000000001");
        assert_eq!(&*record.stream, "clicks");
        assert_eq!(record.data, &b"hi"[..]);
        assert_eq!(record.position.sequence.as_str(), "4956");
        assert!(matches!(
            Record::from_lambda(event("", "4956")),
            Err(RecordError::BadEventId(_))
        ));
        assert!(matches!(
            Record::from_lambda(event("4956", "4956")),
            Err(RecordError::BadEventId(_))
        ));
        assert!(matches!(
            Record::from_lambda(event("shardId-000000000001:x", "x")),
            Err(RecordError::BadSequenceNumber(_))
        ));
    }

    /// Digit strings of any length the API allows, leading zeros included.
    fn digits() -> impl Strategy<Value = String> {
        prop_oneof![
            "[0-9]{1,40}",
            "[0-9]{50,60}",
            "0{0,5}[1-9][0-9]{0,120}",
            "[0-9]{129}",
        ]
    }

    proptest! {
        #[test]
        fn order_matches_numeric_order(a in any::<u128>(), b in any::<u128>(), za in 0usize..5, zb in 0usize..5, sa in any::<u64>(), sb in any::<u64>()) {
            let pa = Position::new(seq(&format!("{}{a}", "0".repeat(za))), sa);
            let pb = Position::new(seq(&format!("{}{b}", "0".repeat(zb))), sb);
            prop_assert_eq!(pa.cmp(&pb), (a, sa).cmp(&(b, sb)));
        }

        #[test]
        fn sortable_strings_sort_like_positions(a in digits(), b in digits(), sa in any::<u64>(), sb in any::<u64>()) {
            let pa = Position::new(seq(&a), sa);
            let pb = Position::new(seq(&b), sb);
            prop_assert_eq!(pa.to_sortable().cmp(&pb.to_sortable()), pa.cmp(&pb));
            prop_assert_eq!(Position::from_sortable(&pa.to_sortable()), Ok(pa));
        }
    }
}
