//! A worker reading through the project's fault-injecting proxy: every
//! third GetRecords call fails, in turn throttled, with an expired
//! iterator, with a 500, and with the connection dropped. The worker backs
//! off, re-acquires expired iterators from its last applied position, and
//! still counts every record exactly once and checkpoints every shard at
//! its end.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::fault_proxy::{FaultProxy, Faults};
use common::{expected_counts, local_clients, put_and_read_back, puts_of, unique_name};
use shardwise::sink;
use shardwise::worker::lease::LeaseTable;

/// Kills the worker when the test ends, passed or failed.
struct Guard(std::process::Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_rides_out_throttling_expired_iterators_500s_and_dropped_connections() {
    let clients = local_clients().await;
    let stream = unique_name("faults");
    let counts = unique_name("faults-counts");
    let app = unique_name("faults-app");
    shardwise::setup::ensure_stream(&clients.kinesis, &stream, 2)
        .await
        .expect("stream");
    sink::create_table_if_missing(&clients.dynamodb, &counts)
        .await
        .expect("table");
    let texts: Vec<Vec<u8>> = (0..1000)
        .map(|i| format!("{} {} fault{}", i % 10, (i * 3) % 10, i % 7).into_bytes())
        .collect();
    let last: HashMap<String, String> =
        put_and_read_back(&clients.kinesis, &stream, &puts_of(&texts, "key"))
            .await
            .into_iter()
            .map(|(shard, records)| {
                (
                    shard,
                    records
                        .last()
                        .map(|r| r.sequence_number().to_string())
                        .unwrap_or_default(),
                )
            })
            .collect();
    let expected = expected_counts(texts.iter().map(Vec::as_slice));

    let upstream = std::env::var("AWS_ENDPOINT_URL_KINESIS").expect("local Kinesis");
    let faults = Faults {
        fail_every: 0,
        budget: 40,
        get_records_fault_every: 3,
    };
    let proxy = FaultProxy::start(&upstream, faults).await;
    let log = std::env::temp_dir().join(format!("{app}.log"));
    let mut worker = Guard(
        Command::new(env!("CARGO_BIN_EXE_shardwise"))
            .args([
                "worker",
                "--application-name",
                &app,
                "--stream",
                &stream,
                "--counts-table",
                &counts,
            ])
            .args([
                "--initial-position",
                "TRIM_HORIZON",
                "--max-records",
                "50",
                "--idle-time",
                "200ms",
            ])
            .args(["--checkpoint-interval", "1s", "--failover-time", "3s"])
            .env("AWS_ENDPOINT_URL_KINESIS", &proxy.url)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("worker"),
    );

    let table = LeaseTable::new(clients.dynamodb.clone(), &app);
    let start = Instant::now();
    loop {
        let totals: BTreeMap<String, u64> = sink::read_totals(&clients.dynamodb, &counts)
            .await
            .unwrap_or_default()
            .into_iter()
            .collect();
        let leases = table.list().await.unwrap_or_default();
        let checkpointed = leases.len() == 2
            && leases
                .iter()
                .all(|l| last.get(&l.key).is_some_and(|s| *s == l.checkpoint));
        if totals == expected && checkpointed {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "not exact within 120s (counted {} of {} words); log: {}",
            totals.values().sum::<u64>(),
            expected.values().sum::<u64>(),
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let injected: Vec<u64> = proxy
        .get_records_faults
        .iter()
        .map(|n| n.load(Ordering::SeqCst))
        .collect();
    eprintln!(
        "figure: GetRecords faults injected (throttled, expired, 500, dropped): {injected:?}; exact after {:?}",
        start.elapsed()
    );
    assert!(
        injected.iter().all(|n| *n > 0),
        "every kind of fault was injected: {injected:?}"
    );
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.contains("shard iterator expired; re-acquiring"),
        "{text}"
    );

    let status = Command::new("kill")
        .args(["-TERM", &worker.0.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let code = loop {
        if let Some(status) = worker.0.try_wait().expect("wait") {
            break status.code();
        }
        assert!(Instant::now() < deadline, "worker did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(code, Some(0));
}
