//! `shardwise produce` as a user runs it, against the local Kinesis: what
//! lands in the stream is exactly what it reports, aggregated or not, and
//! records that Kinesis refuses are resent until written, never duplicated.

mod common;

use std::collections::BTreeMap;
use std::process::Output;

use common::fault_proxy::{FaultProxy, Faults};
use common::{expected_counts, local_clients, read_all, unique_name};
use shardwise::aggregation;

#[derive(serde::Deserialize)]
struct Report {
    user_records: u64,
    kinesis_records: u64,
    retried_records: u64,
    unsent_user_records: u64,
    totals: BTreeMap<String, u64>,
}

/// Runs the binary with `args`; `kinesis_endpoint` overrides where it
/// sends Kinesis calls.
async fn produce(args: &[&str], kinesis_endpoint: Option<&str>) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_shardwise"));
    command.arg("produce").args(args);
    if let Some(url) = kinesis_endpoint {
        command.env("AWS_ENDPOINT_URL_KINESIS", url);
    }
    command.output().await.expect("shardwise produce")
}

fn report(path: &std::path::Path) -> Report {
    serde_json::from_str(&std::fs::read_to_string(path).expect("report")).expect("json")
}

/// The stream's records, de-aggregated: (Kinesis records, user texts).
async fn stream_contents(stream: &str) -> (usize, Vec<Vec<u8>>) {
    let clients = local_clients().await;
    let mut kinesis_records = 0;
    let mut texts = Vec::new();
    for (_, records) in read_all(&clients.kinesis, stream).await {
        for record in records {
            kinesis_records += 1;
            let data = record.data().as_ref().to_vec();
            if aggregation::is_aggregated(&data) {
                let message = aggregation::decode(&data).expect("a valid aggregate");
                texts.extend(message.records.into_iter().map(|u| u.data.to_vec()));
            } else {
                texts.push(data);
            }
        }
    }
    (kinesis_records, texts)
}

#[tokio::test]
async fn the_stream_holds_exactly_what_the_producer_reports() {
    let stream = unique_name("produce");
    let json = tempfile::NamedTempFile::new().expect("temp file");
    let out = produce(
        &[
            "--stream",
            &stream,
            "--create-stream",
            "2",
            "--records",
            "300",
            "--rate",
            "2000",
            "--partition-keys",
            "8",
            "--seed",
            "1",
            "--totals-json",
            &json.path().to_string_lossy(),
        ],
        None,
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("produced 300 records (300 Kinesis records), 3000 words"),
        "{stdout}"
    );
    let report = report(json.path());
    assert_eq!(
        (
            report.user_records,
            report.kinesis_records,
            report.unsent_user_records
        ),
        (300, 300, 0)
    );
    let (kinesis_records, texts) = stream_contents(&stream).await;
    assert_eq!(kinesis_records, 300);
    assert_eq!(
        expected_counts(texts.iter().map(Vec::as_slice)),
        report.totals
    );
    assert_eq!(report.totals.len(), 10, "the digits 0-9");
    assert!(
        texts.iter().all(|t| t.split(|b| *b == b' ').count() == 10),
        "10 words a record"
    );
}

#[tokio::test]
async fn aggregated_records_de_aggregate_to_what_the_producer_reports() {
    let stream = unique_name("produce-agg");
    let json = tempfile::NamedTempFile::new().expect("temp file");
    let out = produce(
        &[
            "--stream",
            &stream,
            "--create-stream",
            "1",
            "--records",
            "3000",
            "--rate",
            "10000",
            "--aggregate",
            "--totals-json",
            &json.path().to_string_lossy(),
        ],
        None,
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = report(json.path());
    assert_eq!(report.user_records, 3000);
    let (kinesis_records, texts) = stream_contents(&stream).await;
    assert_eq!(kinesis_records as u64, report.kinesis_records);
    assert!(
        kinesis_records < 100,
        "3000 user records in {kinesis_records} Kinesis records"
    );
    assert_eq!(texts.len(), 3000);
    assert_eq!(
        expected_counts(texts.iter().map(Vec::as_slice)),
        report.totals
    );
}

#[tokio::test]
async fn refused_records_are_resent_until_written_and_never_duplicated() {
    let clients = local_clients().await;
    let stream = unique_name("produce-faults");
    shardwise::setup::ensure_stream(&clients.kinesis, &stream, 2)
        .await
        .expect("stream");
    let upstream = std::env::var("AWS_ENDPOINT_URL_KINESIS").expect("local Kinesis");
    // Every 7th entry refused: 700 records and their resends make 816
    // entries, so 116 refusals (some of them of a resent record again).
    let proxy = FaultProxy::start(&upstream, Faults::put_records(7, 1000)).await;
    let json = tempfile::NamedTempFile::new().expect("temp file");
    let out = produce(
        &[
            "--stream",
            &stream,
            "--records",
            "700",
            "--rate",
            "5000",
            "--totals-json",
            &json.path().to_string_lossy(),
        ],
        Some(&proxy.url),
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let injected = proxy.injected.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(injected, 116, "the proxy refused every 7th entry");
    let report = report(json.path());
    assert_eq!(report.user_records, 700);
    assert_eq!(
        report.retried_records, injected,
        "each refused record resent once more"
    );
    let (kinesis_records, texts) = stream_contents(&stream).await;
    assert_eq!(kinesis_records, 700, "nothing lost, nothing written twice");
    assert_eq!(
        expected_counts(texts.iter().map(Vec::as_slice)),
        report.totals
    );
}

#[tokio::test]
async fn an_unknown_stream_is_a_clear_error() {
    let stream = unique_name("no-such-stream");
    let out = produce(&["--stream", &stream, "--records", "5"], None).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("could not put records into stream \"{stream}\"")),
        "{stderr}"
    );
    assert!(
        stderr.contains("ResourceNotFoundException") || stderr.contains("not found"),
        "{stderr}"
    );
}

/// The demo's path in small: the producer's report, `counts --expect`
/// before any consumer ran (a clear "DIFFERENT" verdict, exit 1), then a
/// worker, then the "EXACT" verdict (exit 0).
#[tokio::test(flavor = "multi_thread")]
async fn counts_expect_gives_the_verdict_on_the_producers_report() {
    let stream = unique_name("verdict");
    let counts = unique_name("verdict-counts");
    let clients = local_clients().await;
    shardwise::sink::create_table_if_missing(&clients.dynamodb, &counts)
        .await
        .expect("table");
    let json = tempfile::NamedTempFile::new().expect("temp file");
    let report_path = json.path().to_string_lossy().to_string();
    let out = produce(
        &[
            "--stream",
            &stream,
            "--create-stream",
            "2",
            "--records",
            "400",
            "--rate",
            "4000",
            "--aggregate",
            "--totals-json",
            &report_path,
        ],
        None,
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let verdict = |wait: &'static str| {
        let (counts, report_path) = (counts.clone(), report_path.clone());
        async move {
            tokio::process::Command::new(env!("CARGO_BIN_EXE_shardwise"))
                .args([
                    "counts",
                    "--counts-table",
                    &counts,
                    "--expect",
                    &report_path,
                    "--wait",
                    wait,
                ])
                .output()
                .await
                .expect("counts --expect")
        }
    };
    let before = verdict("1s").await;
    assert_eq!(before.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&before.stdout);
    assert!(stdout.starts_with("verdict: DIFFERENT"), "{stdout}");
    assert!(stdout.contains("counted 0"), "{stdout}");

    let app = unique_name("verdict-app");
    let worker = common::worker_process::WorkerProcess::start(&app, &stream, &counts, &[], &[]);
    let after = verdict("60s").await;
    drop(worker);
    let stdout = String::from_utf8_lossy(&after.stdout);
    assert_eq!(after.status.code(), Some(0), "{stdout}");
    assert!(stdout.starts_with("verdict: EXACT"), "{stdout}");
    assert!(stdout.contains("400 records, 4000 words"), "{stdout}");
}
