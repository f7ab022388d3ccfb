//! The counts sink: exactly-once effects on at-least-once delivery.
//!
//! Kinesis, KCL and Lambda all deliver at least once: after a crash, a lost
//! lease, a retry or a bisected Lambda batch, records come again. The sink
//! makes that harmless, the same way in both modes.
//!
//! **Table layout** (one item per word and shard; a word's total is the sum
//! over its items; items stay small, and workers on different shards never
//! write the same item):
//!
//! | attribute | type | meaning |
//! |---|---|---|
//! | `word`  | S, partition key | the word as written ([`word_key`] for words over 1024 bytes) |
//! | `shard` | S, sort key | `<stream>/<shard id>` the counts came from |
//! | `count` | N | occurrences of the word in that shard's records up to `mark` |
//! | `mark`  | S | position of the last record included ([`Position::to_sortable`]) |
//!
//! **Invariant**: for each shard, a word's stored count includes exactly the
//! records of that shard up to its mark, and the mark only moves forward.
//!
//! A batch of one shard, records `first..=last` in order, updates each of
//! its words with one conditional `UpdateItem`: add the word's count and set
//! the mark to `last`, if the mark is absent or below `first`. When that
//! condition fails, DynamoDB returns the old item
//! (`ReturnValuesOnConditionCheckFailure = ALL_OLD`): a mark at or past
//! `last` means the word is already applied; otherwise the word is recounted
//! over the records after the mark and applied on condition that the mark is
//! still the one read. Any re-delivery that keeps a shard's records in order
//! — retries, overlaps, bisection, a failover — counts each record once.
//!
//! **The precondition**: no batch is applied before every record preceding
//! its `first` has been applied. In-order delivery guarantees it (the
//! worker checkpoints only applied positions; Lambda with
//! `ParallelizationFactor` 1 sends a shard's next batch only after the
//! previous one succeeded). Batches may repeat, overlap and even race, as a
//! timed-out invocation's writes race its retries; but a batch that *skips
//! ahead* of unapplied records would have its first write claim them (an
//! absent mark cannot tell "no earlier occurrences" from "not applied yet").

use std::borrow::Cow;
use std::collections::HashMap;
use std::num::NonZeroUsize;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ReturnValuesOnConditionCheckFailure, ScalarAttributeType,
};
use futures_util::{StreamExt, TryStreamExt};
use md5::Digest;

use crate::aws::{Retry, describe_error, retry_class};
use crate::record::{Position, Record};
use crate::wordcount::{BatchCount, count_batch, count_word_after};

pub const WORD: &str = "word";
pub const SHARD: &str = "shard";
pub const COUNT: &str = "count";
pub const MARK: &str = "mark";

/// Longest word stored under its own text. DynamoDB allows 2048 bytes in a
/// partition key value; longer words are stored under [`word_key`].
pub const MAX_WORD_KEY_BYTES: usize = 1024;

/// How many times one word is re-read and re-applied when other writers
/// keep moving its mark (only overlapping deliveries of one shard do).
const MAX_CONFLICT_ROUNDS: usize = 8;

/// Why a batch's counts could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Throttling, a 5xx or the network, after the SDK's own retries. The
    /// batch may be delivered again later; nothing is lost.
    #[error("counts table \"{table}\" is unavailable: {detail}")]
    Unavailable { table: String, detail: String },
    /// The table refused for good: missing, no permission, bad request.
    #[error("counts table \"{table}\" refused the request: {detail}")]
    Rejected { table: String, detail: String },
    /// An item whose mark shardwise did not write.
    #[error("counts table \"{table}\": item ({word:?}, {shard}) has an unreadable mark: {detail}")]
    CorruptItem {
        table: String,
        word: String,
        shard: String,
        detail: String,
    },
    /// A word's mark kept moving under concurrent writers of one shard.
    #[error(
        "counts table \"{table}\": item ({word:?}, {shard}) changed {MAX_CONFLICT_ROUNDS} times while being applied"
    )]
    Contended {
        table: String,
        word: String,
        shard: String,
    },
    /// The caller broke the contract: records of several shards, or out of
    /// order, in one batch.
    #[error("a counts batch must hold one shard's records in order: {0}")]
    InvalidBatch(String),
}

impl SinkError {
    /// Whether delivering the same batch again later can succeed.
    pub fn is_retriable(&self) -> bool {
        matches!(
            self,
            SinkError::Unavailable { .. } | SinkError::Contended { .. }
        )
    }

    /// A short, bounded label for logs, metrics and Lambda's error type.
    pub fn label(&self) -> &'static str {
        match self {
            SinkError::Unavailable { .. } => "SinkUnavailable",
            SinkError::Rejected { .. } => "SinkRejected",
            SinkError::CorruptItem { .. } => "SinkCorruptItem",
            SinkError::Contended { .. } => "SinkContended",
            SinkError::InvalidBatch(_) => "SinkInvalidBatch",
        }
    }
}

/// What applying one batch did, word by word.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Distinct words in the batch.
    pub words: usize,
    /// Words added in one write (the common case).
    pub applied: usize,
    /// Words whose item already covered the whole batch (a re-delivery).
    pub already_applied: usize,
    /// Words recounted after part of the batch had been applied before.
    pub recounted: usize,
    /// `UpdateItem` calls made, failed conditions included.
    pub writes: usize,
    /// Records counted and records skipped as bad.
    pub records_counted: usize,
    pub records_bad: usize,
}

/// What happened to one word.
enum WordOutcome {
    Applied,
    AlreadyApplied,
    Recounted,
}

/// The counts table, and how hard to push it.
#[derive(Clone, Debug)]
pub struct CountsSink {
    client: aws_sdk_dynamodb::Client,
    table: String,
    concurrency: NonZeroUsize,
}

impl CountsSink {
    /// `concurrency` bounds the `UpdateItem` calls in flight for one batch.
    pub fn new(
        client: aws_sdk_dynamodb::Client,
        table: impl Into<String>,
        concurrency: NonZeroUsize,
    ) -> Self {
        Self {
            client,
            table: table.into(),
            concurrency,
        }
    }

    /// Counts a batch of one shard's records, in position order, and
    /// applies the counts exactly once (see the module doc). Bad records are
    /// skipped and returned in the [`BatchCount`]; the caller logs them.
    ///
    /// # Errors
    /// [`SinkError`]; when it [is retriable](SinkError::is_retriable), the
    /// same batch (or any in-order re-delivery) may be applied again later
    /// without counting anything twice.
    pub async fn apply<'a>(
        &self,
        records: &'a [Record],
    ) -> Result<(ApplyReport, BatchCount<'a>), SinkError> {
        let (Some(first), Some(last)) = (records.first(), records.last()) else {
            return Ok((ApplyReport::default(), BatchCount::default()));
        };
        check_one_shard_in_order(records)?;
        let counts = count_batch(records);
        let shard = shard_key(first);
        let first_mark = first.position.to_sortable();
        let last_mark = last.position.to_sortable();
        let words = counts.words.to_sorted_vec();
        let mut report = ApplyReport {
            words: words.len(),
            records_counted: counts.records_counted,
            records_bad: counts.bad.len(),
            ..ApplyReport::default()
        };
        let outcomes: Vec<(WordOutcome, usize)> = futures_util::stream::iter(words)
            .map(|(word, count)| {
                let context = WordContext {
                    records,
                    shard: &shard,
                    first_mark: &first_mark,
                    last_mark: &last_mark,
                    last: &last.position,
                };
                async move { self.apply_word(context, word, count).await }
            })
            .buffer_unordered(self.concurrency.get())
            .try_collect()
            .await?;
        for (outcome, writes) in outcomes {
            report.writes += writes;
            match outcome {
                WordOutcome::Applied => report.applied += 1,
                WordOutcome::AlreadyApplied => report.already_applied += 1,
                WordOutcome::Recounted => report.recounted += 1,
            }
        }
        Ok((report, counts))
    }

    /// Applies one word; returns what happened and the writes it took.
    async fn apply_word(
        &self,
        at: WordContext<'_>,
        word: String,
        count: u64,
    ) -> Result<(WordOutcome, usize), SinkError> {
        let key = word_key(&word);
        let mut writes = 1;
        let mut old = match self
            .update(
                &key,
                at.shard,
                count,
                at.last_mark,
                Condition::MarkBelow(at.first_mark),
            )
            .await?
        {
            None => return Ok((WordOutcome::Applied, writes)),
            Some(old) => old,
        };
        for _ in 0..MAX_CONFLICT_ROUNDS {
            let old_mark_text = match old.get(MARK) {
                Some(AttributeValue::S(mark)) => mark.clone(),
                other => {
                    return Err(self.corrupt(&word, at.shard, format!("mark is {other:?}")));
                }
            };
            let old_mark = Position::from_sortable(&old_mark_text)
                .map_err(|e| self.corrupt(&word, at.shard, e.to_string()))?;
            if old_mark >= *at.last {
                return Ok((WordOutcome::AlreadyApplied, writes));
            }
            let missing = count_word_after(at.records, &word, &old_mark);
            if missing == 0 {
                // Nothing after the mark mentions the word: the stored count
                // is already exact up to `last`. No write needed.
                return Ok((WordOutcome::AlreadyApplied, writes));
            }
            writes += 1;
            match self
                .update(
                    &key,
                    at.shard,
                    missing,
                    at.last_mark,
                    Condition::MarkIs(&old_mark_text),
                )
                .await?
            {
                None => return Ok((WordOutcome::Recounted, writes)),
                Some(newer) => old = newer,
            }
        }
        Err(SinkError::Contended {
            table: self.table.clone(),
            word,
            shard: at.shard.to_string(),
        })
    }

    /// One conditional `UpdateItem`. `Ok(None)`: applied. `Ok(Some(old))`:
    /// the condition failed and `old` is the item as it stands.
    async fn update(
        &self,
        word_key: &str,
        shard: &str,
        add: u64,
        last_mark: &str,
        condition: Condition<'_>,
    ) -> Result<Option<HashMap<String, AttributeValue>>, SinkError> {
        let request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(WORD, AttributeValue::S(word_key.to_string()))
            .key(SHARD, AttributeValue::S(shard.to_string()))
            .update_expression("ADD #count :add SET #mark = :last")
            .expression_attribute_names("#count", COUNT)
            .expression_attribute_names("#mark", MARK)
            .expression_attribute_values(":add", AttributeValue::N(add.to_string()))
            .expression_attribute_values(":last", AttributeValue::S(last_mark.to_string()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        let request = match condition {
            Condition::MarkBelow(first) => request
                .condition_expression("attribute_not_exists(#mark) OR #mark < :first")
                .expression_attribute_values(":first", AttributeValue::S(first.to_string())),
            Condition::MarkIs(old) => request
                .condition_expression("#mark = :old")
                .expression_attribute_values(":old", AttributeValue::S(old.to_string())),
        };
        match request.send().await {
            Ok(_) => Ok(None),
            Err(SdkError::ServiceError(failure))
                if failure.err().is_conditional_check_failed_exception() =>
            {
                match failure.into_err() {
                    UpdateItemError::ConditionalCheckFailedException(e) => {
                        // An item always exists when the condition fails:
                        // an absent item satisfies `attribute_not_exists`.
                        Ok(Some(e.item.unwrap_or_default()))
                    }
                    other => Err(self.rejected(&other)),
                }
            }
            Err(error) => Err(classify(&self.table, &error)),
        }
    }

    /// Checks that the table exists and this process may update it, with
    /// the one call the sink makes (`UpdateItem`) on a condition that can
    /// never hold, so nothing is written: a worker without its counts
    /// table, or without the permission, stops before it takes a lease.
    ///
    /// # Errors
    /// [`SinkError::Rejected`] (missing table, access denied) or
    /// [`SinkError::Unavailable`].
    pub async fn check_writable(&self) -> Result<(), SinkError> {
        let probe = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(WORD, AttributeValue::S("shardwise access check".into()))
            .key(SHARD, AttributeValue::S("-".into()))
            .update_expression("ADD #count :zero")
            .condition_expression("attribute_exists(#word) AND attribute_not_exists(#word)")
            .expression_attribute_names("#count", COUNT)
            .expression_attribute_names("#word", WORD)
            .expression_attribute_values(":zero", AttributeValue::N("0".into()))
            .send()
            .await;
        match probe {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                Ok(())
            }
            Err(error) => Err(classify(&self.table, &error)),
        }
    }

    fn rejected(&self, error: &(dyn std::error::Error + 'static)) -> SinkError {
        SinkError::Rejected {
            table: self.table.clone(),
            detail: describe_error(error),
        }
    }

    fn corrupt(&self, word: &str, shard: &str, detail: String) -> SinkError {
        SinkError::CorruptItem {
            table: self.table.clone(),
            word: word.to_string(),
            shard: shard.to_string(),
            detail,
        }
    }
}

/// What every word of one batch shares.
#[derive(Clone, Copy)]
struct WordContext<'a> {
    records: &'a [Record],
    shard: &'a str,
    first_mark: &'a str,
    last_mark: &'a str,
    last: &'a Position,
}

enum Condition<'a> {
    /// The first attempt: the mark is absent or below the batch's first.
    MarkBelow(&'a str),
    /// The recount: the mark is still the one read.
    MarkIs(&'a str),
}

/// `<stream>/<shard id>`: the sort key of a record's items.
pub fn shard_key(record: &Record) -> String {
    format!("{}/{}", record.stream, record.shard_id)
}

/// The partition key a word is stored under: the word itself, or for a word
/// over [`MAX_WORD_KEY_BYTES`], its first ~1000 bytes (cut at a character
/// boundary), `…md5:` and the MD5 of the whole word in hex, so that distinct
/// long words stay distinct and each is still recognisable.
pub fn word_key(word: &str) -> Cow<'_, str> {
    if word.len() <= MAX_WORD_KEY_BYTES {
        return Cow::Borrowed(word);
    }
    let mut cut = MAX_WORD_KEY_BYTES - 64;
    while !word.is_char_boundary(cut) {
        cut -= 1;
    }
    let digest = md5::Md5::digest(word.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    Cow::Owned(format!("{}…md5:{hex}", &word[..cut]))
}

fn check_one_shard_in_order(records: &[Record]) -> Result<(), SinkError> {
    for pair in records.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        if a.shard_id != b.shard_id || a.stream != b.stream {
            return Err(SinkError::InvalidBatch(format!(
                "{}/{} and {}/{} in one batch",
                a.stream, a.shard_id, b.stream, b.shard_id
            )));
        }
        if a.position >= b.position {
            return Err(SinkError::InvalidBatch(format!(
                "position {} is followed by {}",
                a.position, b.position
            )));
        }
    }
    Ok(())
}

/// Creates the counts table (on-demand billing) unless it exists, and waits
/// until it is ACTIVE. Returns whether it was created.
///
/// # Errors
/// [`SinkError`] when DynamoDB cannot be reached or refuses.
pub async fn create_table_if_missing(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Result<bool, SinkError> {
    use aws_sdk_dynamodb::client::Waiters;
    let fail = |error: &(dyn std::error::Error + 'static)| SinkError::Rejected {
        table: table.to_string(),
        detail: describe_error(error),
    };
    let key = |name: &str, key_type: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(key_type)
            .build()
    };
    let string_attribute = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
    };
    let created = match client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key(WORD, KeyType::Hash).map_err(|e| fail(&e))?)
        .key_schema(key(SHARD, KeyType::Range).map_err(|e| fail(&e))?)
        .attribute_definitions(string_attribute(WORD).map_err(|e| fail(&e))?)
        .attribute_definitions(string_attribute(SHARD).map_err(|e| fail(&e))?)
        .send()
        .await
    {
        Ok(_) => true,
        Err(SdkError::ServiceError(e)) if e.err().is_resource_in_use_exception() => false,
        Err(error) => return Err(fail(&error)),
    };
    client
        .wait_until_table_exists()
        .table_name(table)
        .wait(std::time::Duration::from_secs(120))
        .await
        .map_err(|e| fail(&e))?;
    Ok(created)
}

/// A failed call on the counts table, as the caller acts on it: passing
/// (retry the batch later) or refused for good.
fn classify<E, R>(table: &str, error: &SdkError<E, R>) -> SinkError
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + 'static,
    R: crate::aws::HttpStatus + std::fmt::Debug + 'static,
{
    let detail = describe_error(error);
    let table = table.to_string();
    match retry_class(error) {
        Retry::Transient => SinkError::Unavailable { table, detail },
        Retry::Permanent => SinkError::Rejected { table, detail },
    }
}

/// Every word's total (the sum over its shards' items), largest first, then
/// by word. Reads the whole table: meant for people and tests, not for the
/// hot path.
///
/// # Errors
/// [`SinkError`] when the table cannot be read.
pub async fn read_totals(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Result<Vec<(String, u64)>, SinkError> {
    let mut totals: HashMap<String, u64> = HashMap::new();
    let mut pages = client
        .scan()
        .table_name(table)
        .projection_expression("#word, #count")
        .expression_attribute_names("#word", WORD)
        .expression_attribute_names("#count", COUNT)
        .consistent_read(true)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|error| classify(table, &error))?;
        for item in page.items() {
            let (Some(AttributeValue::S(word)), Some(AttributeValue::N(count))) =
                (item.get(WORD), item.get(COUNT))
            else {
                continue;
            };
            let count: u64 = count.parse().map_err(|_| SinkError::CorruptItem {
                table: table.to_string(),
                word: word.clone(),
                shard: String::new(),
                detail: format!("count {count:?} is not a whole number"),
            })?;
            *totals.entry(word.clone()).or_insert(0) += count;
        }
    }
    let mut sorted: Vec<(String, u64)> = totals.into_iter().collect();
    sorted.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Ok(sorted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_words_are_their_own_key_and_long_ones_stay_distinct() {
        assert_eq!(word_key("hello"), "hello");
        let exact = "x".repeat(MAX_WORD_KEY_BYTES);
        assert_eq!(word_key(&exact), exact.as_str());
        let long_a = format!("{}a", "é".repeat(1000));
        let long_b = format!("{}b", "é".repeat(1000));
        let (ka, kb) = (word_key(&long_a), word_key(&long_b));
        assert_ne!(ka, kb);
        assert!(ka.len() <= MAX_WORD_KEY_BYTES + 64, "{}", ka.len());
        assert!(ka.starts_with("éé") && ka.contains("…md5:"));
        assert_eq!(word_key(&long_a), ka, "deterministic");
    }
}
