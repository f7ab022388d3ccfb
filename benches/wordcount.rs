//! The word-count core beside a naive baseline on the same inputs:
//! `split_whitespace` + `HashMap<String, u64>`, one allocation per word.
//! Prints throughput of both and their ratio, measured in the same run
//! (the machines are shared and noisy: the ratio is the figure to trust).
//!
//!     cargo bench --bench wordcount
//!
//! Inputs, generated with a fixed seed:
//! (a) the producer's text: records of 10 random digits `0`–`9`;
//! (b) records of 10–30 words drawn from a Zipf (s = 1) distribution over a
//!     vocabulary of 100 000 words whose lengths follow English (mean ~5).
//! Goals (issue 4): (a) ≥ 10×, (b) ≥ 4×.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use shardwise::record::{Position, Record, SequenceNumber, ShardId};
use shardwise::wordcount::count_batch;

const BATCH_RECORDS: usize = 10_000;
const ROUNDS: usize = 7;

fn record(i: usize, data: Vec<u8>) -> Record {
    Record {
        stream: "bench".into(),
        shard_id: ShardId::new("shardId-000000000000"),
        position: Position::new(
            SequenceNumber::parse(&format!("4956816737{i:046}")).expect("sequence"),
            0,
        ),
        partition_key: "k".into(),
        arrival: None,
        data,
    }
}

fn producer_text(rng: &mut fastrand::Rng, records: usize) -> Vec<Record> {
    (0..records)
        .map(|i| {
            let words: Vec<String> = (0..10).map(|_| rng.u8(0..10).to_string()).collect();
            record(i, words.join(" ").into_bytes())
        })
        .collect()
}

fn zipf_text(rng: &mut fastrand::Rng, records: usize) -> Vec<Record> {
    // Word lengths roughly as in English text (1..=14 letters, mean ~5).
    const LENGTH_WEIGHTS: [u32; 14] = [3, 17, 20, 16, 12, 9, 7, 5, 4, 3, 2, 1, 1, 1];
    let total_weight: u32 = LENGTH_WEIGHTS.iter().sum();
    let vocabulary: Vec<String> = (0..100_000)
        .map(|_| {
            let mut pick = rng.u32(0..total_weight);
            let mut len = 1;
            for (i, w) in LENGTH_WEIGHTS.iter().enumerate() {
                if pick < *w {
                    len = i + 1;
                    break;
                }
                pick -= w;
            }
            (0..len).map(|_| rng.lowercase()).collect()
        })
        .collect();
    let mut cdf = Vec::with_capacity(vocabulary.len());
    let mut sum = 0.0;
    for rank in 1..=vocabulary.len() {
        sum += 1.0 / rank as f64;
        cdf.push(sum);
    }
    (0..records)
        .map(|i| {
            let n = rng.usize(10..=30);
            let words: Vec<&str> = (0..n)
                .map(|_| {
                    let x = rng.f64() * sum;
                    let rank = cdf.partition_point(|c| *c < x).min(vocabulary.len() - 1);
                    vocabulary[rank].as_str()
                })
                .collect();
            record(i, words.join(" ").into_bytes())
        })
        .collect()
}

fn naive(records: &[Record]) -> HashMap<String, u64> {
    let mut counts = HashMap::new();
    for record in records {
        if let Ok(text) = std::str::from_utf8(&record.data) {
            for word in text.split_whitespace() {
                *counts.entry(word.to_string()).or_insert(0) += 1;
            }
        }
    }
    counts
}

fn shardwise_core(records: &[Record]) -> usize {
    let mut distinct = 0;
    for batch in records.chunks(BATCH_RECORDS) {
        distinct += count_batch(batch).words.distinct();
    }
    distinct
}

fn naive_batched(records: &[Record]) -> usize {
    records.chunks(BATCH_RECORDS).map(|b| naive(b).len()).sum()
}

/// Best of `ROUNDS` runs, alternating the two so that noise hits both.
fn race(records: &[Record]) -> (Duration, Duration) {
    let mut best = (Duration::MAX, Duration::MAX);
    for _ in 0..ROUNDS {
        let start = Instant::now();
        black_box(naive_batched(black_box(records)));
        best.0 = best.0.min(start.elapsed());
        let start = Instant::now();
        black_box(shardwise_core(black_box(records)));
        best.1 = best.1.min(start.elapsed());
    }
    best
}

fn check_same_counts(records: &[Record]) {
    let expected = naive(records);
    let ours = count_batch(records);
    assert_eq!(
        ours.words.distinct(),
        expected.len(),
        "distinct words differ"
    );
    for (word, count) in &expected {
        assert_eq!(ours.words.get(word), *count, "count of {word:?} differs");
    }
}

fn report(name: &str, goal: f64, records: &[Record]) {
    check_same_counts(records);
    let bytes: usize = records.iter().map(|r| r.data.len()).sum();
    let (baseline, ours) = race(records);
    let mbps = |d: Duration| bytes as f64 / d.as_secs_f64() / 1e6;
    let ratio = baseline.as_secs_f64() / ours.as_secs_f64();
    println!(
        "{name}: {} records, {:.1} MB | baseline {:>7.1} MB/s | shardwise {:>7.1} MB/s | ratio {:>5.1}x (goal >= {goal}x) {}",
        records.len(),
        bytes as f64 / 1e6,
        mbps(baseline),
        mbps(ours),
        ratio,
        if ratio >= goal { "ok" } else { "BELOW GOAL" }
    );
}

fn main() {
    // `cargo test --benches` runs this with no filter: keep that short.
    let quick = std::env::args().any(|a| a == "--test");
    let records = if quick { 2_000 } else { 200_000 };
    let mut rng = fastrand::Rng::with_seed(7);
    report(
        "(a) producer digits",
        10.0,
        &producer_text(&mut rng, records),
    );
    report("(b) zipf vocabulary", 4.0, &zipf_text(&mut rng, records));
}
