//! The local DynamoDB frozen (SIGSTOP) for 10 seconds in the middle of a
//! run, on a private copy of the local AWS: the worker's writes time out
//! and are retried, it keeps its leases, and once DynamoDB answers again it
//! continues, with every record counted exactly once.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::private_aws::{PrivateAws, pid};
use common::worker_process::{WorkerProcess, send_signal};
use common::{expected_counts, put_records, puts_of, unique_name, until};
use shardwise::sink;

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_recovers_from_a_ten_second_dynamodb_outage() {
    if std::env::var("SHARDWISE_LOCAL_AWS").as_deref() == Ok("docker") {
        eprintln!("needs the native engines (it freezes DynamoDB Local by pid)");
        return;
    }
    let aws = PrivateAws::start();
    let clients = aws.clients().await;
    let (stream, counts) = common::new_stream_and_counts(&clients, "outage", 2).await;
    let totals = || async {
        sink::read_totals(&clients.dynamodb, &counts)
            .await
            .unwrap_or_default()
            .into_iter()
            .collect::<BTreeMap<String, u64>>()
    };
    let texts: Vec<Vec<u8>> = (0..800)
        .map(|i| format!("{} {} out{}", i % 10, (i * 7) % 10, i % 5).into_bytes())
        .collect();
    put_records(&clients.kinesis, &stream, &puts_of(&texts[..400], "before")).await;

    let app = unique_name("outage-app");
    let mut worker = WorkerProcess::start(
        &app,
        &stream,
        &counts,
        &[
            "--failover-time",
            "3s",
            "--checkpoint-interval",
            "1s",
            "--idle-time",
            "200ms",
        ],
        &aws.env,
    );
    let first = expected_counts(texts[..400].iter().map(Vec::as_slice));
    until(
        "the first records counted",
        Duration::from_secs(60),
        || async { totals().await == first },
    )
    .await;

    // DynamoDB stops answering; records keep arriving in Kinesis.
    let dynamodb = pid(aws.dir.path(), "dynamodb");
    send_signal("-STOP", dynamodb);
    put_records(&clients.kinesis, &stream, &puts_of(&texts[400..], "during")).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    send_signal("-CONT", dynamodb);
    let all = expected_counts(texts.iter().map(Vec::as_slice));
    let recovered = until(
        "exact counts after the outage",
        Duration::from_secs(120),
        || async { totals().await == all },
    )
    .await;
    eprintln!("figure: exact {recovered:?} after DynamoDB answered again");

    assert_eq!(worker.stop(), Some(0), "{}", worker.log());
}
