//! The local DynamoDB frozen (SIGSTOP) for 10 seconds in the middle of a
//! run, on a private copy of the local AWS: the worker's writes time out
//! and are retried, it keeps its leases, and once DynamoDB answers again it
//! continues, with every record counted exactly once.

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::private_aws::{PrivateAws, pid};
use common::{expected_counts, put_records, puts_of, unique_name};
use shardwise::sink;

struct Guard(std::process::Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn signal(signal: &str, pid: u32) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill {signal} {pid}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_recovers_from_a_ten_second_dynamodb_outage() {
    if std::env::var("SHARDWISE_LOCAL_AWS").as_deref() == Ok("docker") {
        eprintln!("needs the native engines (it freezes DynamoDB Local by pid)");
        return;
    }
    let aws = PrivateAws::start();
    let clients = aws.clients().await;
    let stream = unique_name("outage");
    let counts = unique_name("outage-counts");
    shardwise::setup::ensure_stream(&clients.kinesis, &stream, 2)
        .await
        .expect("stream");
    sink::create_table_if_missing(&clients.dynamodb, &counts)
        .await
        .expect("table");
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

    let log = std::env::temp_dir().join(format!("{counts}.log"));
    let mut worker = Guard(
        Command::new(env!("CARGO_BIN_EXE_shardwise"))
            .args([
                "worker",
                "--application-name",
                &unique_name("outage-app"),
                "--stream",
                &stream,
            ])
            .args([
                "--counts-table",
                &counts,
                "--initial-position",
                "TRIM_HORIZON",
            ])
            .args([
                "--failover-time",
                "3s",
                "--checkpoint-interval",
                "1s",
                "--idle-time",
                "200ms",
            ])
            .envs(aws.env.iter().cloned())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("worker"),
    );
    let first = expected_counts(texts[..400].iter().map(Vec::as_slice));
    let start = Instant::now();
    while totals().await != first {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "first records not counted; log {}",
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // DynamoDB stops answering; records keep arriving in Kinesis.
    let dynamodb = pid(aws.dir.path(), "dynamodb");
    signal("-STOP", dynamodb);
    put_records(&clients.kinesis, &stream, &puts_of(&texts[400..], "during")).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    signal("-CONT", dynamodb);
    let resumed = Instant::now();

    let all = expected_counts(texts.iter().map(Vec::as_slice));
    while totals().await != all {
        assert!(
            resumed.elapsed() < Duration::from_secs(120),
            "not exact after the outage; log {}",
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    eprintln!(
        "figure: exact {:?} after DynamoDB answered again",
        resumed.elapsed()
    );

    signal("-TERM", worker.0.id());
    let deadline = Instant::now() + Duration::from_secs(30);
    let code = loop {
        if let Some(status) = worker.0.try_wait().expect("wait") {
            break status.code();
        }
        assert!(Instant::now() < deadline, "worker did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        code,
        Some(0),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}
