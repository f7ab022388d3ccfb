//! End to end in Lambda mode: the built binary, started with no arguments
//! the way Lambda starts it, serves a real Lambda Runtime API emulator
//! (`cargo lambda watch --only-lambda-apis`, installed pinned by
//! `scripts/install-test-tools`), and is invoked with events built from
//! records actually written to and read back from the local Kinesis stream.

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Put, expected_counts, lambda_event, local_clients, put_and_read_back, unique_name};
use shardwise::sink;

/// Kills a child process when the test ends, passed or failed.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn cargo_lambda() -> String {
    std::env::var("SHARDWISE_CARGO_LAMBDA").unwrap_or_else(|_| {
        panic!(
            "SHARDWISE_CARGO_LAMBDA is not set: run the tests with scripts/test, \
             or `eval \"$(scripts/install-test-tools)\"` first"
        )
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn wait_for_port(port: u16, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut stderr) = child.stderr.take() {
                let _ = stderr.read_to_string(&mut err);
            }
            panic!("the emulator exited ({status}) before listening: {err}");
        }
        assert!(
            Instant::now() < deadline,
            "nothing listens on port {port} after 30s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_binary_counts_events_of_real_stream_records_behind_the_runtime_api() {
    let cargo_lambda = cargo_lambda();
    let clients = local_clients().await;
    let stream = unique_name("e2e");
    let table = unique_name("e2e-counts");
    let ready = shardwise::setup::ensure_stream(&clients.kinesis, &stream, 2)
        .await
        .expect("stream");
    sink::create_table_if_missing(&clients.dynamodb, &table)
        .await
        .expect("table");

    // Write records (one of them not UTF-8), then read them back.
    let mut texts: Vec<Vec<u8>> = (0..40)
        .map(|i| format!("{} {} lambda e2e", i % 10, (i * 3) % 10).into_bytes())
        .collect();
    texts.push(b"bad \xff bytes".to_vec());
    let puts: Vec<Put> = common::puts_of(&texts, "key");
    let events: Vec<serde_json::Value> = put_and_read_back(&clients.kinesis, &stream, &puts)
        .await
        .iter()
        .map(|(shard, records)| lambda_event(&ready.arn, shard, records))
        .collect();

    // The emulator, on loopback, and the binary behind it.
    let port = free_port();
    let mut emulator = Command::new(&cargo_lambda)
        .args([
            "lambda",
            "watch",
            "--only-lambda-apis",
            "--invoke-address",
            "127.0.0.1",
        ])
        .args(["--invoke-port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cargo lambda watch");
    wait_for_port(port, &mut emulator);
    let _emulator = Running(emulator);
    let log_path = std::env::temp_dir().join(format!("{table}.log"));
    let log = std::fs::File::create(&log_path).expect("log file");
    let metrics_path = std::env::temp_dir().join(format!("{table}.stdout"));
    let function = Command::new(env!("CARGO_BIN_EXE_shardwise"))
        .env(
            "AWS_LAMBDA_RUNTIME_API",
            format!("http://127.0.0.1:{port}/.rt"),
        )
        .env("AWS_LAMBDA_FUNCTION_NAME", "_")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("SHARDWISE_COUNTS_TABLE", &table)
        .env("SHARDWISE_METRICS_NAMESPACE", &table)
        .stdout(std::fs::File::create(&metrics_path).expect("stdout file"))
        .stderr(log)
        .spawn()
        .expect("shardwise");
    let _function = Running(function);

    let invoke = |event: &serde_json::Value| -> serde_json::Value {
        let file = std::env::temp_dir().join(format!("{table}-event.json"));
        std::fs::write(&file, event.to_string()).expect("event file");
        let output = Command::new(&cargo_lambda)
            .args(["lambda", "invoke", "--invoke-address", "127.0.0.1"])
            .args(["--invoke-port", &port.to_string()])
            .arg("--data-file")
            .arg(&file)
            .output()
            .expect("cargo lambda invoke");
        assert!(
            output.status.success(),
            "invoke failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {}",
                String::from_utf8_lossy(&output.stdout)
            )
        })
    };

    let expected = expected_counts(texts.iter().map(Vec::as_slice));
    for round in ["first delivery", "redelivery"] {
        for event in &events {
            let response = invoke(event);
            assert_eq!(
                response,
                serde_json::json!({ "batchItemFailures": [] }),
                "{round}"
            );
        }
        let totals: BTreeMap<String, u64> = sink::read_totals(&clients.dynamodb, &table)
            .await
            .expect("totals")
            .into_iter()
            .collect();
        assert_eq!(totals, expected, "{round}");
    }

    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert_eq!(
        log.matches("skipped a record that cannot be counted")
            .count(),
        2,
        "the bad record is logged once per delivery: {log}"
    );
    assert!(log.contains("invalid_utf8"), "{log}");

    // Each invocation wrote its metrics (EMF, checked against the
    // specification) before answering, tagged with its request id.
    let data = common::emf::parse_all(&std::fs::read_to_string(&metrics_path).unwrap_or_default());
    assert!(data.iter().all(|d| d.namespace == table));
    assert!(
        data.iter().all(|d| d.document["RequestId"]
            .as_str()
            .is_some_and(|id| !id.is_empty())),
        "request ids"
    );
    let deliveries = 2.0;
    assert_eq!(
        common::emf::sum_where(&data, "RecordsProcessed", &[]),
        deliveries * texts.len() as f64,
        "every record of every delivery"
    );
    assert_eq!(
        common::emf::sum_where(&data, "BadRecords", &[("Reason", "invalid_utf8")]),
        deliveries,
        "the bad record, once per delivery"
    );
    assert_eq!(common::emf::sum_where(&data, "BatchItemFailures", &[]), 0.0);
    let ages: Vec<&common::emf::Datum> = data
        .iter()
        .filter(|d| d.name == "IteratorAgeMilliseconds")
        .collect();
    assert_eq!(ages.len(), 2 * events.len(), "one age per shard batch");
    assert!(
        ages.iter()
            .all(|d| d.unit.as_deref() == Some("Milliseconds"))
    );
}
