//! The word-count core: a batch of one shard's records in, counts per word
//! out. Pure: no I/O, no async, no knowledge of Kinesis or Lambda.
//!
//! **A word is a maximal run of characters that are not Unicode
//! `White_Space`**, kept exactly as written: case, punctuation and digits
//! are part of it (`Hello,` and `hello` are two words). White_Space is
//! U+0009–U+000D, U+0020, U+0085, U+00A0, U+1680, U+2000–U+200A, U+2028,
//! U+2029, U+202F, U+205F and U+3000 — what `char::is_whitespace` says.
//!
//! Records that cannot be counted for a reason that will not change — not
//! valid UTF-8, or empty — are skipped and returned as [`BadRecord`]s for
//! the caller to log and count; they never stop the batch.
//!
//! This is the hot path. Words are borrowed from the records, never
//! allocated; one-byte words (the producer's digits) go to a flat array, the
//! rest to a `hashbrown` map with its fast default hasher (foldhash).

use hashbrown::HashMap;

use crate::aggregation::AggregationError;
use crate::record::{Position, Record, ShardId};

/// Why a record was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BadRecordReason {
    /// No bytes at all.
    Empty,
    /// Not valid UTF-8; `valid_up_to` bytes were.
    InvalidUtf8 { valid_up_to: usize },
    /// A KPL aggregate that cannot be decoded.
    CorruptAggregate(AggregationError),
}

impl BadRecordReason {
    /// A short, bounded label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            BadRecordReason::Empty => "empty",
            BadRecordReason::InvalidUtf8 { .. } => "invalid_utf8",
            BadRecordReason::CorruptAggregate(error) => error.label(),
        }
    }
}

impl std::fmt::Display for BadRecordReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BadRecordReason::Empty => f.write_str("empty record"),
            BadRecordReason::InvalidUtf8 { valid_up_to } => {
                write!(f, "not valid UTF-8 after byte {valid_up_to}")
            }
            BadRecordReason::CorruptAggregate(error) => error.fmt(f),
        }
    }
}

/// A record the core skipped, with where it was and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRecord {
    pub shard_id: ShardId,
    pub position: Position,
    pub reason: BadRecordReason,
}

impl BadRecord {
    /// Reports the record once: a warning saying where it is and why it
    /// was skipped (never its data), and the `BadRecords` metric.
    pub fn report(&self) {
        crate::telemetry::bad_record(self.shard_id.as_str(), self.reason.label());
        tracing::warn!(
            shard_id = %self.shard_id,
            sequence_number = %self.position.sequence,
            sub_sequence_number = self.position.sub_sequence,
            reason = self.reason.label(),
            "skipped a record that cannot be counted: {}",
            self.reason
        );
    }
}

/// Counts per word. One-byte words (the producer's digits) are counted in
/// a flat array; words of up to [`PACKED_MAX`] bytes are packed into one
/// integer key, so a lookup hashes and compares a `u128` and never follows
/// a pointer into another record; longer words borrow their bytes from the
/// records they came from.
#[derive(Debug, Clone)]
pub struct WordCounts<'a> {
    /// One-byte words, by their byte (always ASCII: the text is UTF-8).
    single_byte: Box<[u64; 256]>,
    packed: HashMap<u128, u64>,
    longer: HashMap<&'a [u8], u64>,
    /// Records in the batch, to size `packed` once on its first word:
    /// growing from empty would rehash every word several times.
    expected_records: usize,
}

/// The longest word packed into a `u128` key: 15 bytes, and the length in
/// the 16th (so that `a` and `a\0` stay different words).
pub const PACKED_MAX: usize = 15;

/// Packs a word of at most [`PACKED_MAX`] bytes.
#[inline(always)]
fn pack(word: &[u8]) -> u128 {
    let mut bytes = [0u8; 16];
    bytes[..word.len()].copy_from_slice(word);
    bytes[PACKED_MAX] = word.len() as u8;
    u128::from_le_bytes(bytes)
}

/// [`pack`] for the word `text[start..end]`, reading a fixed 16-byte
/// window when the text has one (a single load instead of a copy of
/// variable length) and masking off the bytes past the word.
#[inline(always)]
fn pack_at(text: &[u8], start: usize, end: usize) -> u128 {
    let len = end - start;
    match text.get(start..start + 16) {
        Some(window) => {
            let mut bytes = [0u8; 16];
            bytes.copy_from_slice(window);
            let keep = (1u128 << (len * 8)) - 1;
            (u128::from_le_bytes(bytes) & keep) | ((len as u128) << (8 * PACKED_MAX))
        }
        None => pack(&text[start..end]),
    }
}

/// The word packed in `key`, and its length.
fn unpack(key: u128) -> ([u8; 16], usize) {
    let bytes = key.to_le_bytes();
    let len = usize::from(bytes[PACKED_MAX]).min(PACKED_MAX);
    (bytes, len)
}

impl Default for WordCounts<'_> {
    fn default() -> Self {
        Self {
            single_byte: Box::new([0; 256]),
            packed: HashMap::new(),
            longer: HashMap::new(),
            expected_records: 0,
        }
    }
}

impl<'a> WordCounts<'a> {
    #[inline]
    fn add(&mut self, word: &'a [u8]) {
        if let [byte] = word {
            self.single_byte[usize::from(*byte)] += 1;
        } else {
            self.add_multi_byte(word);
        }
    }

    #[inline]
    fn add_multi_byte(&mut self, word: &'a [u8]) {
        if word.len() <= PACKED_MAX {
            self.add_packed(pack(word));
        } else {
            *self.longer.entry(word).or_insert(0) += 1;
        }
    }

    #[inline]
    fn add_packed(&mut self, key: u128) {
        if self.packed.capacity() == 0 {
            // About one new word per record in varied text: reserving that
            // up front saves rehashing every word while the map grows, and
            // stays small (≈0.5 MB for 10 000 records) with many shards.
            self.packed.reserve(self.expected_records);
        }
        *self.packed.entry(key).or_insert(0) += 1;
    }

    /// Counts the words of ASCII-only text: the hot path for the
    /// producer's records, so one-byte words skip even the slice.
    #[inline]
    fn add_ascii_text(&mut self, bytes: &'a [u8]) {
        let mut i = 0;
        let n = bytes.len();
        while i < n {
            let byte = bytes[i];
            if is_ascii_space(byte) {
                i += 1;
                continue;
            }
            // A word starts at i; most of the producer's end at i + 1.
            if i + 1 == n || is_ascii_space(bytes[i + 1]) {
                self.single_byte[usize::from(byte)] += 1;
                i += 2;
                continue;
            }
            let start = i;
            i += 2;
            while i < n && !is_ascii_space(bytes[i]) {
                i += 1;
            }
            if i - start <= PACKED_MAX {
                self.add_packed(pack_at(bytes, start, i));
            } else {
                *self.longer.entry(&bytes[start..i]).or_insert(0) += 1;
            }
            i += 1;
        }
    }

    /// Calls `f` with every word and its count, in no particular order.
    pub fn for_each(&self, mut f: impl FnMut(&[u8], u64)) {
        for (byte, count) in self.single_byte.iter().enumerate() {
            if *count > 0 {
                // The index of a 256-entry array always fits a byte.
                let at = byte & 0xff;
                f(&BYTES[at..=at], *count);
            }
        }
        for (key, count) in &self.packed {
            let (bytes, len) = unpack(*key);
            f(&bytes[..len], *count);
        }
        for (word, count) in &self.longer {
            f(word, *count);
        }
    }

    /// The count of one word (0 if absent).
    pub fn get(&self, word: &str) -> u64 {
        match word.as_bytes() {
            [byte] => self.single_byte[usize::from(*byte)],
            bytes if bytes.len() <= PACKED_MAX => {
                self.packed.get(&pack(bytes)).copied().unwrap_or(0)
            }
            bytes => self.longer.get(bytes).copied().unwrap_or(0),
        }
    }

    /// How many different words.
    pub fn distinct(&self) -> usize {
        self.single_byte.iter().filter(|c| **c > 0).count() + self.packed.len() + self.longer.len()
    }

    /// How many words in all.
    pub fn total(&self) -> u64 {
        self.single_byte.iter().sum::<u64>()
            + self.packed.values().sum::<u64>()
            + self.longer.values().sum::<u64>()
    }

    /// Owned `(word, count)` pairs, sorted by word: what the sink writes.
    pub fn to_sorted_vec(&self) -> Vec<(String, u64)> {
        let mut pairs = Vec::with_capacity(self.distinct());
        // Words are cut at ASCII or whole whitespace characters of valid
        // UTF-8, so they are valid UTF-8: the lossy path never replaces.
        self.for_each(|word, count| {
            pairs.push((String::from_utf8_lossy(word).into_owned(), count))
        });
        pairs.sort_unstable();
        pairs
    }
}

/// Every byte value once, so that a one-byte word can be lent as a slice.
static BYTES: [u8; 256] = {
    let mut all = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        all[i] = i as u8;
        i += 1;
    }
    all
};

/// What the core made of one batch.
#[derive(Debug, Clone, Default)]
pub struct BatchCount<'a> {
    pub words: WordCounts<'a>,
    /// Records whose words were counted (bad ones excluded).
    pub records_counted: usize,
    /// Records skipped, in batch order.
    pub bad: Vec<BadRecord>,
}

/// The bytes of a record that can be counted (valid UTF-8, not empty), or
/// why it cannot.
///
/// # Errors
/// The [`BadRecordReason`] for an empty or non-UTF-8 record.
pub fn record_text(data: &[u8]) -> Result<Text<'_>, BadRecordReason> {
    if data.is_empty() {
        return Err(BadRecordReason::Empty);
    }
    // ASCII is valid UTF-8, and checking for it costs a fraction of full
    // validation on short records (the producer's are ~20 bytes).
    if data.is_ascii() {
        return Ok(Text::Ascii(data));
    }
    std::str::from_utf8(data)
        .map(Text::Utf8)
        .map_err(|e| BadRecordReason::InvalidUtf8 {
            valid_up_to: e.valid_up_to(),
        })
}

/// A record's text, known to be countable.
#[derive(Debug, Clone, Copy)]
pub enum Text<'a> {
    /// Only ASCII bytes: whitespace is one of six bytes.
    Ascii(&'a [u8]),
    /// Valid UTF-8 with at least one non-ASCII character.
    Utf8(&'a str),
}

impl<'a> Text<'a> {
    /// Calls `f` with each word, in order.
    #[inline]
    pub fn for_each_word(self, f: impl FnMut(&'a [u8])) {
        match self {
            Text::Ascii(bytes) => for_each_ascii_word(bytes, f),
            Text::Utf8(text) => for_each_word(text, f),
        }
    }
}

/// Counts the words of a batch of records.
pub fn count_batch(records: &[Record]) -> BatchCount<'_> {
    let mut batch = BatchCount::default();
    batch.words.expected_records = records.len();
    for record in records {
        match record_text(&record.data) {
            Ok(Text::Ascii(bytes)) => {
                batch.words.add_ascii_text(bytes);
                batch.records_counted += 1;
            }
            Ok(text) => {
                text.for_each_word(|word| batch.words.add(word));
                batch.records_counted += 1;
            }
            Err(reason) => batch.bad.push(BadRecord {
                shard_id: record.shard_id.clone(),
                position: record.position.clone(),
                reason,
            }),
        }
    }
    batch
}

/// How often `word` occurs in the records after `after`: the sink's recount
/// when part of a batch was applied before. Bad records count nothing, as in
/// [`count_batch`].
pub fn count_word_after(records: &[Record], word: &str, after: &Position) -> u64 {
    let wanted = word.as_bytes();
    let mut count = 0;
    for record in records.iter().filter(|r| r.position > *after) {
        if let Ok(text) = record_text(&record.data) {
            text.for_each_word(|w| count += u64::from(w == wanted));
        }
    }
    count
}

/// Byte classes for the tokenizer.
const WORD: u8 = 0;
const ASCII_SPACE: u8 = 1;
/// First byte of a multi-byte character that may be White_Space.
const MAYBE_SPACE: u8 = 2;

static CLASS: [u8; 256] = {
    let mut class = [WORD; 256];
    // U+0009..U+000D and U+0020: the ASCII White_Space characters.
    class[0x09] = ASCII_SPACE;
    class[0x0a] = ASCII_SPACE;
    class[0x0b] = ASCII_SPACE;
    class[0x0c] = ASCII_SPACE;
    class[0x0d] = ASCII_SPACE;
    class[0x20] = ASCII_SPACE;
    // Lead bytes of U+0085/U+00A0 (C2), U+1680 (E1), U+2000..U+205F (E2),
    // U+3000 (E3).
    class[0xc2] = MAYBE_SPACE;
    class[0xe1] = MAYBE_SPACE;
    class[0xe2] = MAYBE_SPACE;
    class[0xe3] = MAYBE_SPACE;
    class
};

/// Length in bytes of the White_Space character at the start of `bytes`,
/// or 0 if it starts with something else. `bytes` starts at a lead byte.
#[inline]
fn unicode_space_len(bytes: &[u8]) -> usize {
    match bytes {
        [0xc2, 0x85 | 0xa0, ..] => 2,
        [0xe1, 0x9a, 0x80, ..] => 3,
        [0xe2, 0x80, 0x80..=0x8a | 0xa8 | 0xa9 | 0xaf, ..] => 3,
        [0xe2, 0x81, 0x9f, ..] => 3,
        [0xe3, 0x80, 0x80, ..] => 3,
        _ => 0,
    }
}

/// U+0009..U+000D or U+0020.
#[inline(always)]
fn is_ascii_space(byte: u8) -> bool {
    byte == b' ' || byte.wrapping_sub(b'\t') < 5
}

/// [`for_each_word`] for ASCII-only text: two tight loops, no table.
#[inline]
fn for_each_ascii_word<'a>(bytes: &'a [u8], mut f: impl FnMut(&'a [u8])) {
    let mut i = 0;
    while i < bytes.len() {
        while i < bytes.len() && is_ascii_space(bytes[i]) {
            i += 1;
        }
        if i == bytes.len() {
            break;
        }
        let start = i;
        i += 1;
        while i < bytes.len() && !is_ascii_space(bytes[i]) {
            i += 1;
        }
        f(&bytes[start..i]);
    }
}

/// Calls `f` with each word of `text`, in order.
#[inline]
pub fn for_each_word<'a>(text: &'a str, mut f: impl FnMut(&'a [u8])) {
    let bytes = text.as_bytes();
    let mut start: Option<usize> = None;
    let mut i = 0;
    while i < bytes.len() {
        let space_len = match CLASS[usize::from(bytes[i])] {
            WORD => 0,
            ASCII_SPACE => 1,
            _ => unicode_space_len(&bytes[i..]),
        };
        if space_len == 0 {
            start.get_or_insert(i);
            i += 1;
        } else {
            if let Some(s) = start.take() {
                f(&bytes[s..i]);
            }
            i += space_len;
        }
    }
    if let Some(s) = start {
        f(&bytes[s..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::SequenceNumber;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// The words of `text`, through both tokenizers where both apply.
    fn words(text: &str) -> Vec<String> {
        let collect = |t: Text<'_>| {
            let mut out = Vec::new();
            t.for_each_word(|w| out.push(String::from_utf8_lossy(w).into_owned()));
            out
        };
        let general = collect(Text::Utf8(text));
        if text.is_ascii() {
            assert_eq!(collect(Text::Ascii(text.as_bytes())), general, "{text:?}");
        }
        general
    }

    fn record(seq: u64, data: &[u8]) -> Record {
        Record {
            stream: "s".into(),
            shard_id: ShardId::new("shardId-000000000000"),
            position: Position::new(SequenceNumber::parse(&seq.to_string()).expect("seq"), 0),
            partition_key: "k".into(),
            arrival: None,
            data: bytes::Bytes::copy_from_slice(data),
        }
    }

    fn as_map(counts: &WordCounts<'_>) -> BTreeMap<String, u64> {
        counts.to_sorted_vec().into_iter().collect()
    }

    #[test]
    fn words_are_runs_of_non_whitespace_kept_as_written() {
        let cases: &[(&str, &[&str])] = &[
            ("", &[]),
            ("   \t\n", &[]),
            ("one", &["one"]),
            ("3 1 4 1 5", &["3", "1", "4", "1", "5"]),
            ("  Hello, hello  world!\n", &["Hello,", "hello", "world!"]),
            (
                "tab\tnew\nline\r\nff\x0cvt\x0bend",
                &["tab", "new", "line", "ff", "vt", "end"],
            ),
            (
                "no\u{a0}break\u{3000}ideographic\u{2003}em\u{85}nel",
                &["no", "break", "ideographic", "em", "nel"],
            ),
            (
                "\u{1680}ogham\u{2028}\u{2029}\u{202f}\u{205f}x",
                &["ogham", "x"],
            ),
            // Not White_Space: zero-width space, BOM, other C2/E2 characters.
            (
                "a\u{200b}b \u{feff}c é ‘q’ ½",
                &["a\u{200b}b", "\u{feff}c", "é", "‘q’", "½"],
            ),
            // File separators are not White_Space (Python disagrees).
            ("a\x1cb", &["a\x1cb"]),
        ];
        for (text, expected) in cases {
            assert_eq!(words(text), *expected, "{text:?}");
        }
    }

    #[test]
    fn counts_a_batch_and_skips_bad_records() {
        let records = vec![
            record(1, b"3 1 4 1 5"),
            record(2, b""),
            record(3, b"caf\xe9 au lait"),
            record(4, b"pi is 3 . 1 4"),
            record(5, "1 ünïcödé 1".as_bytes()),
        ];
        let batch = count_batch(&records);
        assert_eq!(batch.records_counted, 3);
        assert_eq!(batch.words.get("1"), 5);
        assert_eq!(batch.words.get("3"), 2);
        assert_eq!(batch.words.get("ünïcödé"), 1);
        assert_eq!(batch.words.get("pi"), 1);
        assert_eq!(
            batch.words.get("lait"),
            0,
            "invalid UTF-8 record is skipped whole"
        );
        assert_eq!(batch.words.total(), 14);
        assert_eq!(batch.words.distinct(), 8);
        let reasons: Vec<_> = batch
            .bad
            .iter()
            .map(|b| (b.position.sequence.to_string(), b.reason))
            .collect();
        assert_eq!(
            reasons,
            vec![
                ("2".to_string(), BadRecordReason::Empty),
                (
                    "3".to_string(),
                    BadRecordReason::InvalidUtf8 { valid_up_to: 3 }
                ),
            ]
        );
    }

    #[test]
    fn recount_after_a_position_sees_only_later_records() {
        let records = vec![
            record(10, b"a b a"),
            record(20, b"a"),
            record(30, b"\xff a"),
            record(40, b"b a"),
        ];
        let at = |s: u64| Position::new(SequenceNumber::parse(&s.to_string()).expect("seq"), 0);
        assert_eq!(count_word_after(&records, "a", &at(0)), 4);
        assert_eq!(count_word_after(&records, "a", &at(10)), 2);
        assert_eq!(count_word_after(&records, "a", &at(25)), 1);
        assert_eq!(count_word_after(&records, "b", &at(40)), 0);
    }

    proptest! {
        #[test]
        fn tokenizer_agrees_with_char_is_whitespace(text in "\\PC{0,40}|[ -~\t\n\r\x0b\x0c]{0,40}|[ a\u{a0}\u{85}\u{2000}-\u{200c}\u{3000}\u{1680}\u{2028}-\u{2030}\u{205f}\u{202f}é]{0,40}") {
            let expected: Vec<String> = text.split(char::is_whitespace).filter(|w| !w.is_empty()).map(String::from).collect();
            prop_assert_eq!(words(&text), expected);
        }

        /// The fast paths (ASCII loop, one-byte array, packed keys read
        /// through a 16-byte window) count what a plain split counts.
        #[test]
        fn counts_match_an_independent_count(
            texts in proptest::collection::vec("[ab \t\n\x0b\x0cé\u{a0}\u{3000}xyz0-9]{0,40}|[a-z ]{0,80}|[a-z]{10,20}( [a-z]{1,3})?", 0..20),
        ) {
            let records: Vec<Record> = texts.iter().enumerate().map(|(i, t)| record(i as u64 + 1, t.as_bytes())).collect();
            let mut expected: BTreeMap<String, u64> = BTreeMap::new();
            for text in texts.iter().filter(|t| !t.is_empty()) {
                for word in text.split(char::is_whitespace).filter(|w| !w.is_empty()) {
                    *expected.entry(word.to_string()).or_insert(0) += 1;
                }
            }
            let batch = count_batch(&records);
            prop_assert_eq!(as_map(&batch.words), expected.clone());
            for (word, count) in &expected {
                prop_assert_eq!(batch.words.get(word), *count);
            }
            prop_assert_eq!(batch.words.total(), expected.values().sum::<u64>());
        }

        #[test]
        fn splitting_a_batch_anywhere_gives_the_same_counts(
            texts in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..12).prop_map(|mut v| { v.iter_mut().for_each(|b| if *b % 3 == 0 { *b = b' ' } else if *b % 5 == 0 { *b = b'0' + *b % 10 } ); v }), 0..30),
            cut in any::<prop::sample::Index>(),
        ) {
            let records: Vec<Record> = texts.iter().enumerate().map(|(i, t)| record(i as u64 + 1, t)).collect();
            let cut = if records.is_empty() { 0 } else { cut.index(records.len() + 1) };
            let whole = count_batch(&records);
            let (left, right) = records.split_at(cut);
            let (a, b) = (count_batch(left), count_batch(right));
            let mut summed = as_map(&a.words);
            for (word, count) in as_map(&b.words) {
                *summed.entry(word).or_insert(0) += count;
            }
            prop_assert_eq!(as_map(&whole.words), summed);
            prop_assert_eq!(whole.records_counted, a.records_counted + b.records_counted);
            prop_assert_eq!(whole.bad.len(), a.bad.len() + b.bad.len());
        }
    }
}
