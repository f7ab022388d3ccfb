//! What an operator sees: a worker's metrics as CloudWatch EMF documents on
//! stdout (each one checked against the specification, the per-shard
//! record totals equal to what was produced, a poisoned record counted
//! once), its JSON logs carrying the same shard and worker ids, the
//! Prometheus endpoint scraped during a run, and metrics settings that
//! cannot work refused up front.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::Duration;

use common::emf::{self, parse_all, parse_line, sum_by, sum_where};
use common::worker_process::WorkerProcess;
use common::{Put, expected_counts, local_clients, put_and_read_back, unique_name, until};
use shardwise::aggregation::{self, UserRecord};
use shardwise::aws::Clients;
use shardwise::sink;

#[test]
fn the_emf_checker_refuses_what_the_specification_refuses() {
    let good = r#"{"_aws":{"Timestamp":1795582361249,"CloudWatchMetrics":[{"Namespace":"n","Dimensions":[["ShardId"]],"Metrics":[{"Name":"R","Unit":"Count"}]}]},"ShardId":"s","R":3}"#;
    assert_eq!(parse_line(good).expect("valid")[0].values, vec![3.0]);
    for (bad, why) in [
        (good.replace("\"ShardId\":\"s\",", ""), "dimension"),
        (good.replace(",\"R\":3", ""), "no numeric value"),
        (
            good.replace("\"Count\"", "\"Things\""),
            "not a CloudWatch unit",
        ),
        (good.replace("1795582361249", "1795582361"), "milliseconds"),
        (good.replace("\"Namespace\":\"n\",", ""), "Namespace"),
    ] {
        let error = parse_line(&bad).expect_err(why);
        assert!(error.contains(why), "{error} / {why}");
    }
}

struct Run {
    clients: Clients,
    stream: String,
    counts: String,
    app: String,
    /// User records per shard, as written.
    per_shard: BTreeMap<String, f64>,
    expected: BTreeMap<String, u64>,
}

/// Two shards holding plain records, KPL aggregates and one record that
/// is not UTF-8.
async fn stream_with_mixed_records() -> Run {
    let clients = local_clients().await;
    let stream = unique_name("metrics");
    let counts = unique_name("metrics-counts");
    shardwise::setup::ensure_stream(&clients.kinesis, &stream, 2)
        .await
        .expect("stream");
    sink::create_table_if_missing(&clients.dynamodb, &counts)
        .await
        .expect("counts table");
    let plain: Vec<Vec<u8>> = (0..300)
        .map(|i| format!("{} plain {}", i % 10, i % 7).into_bytes())
        .collect();
    let users: Vec<Vec<u8>> = (0..200)
        .map(|i| format!("{} packed", i % 5).into_bytes())
        .collect();
    let mut puts = common::puts_of(&plain, "plain");
    puts.extend(
        aggregation::aggregate_all(
            users.iter().enumerate().map(|(i, data)| UserRecord {
                partition_key: format!("user-{i}"),
                explicit_hash_key: None,
                data: data.clone(),
            }),
            2 * 1024,
        )
        .into_iter()
        .map(|a| Put {
            partition_key: a.partition_key,
            explicit_hash_key: a.explicit_hash_key,
            data: a.data,
        }),
    );
    puts.push(Put {
        partition_key: "poison".into(),
        explicit_hash_key: None,
        data: b"not \xff utf-8".to_vec(),
    });
    let read = put_and_read_back(&clients.kinesis, &stream, &puts).await;
    let per_shard = read
        .iter()
        .map(|(shard, records)| {
            let users: usize = records
                .iter()
                .map(|r| match aggregation::decode(r.data().as_ref()) {
                    Ok(aggregate) if aggregation::is_aggregated(r.data().as_ref()) => {
                        aggregate.records.len()
                    }
                    _ => 1,
                })
                .sum();
            (shard.clone(), users as f64)
        })
        .collect();
    let expected = expected_counts(plain.iter().chain(users.iter()).map(Vec::as_slice));
    Run {
        clients,
        stream,
        counts,
        app: unique_name("metrics-app"),
        per_shard,
        expected,
    }
}

async fn until_counted(run: &Run) {
    until("exact counts", Duration::from_secs(60), || async {
        sink::read_totals(&run.clients.dynamodb, &run.counts)
            .await
            .unwrap_or_default()
            .into_iter()
            .collect::<BTreeMap<_, _>>()
            == run.expected
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_workers_emf_metrics_add_up_to_what_was_produced() {
    let run = stream_with_mixed_records().await;
    let mut worker = WorkerProcess::start(
        &run.app,
        &run.stream,
        &run.counts,
        &[
            "--worker-id",
            "metered",
            "--metrics-interval",
            "1s",
            "--checkpoint-interval",
            "1s",
            "--log-format",
            "json",
        ],
        &[],
    );
    until_counted(&run).await;
    // The checkpoints (logged and counted) follow the counts.
    until(
        "every shard checkpointed",
        Duration::from_secs(30),
        || async { worker.log().matches("\"checkpointed\"").count() >= run.per_shard.len() },
    )
    .await;
    assert_eq!(worker.stop(), Some(0), "{}", worker.log());

    let data = parse_all(&worker.stdout());
    assert!(
        data.iter().all(|d| d.namespace == run.app),
        "namespace: the application name"
    );
    assert_eq!(
        sum_by(&data, "RecordsProcessed", "ShardId"),
        run.per_shard,
        "per-shard records processed = user records produced"
    );
    assert_eq!(sum_where(&data, "UserRecordsDeaggregated", &[]), 200.0);
    assert_eq!(
        sum_where(&data, "BadRecords", &[("Reason", "invalid_utf8")]),
        1.0
    );
    assert_eq!(sum_where(&data, "BadRecords", &[]), 1.0, "reported once");
    assert_eq!(
        sum_where(&data, "LeasesTaken", &[("WorkerId", "metered")]),
        2.0
    );
    assert_eq!(sum_where(&data, "LeasesReleased", &[]), 2.0);
    for shard in run.per_shard.keys() {
        assert!(
            sum_where(&data, "CheckpointsWritten", &[("ShardId", shard)]) >= 1.0,
            "{shard} checkpointed"
        );
        let lag: Vec<&emf::Datum> = data
            .iter()
            .filter(|d| {
                d.name == "MillisBehindLatest" && d.dimensions.get("ShardId") == Some(shard)
            })
            .collect();
        assert!(!lag.is_empty(), "{shard} lag");
        assert!(
            lag.iter()
                .all(|d| d.unit.as_deref() == Some("Milliseconds"))
        );
    }
    let bytes = sum_where(&data, "DataBytesProcessed", &[]);
    assert!(bytes > 0.0);
    assert!(
        data.iter()
            .filter(|d| d.name == "DataBytesProcessed")
            .all(|d| d.unit.as_deref() == Some("Bytes"))
    );

    // JSON logs carry the ids the metrics carry, and sequence numbers.
    let log = worker.log();
    let checkpointed: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["message"] == "checkpointed")
        .collect();
    assert!(!checkpointed.is_empty(), "{log}");
    for line in &checkpointed {
        assert_eq!(line["span"]["worker_id"], "metered", "{line}");
        let shard = line["span"]["shard_id"].as_str().expect("shard_id");
        assert!(run.per_shard.contains_key(shard), "{line}");
        assert!(
            line["sequence"].as_str().is_some_and(|s| !s.is_empty()),
            "{line}"
        );
        assert!(line["millis_behind_latest"].is_u64(), "{line}");
    }
    let bad: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["reason"] == "invalid_utf8")
        .collect();
    assert_eq!(bad.len(), 1, "{log}");
    assert!(bad[0]["shard_id"].is_string() && bad[0]["sequence_number"].is_string());
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// GET /metrics, plain HTTP/1.1.
fn scrape(port: u16) -> Option<String> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_prometheus_endpoint_shows_lag_per_shard_and_leases_held_during_a_run() {
    let run = stream_with_mixed_records().await;
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut worker = WorkerProcess::start(
        &run.app,
        &run.stream,
        &run.counts,
        &["--worker-id", "scraped", "--metrics-addr", &addr],
        &[],
    );
    until_counted(&run).await;
    let mut page = String::new();
    until(
        "lag of both shards and leases held on the endpoint",
        Duration::from_secs(30),
        || {
            page = scrape(port).unwrap_or_default();
            let ok = page.contains("LeasesHeld{WorkerId=\"scraped\"} 2")
                && run.per_shard.keys().all(|shard| {
                    page.contains(&format!("MillisBehindLatest{{ShardId=\"{shard}\""))
                        && page.contains(&format!("RecordsProcessed{{ShardId=\"{shard}\"}}"))
                });
            async move { ok }
        },
    )
    .await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(
        worker.stdout().is_empty(),
        "no EMF when Prometheus is chosen"
    );
    assert_eq!(worker.stop(), Some(0), "{}", worker.log());
}

async fn worker_output(args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_shardwise"))
        .args(["worker", "--application-name", "app", "--stream", "s"])
        .args(args)
        .env_remove("AWS_ENDPOINT_URL_KINESIS")
        .env_remove("AWS_ENDPOINT_URL_DYNAMODB")
        .env_remove("AWS_REGION")
        .output()
        .await
        .expect("shardwise worker")
}

#[tokio::test]
async fn metrics_settings_that_cannot_work_are_refused_up_front() {
    for (args, message) in [
        (
            &["--metrics", "prometheus"][..],
            "--metrics prometheus needs --metrics-addr",
        ),
        (
            &["--metrics", "emf", "--metrics-addr", "127.0.0.1:9464"][..],
            "--metrics-addr serves Prometheus metrics",
        ),
        (
            &["--metrics-interval", "0s"][..],
            "--metrics-interval must be longer than zero",
        ),
    ] {
        let out = worker_output(args).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
    let out = worker_output(&["--metrics", "statsd"]).await;
    assert_eq!(out.status.code(), Some(2), "usage error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("statsd"));

    // A taken port: named, with the remedy, before any work.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let out = worker_output(&["--metrics-addr", &addr]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("could not serve Prometheus metrics on {addr}")),
        "{stderr}"
    );
}
