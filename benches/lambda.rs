//! The Lambda handler's CPU time for one 10 000-record batch, beside
//! Powertools for AWS Lambda (Python) `BatchProcessor` + `aws-kinesis-agg`
//! doing the same count in-process (`benches/powertools_baseline.py`), in
//! the same run:
//!
//!     eval "$(localstack/up)"; eval "$(scripts/install-test-tools)"
//!     cargo bench --bench lambda
//!
//! The batch: 10 000 plain records of the producer's text (10 random
//! digits), as a Lambda event's JSON. Two comparisons:
//! - whole invocation: from the event's JSON text to the response, parsing
//!   included on both sides (ours also decodes base64 while parsing);
//! - handler only: from the parsed event (Python: the dict its runtime
//!   hands over; ours: `KinesisEvent`, base64 already decoded).
//!
//! shardwise's handler also applies the counts to the counts table in the
//! local DynamoDB (10 conditional `UpdateItem`s, each batch under a shard
//! id of its own, so every write is a first write); the baseline only
//! counts in memory. CPU time is the process's, read from the kernel's
//! per-thread nanosecond counters (Python: `time.process_time()`).
//! Goal (issue 9): ≤ 1/20 of the baseline.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use aws_lambda_events::event::kinesis::KinesisEvent;
use base64::Engine;
use shardwise::aggregation::deaggregate_batch;
use shardwise::lambda::Handler;
use shardwise::record::Record;
use shardwise::sink::{self, CountsSink};
use shardwise::wordcount::count_batch;

const RECORDS: usize = 10_000;
const ITERATIONS: usize = 20;

/// CPU nanoseconds this process has used so far, all threads, exact to
/// the nanosecond (what Python's `time.process_time()` reads too; the
/// `/proc` counters of a running thread lag by up to a scheduler tick).
fn cpu_nanos() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec for the call's duration.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut now) };
    assert_eq!(status, 0, "clock_gettime");
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

fn event_json(shard: usize, texts: &[String]) -> String {
    let shard_id = format!("shardId-{shard:012}");
    let entries: Vec<serde_json::Value> = texts
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let sequence = format!("4956816737{i:046}");
            serde_json::json!({
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": format!("key-{}", i % 100),
                    "sequenceNumber": sequence,
                    "data": base64::engine::general_purpose::STANDARD.encode(text),
                    "approximateArrivalTimestamp": 1_764_000_000.0
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": format!("{shard_id}:{sequence}"),
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/bench",
                "awsRegion": "us-east-1",
                "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/bench"
            })
        })
        .collect();
    serde_json::json!({ "Records": entries }).to_string()
}

/// CPU seconds of the core's steps on one event, without the sink:
/// parsing, building records, de-aggregation, counting.
fn core_steps(json: &str) -> [f64; 4] {
    let t0 = cpu_nanos();
    let event: KinesisEvent = serde_json::from_str(json).expect("event");
    let t1 = cpu_nanos();
    let records: Vec<Record> = event
        .records
        .into_iter()
        .map(|r| Record::from_lambda(r).expect("a record"))
        .collect();
    let t2 = cpu_nanos();
    let (users, _) = deaggregate_batch(records);
    let t3 = cpu_nanos();
    let counts = count_batch(&users);
    let t4 = cpu_nanos();
    assert_eq!(counts.records_counted, RECORDS);
    [t0, t1, t2, t3, t4]
        .windows(2)
        .map(|w| (w[1] - w[0]) as f64 / 1e9)
        .collect::<Vec<_>>()
        .try_into()
        .expect("four steps")
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The baseline's CPU seconds per batch; its counts are checked.
fn powertools(event: &str, include_parse: bool, expected: &BTreeMap<String, u64>) -> f64 {
    let python = std::env::var("SHARDWISE_PYTHON").unwrap_or_else(|_| {
        eprintln!("SHARDWISE_PYTHON is not set: eval \"$(scripts/install-test-tools)\" first");
        std::process::exit(2)
    });
    let file = std::env::temp_dir().join(format!(
        "shardwise-lambda-bench-{}.json",
        std::process::id()
    ));
    std::fs::write(&file, event).expect("event file");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/benches/powertools_baseline.py"
    );
    let mut command = Command::new(python);
    command
        .arg(script)
        .arg(&file)
        .args(["--iterations", &ITERATIONS.to_string()]);
    if include_parse {
        command.arg("--include-parse");
    }
    let output = command.output().expect("python");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one JSON line");
    let counts: BTreeMap<String, u64> =
        serde_json::from_value(report["counts"].clone()).expect("counts");
    assert_eq!(&counts, expected, "the baseline counts the same");
    // The median is not printed by the script; its mean and min are.
    report["cpu_seconds_per_batch"].as_f64().expect("cpu")
}

fn main() {
    if std::env::var_os("AWS_ENDPOINT_URL_DYNAMODB").is_none()
        && std::env::var_os("AWS_ENDPOINT_URL").is_none()
    {
        eprintln!("no local AWS in this shell: run `eval \"$(localstack/up)\"` first");
        std::process::exit(2);
    }
    let mut rng = fastrand::Rng::with_seed(5);
    let texts: Vec<String> = (0..RECORDS)
        .map(|_| {
            (0..10)
                .map(|_| rng.u8(0..10).to_string())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    let expected = common::expected_counts(texts.iter().map(String::as_bytes));
    // One event per iteration (and one for the warm-up), each its own shard.
    let events: Vec<String> = (0..=ITERATIONS).map(|i| event_json(i, &texts)).collect();

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (whole, handler_only) = runtime.block_on(async {
        let clients = common::local_clients().await;
        let table = common::unique_name("bench-lambda");
        sink::create_table_if_missing(&clients.dynamodb, &table)
            .await
            .expect("counts table");
        let handler = Handler::new(CountsSink::new(
            clients.dynamodb.clone(),
            &table,
            32.try_into().expect("non-zero"),
        ));
        let (mut whole, mut handler_only) = (Vec::new(), Vec::new());
        for (i, json) in events.iter().enumerate() {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let before = cpu_nanos();
            let event: KinesisEvent = serde_json::from_str(json).expect("event");
            let parsed = cpu_nanos();
            let response = handler.handle(event).await.expect("handled");
            let after = cpu_nanos();
            assert!(response.batch_item_failures.is_empty());
            if i > 0 {
                whole.push((after - before) as f64 / 1e9);
                handler_only.push((after - parsed) as f64 / 1e9);
            }
        }
        let totals: BTreeMap<String, u64> = sink::read_totals(&clients.dynamodb, &table)
            .await
            .expect("totals")
            .into_iter()
            .collect();
        let batches = events.len() as u64;
        let all: BTreeMap<String, u64> = expected
            .iter()
            .map(|(w, n)| (w.clone(), n * batches))
            .collect();
        assert_eq!(totals, all, "every batch counted once");
        (median(whole), median(handler_only))
    });

    let steps: Vec<[f64; 4]> = events.iter().map(|json| core_steps(json)).collect();
    let step = |i: usize| median(steps.iter().map(|s| s[i]).collect()) * 1e3;
    let (parse, build, deaggregate, count) = (step(0), step(1), step(2), step(3));
    let base_whole = powertools(&events[0], true, &expected);
    let base_handler = powertools(&events[0], false, &expected);
    println!(
        "lambda: one {RECORDS}-record batch, whole invocation (JSON text to response): \
         shardwise {:.2} ms CPU (counts written to DynamoDB), Powertools + aws-kinesis-agg \
         {:.2} ms (counted in memory): {:.3} of the baseline, 1/{:.0} (goal <= 1/20)",
        whole * 1e3,
        base_whole * 1e3,
        whole / base_whole,
        base_whole / whole
    );
    println!(
        "lambda: handler only (event already parsed): shardwise {:.2} ms, baseline {:.2} ms: \
         {:.3} of the baseline, 1/{:.0}",
        handler_only * 1e3,
        base_handler * 1e3,
        handler_only / base_handler,
        base_handler / handler_only
    );
    println!(
        "lambda: where shardwise's time goes: JSON parse (with base64) {parse:.2} ms, building \
         records {build:.2} ms, de-aggregation check {deaggregate:.2} ms, counting {count:.2} ms; \
         the rest of the handler (grouping, 10 UpdateItems through the AWS SDK) {:.2} ms",
        handler_only * 1e3 - build - deaggregate - count
    );
}
