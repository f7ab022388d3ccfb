//! KPL de-aggregation speed: user records a second decoded by shardwise
//! beside awslabs' `aws-kinesis-agg` (Python, PyPI 1.2.3) decoding the same
//! aggregate, in the same run.
//!
//!     eval "$(scripts/install-test-tools)"   # the Python baseline
//!     cargo bench --bench aggregation
//!
//! The aggregate: one full 1 MiB Kinesis record of the producer's user
//! records (10 random digits each, 20 partition keys). shardwise's figure is
//! `deaggregate` on the record: MD5 check, protobuf decode, and one `Record`
//! per user record (its data a slice of the aggregate's bytes). The baseline is
//! `deaggregate_records` on the record in the Lambda event shape it takes
//! (base64 data), which also base64-encodes each user record it returns.
//! Goal (issue 5): ≥ 10 million user records a second on one core.

use std::hint::black_box;
use std::process::Command;
use std::time::{Duration, Instant};

use shardwise::aggregation::{self, UserRecord};
use shardwise::record::{Position, Record, SequenceNumber, ShardId};

const ROUNDS: usize = 7;

fn main() {
    let quick = std::env::args().any(|a| a == "--test");
    let mut rng = fastrand::Rng::with_seed(11);
    let users = (0..200_000).map(|i| UserRecord {
        partition_key: format!("key-{}", i % 20),
        explicit_hash_key: None,
        data: (0..10)
            .map(|_| rng.u8(0..10).to_string())
            .collect::<Vec<_>>()
            .join(" ")
            .into_bytes(),
    });
    let first = aggregation::aggregate_all(users, aggregation::MAX_RECORD_BYTES)
        .into_iter()
        .next()
        .expect("an aggregate");
    let record = Record {
        stream: "bench".into(),
        shard_id: ShardId::new("shardId-000000000000"),
        position: Position::new(
            SequenceNumber::parse("49568167373333333333333333333333333333333333333333333333")
                .expect("sequence"),
            0,
        ),
        partition_key: first.partition_key.as_str().into(),
        arrival: None,
        data: bytes::Bytes::from(first.data.clone()),
    };
    let per_record = first.user_records;
    let passes = if quick { 1 } else { 20 };
    let mut best = Duration::MAX;
    for _ in 0..ROUNDS {
        let start = Instant::now();
        for _ in 0..passes {
            let users = aggregation::deaggregate(black_box(record.clone())).expect("valid");
            assert_eq!(users.len(), per_record);
            black_box(users);
        }
        best = best.min(start.elapsed());
    }
    let ours = (per_record * passes) as f64 / best.as_secs_f64();
    println!(
        "aggregate of {:.0} KiB, {per_record} user records | shardwise {:>12.0} user records/s (goal >= 10 000 000: {})",
        first.data.len() as f64 / 1024.0,
        ours,
        if ours >= 1e7 { "met" } else { "NOT MET" }
    );

    match python_baseline(&first.data, &first.partition_key, per_record, quick) {
        Ok(theirs) => println!(
            "aws-kinesis-agg (Python) {theirs:>12.0} user records/s | ratio {:.0}x",
            ours / theirs
        ),
        Err(why) => println!("aws-kinesis-agg baseline not run: {why}"),
    }
}

/// Times aws-kinesis-agg on the same aggregate; user records a second.
fn python_baseline(
    blob: &[u8],
    partition_key: &str,
    expected: usize,
    quick: bool,
) -> Result<f64, String> {
    let python = std::env::var("SHARDWISE_PYTHON").map_err(|_| {
        "SHARDWISE_PYTHON is not set: eval \"$(scripts/install-test-tools)\" first".to_string()
    })?;
    let file = std::env::temp_dir().join(format!("shardwise-agg-bench-{}.bin", std::process::id()));
    std::fs::write(&file, blob).map_err(|e| e.to_string())?;
    let script = r#"
import base64, sys, time
from aws_kinesis_agg.deaggregator import deaggregate_records
blob = open(sys.argv[1], 'rb').read()
record = {'kinesis': {'kinesisSchemaVersion': '1.0', 'partitionKey': sys.argv[2],
          'sequenceNumber': '49568167373333333333333333333333333333333333333333333333',
          'data': base64.b64encode(blob).decode(), 'approximateArrivalTimestamp': 1764000000.0},
          'eventSource': 'aws:kinesis', 'eventID': 'shardId-000000000000:4956'}
rounds = int(sys.argv[3])
best = None
for _ in range(rounds):
    start = time.perf_counter()
    users = deaggregate_records([record])
    elapsed = time.perf_counter() - start
    best = elapsed if best is None else min(best, elapsed)
print(len(users), best)
"#;
    let rounds = if quick { "1" } else { "5" };
    let output = Command::new(&python)
        .args(["-c", script])
        .arg(&file)
        .arg(partition_key)
        .arg(rounds)
        .output()
        .map_err(|e| format!("{python}: {e}"))?;
    let _ = std::fs::remove_file(&file);
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let mut fields = text.split_whitespace();
    let users: usize = fields
        .next()
        .and_then(|f| f.parse().ok())
        .ok_or("no count")?;
    let seconds: f64 = fields
        .next()
        .and_then(|f| f.parse().ok())
        .ok_or("no time")?;
    if users != expected {
        return Err(format!(
            "aws-kinesis-agg decoded {users} user records, expected {expected}"
        ));
    }
    Ok(users as f64 / seconds)
}
