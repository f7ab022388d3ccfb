//! A worker refuses settings that cannot work, before doing any work: a
//! clear message naming the culprit and the remedy, and a non-zero exit.

mod common;

use std::process::Output;
use std::time::Duration;

use common::fault_proxy::{FaultProxy, Faults};

use aws_sdk_dynamodb::types::AttributeValue;
use common::{local_clients, unique_name};
use shardwise::worker::lease::LeaseTable;

async fn worker(args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_shardwise"))
        .arg("worker")
        .args(args)
        .output()
        .await
        .expect("shardwise worker")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn an_unknown_stream_is_named_with_the_remedy() {
    let stream = unique_name("missing");
    let out = worker(&[
        "--application-name",
        &unique_name("app"),
        "--stream",
        &stream,
    ])
    .await;
    assert_eq!(out.status.code(), Some(1));
    let text = stderr(&out);
    assert!(
        text.contains(&format!("stream \"{stream}\" not found")),
        "{text}"
    );
    assert!(text.contains("shardwise setup --stream"), "{text}");
}

#[tokio::test]
async fn a_lease_table_of_another_stream_is_refused() {
    let clients = local_clients().await;
    let stream = unique_name("mine");
    shardwise::setup::ensure_stream(&clients.kinesis, &stream, 1)
        .await
        .expect("stream");
    let app = unique_name("app");
    LeaseTable::new(clients.dynamodb.clone(), &app)
        .create_if_missing()
        .await
        .expect("table");
    clients
        .dynamodb
        .put_item()
        .table_name(&app)
        .item("leaseKey", AttributeValue::S("shardId-000000000000".into()))
        .item("leaseCounter", AttributeValue::N("3".into()))
        .item("checkpoint", AttributeValue::S("TRIM_HORIZON".into()))
        .item(
            "shardwiseStream",
            AttributeValue::S("renamed-old-stream".into()),
        )
        .send()
        .await
        .expect("lease");
    let out = worker(&["--application-name", &app, "--stream", &stream]).await;
    assert_eq!(out.status.code(), Some(1));
    let text = stderr(&out);
    assert!(
        text.contains(&format!(
            "lease table \"{app}\" belongs to stream \"renamed-old-stream\""
        )),
        "{text}"
    );
    assert!(text.contains("use another --application-name"), "{text}");
}

#[tokio::test]
async fn impossible_timings_are_refused_before_any_aws_call() {
    // No endpoint, no region: the check comes first.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_shardwise"))
        .args(["worker", "--application-name", "app", "--stream", "s"])
        .args(["--failover-time", "3s", "--renew-interval", "5s"])
        .env_remove("AWS_REGION")
        .env_remove("AWS_ENDPOINT_URL_KINESIS")
        .env_remove("AWS_ENDPOINT_URL_DYNAMODB")
        .output()
        .await
        .expect("shardwise worker");
    assert_eq!(out.status.code(), Some(1));
    let text = stderr(&out);
    assert!(
        text.contains("--renew-interval (5s) must be shorter than --failover-time (3s)"),
        "{text}"
    );
}

#[tokio::test]
async fn a_nonsense_duration_is_a_usage_error_naming_the_flag() {
    let out = worker(&[
        "--application-name",
        "app",
        "--stream",
        "s",
        "--failover-time",
        "banana",
    ])
    .await;
    assert_eq!(out.status.code(), Some(2));
    let text = stderr(&out);
    assert!(text.contains("--failover-time"), "{text}");
    assert!(text.contains("banana"), "{text}");
}

/// A missing counts table stops the worker before it takes any lease.
#[tokio::test]
async fn a_missing_counts_table_is_named_before_any_lease_is_taken() {
    let clients = local_clients().await;
    let stream = unique_name("nocounts");
    shardwise::setup::ensure_stream(&clients.kinesis, &stream, 1)
        .await
        .expect("stream");
    let (app, counts) = (unique_name("app"), unique_name("absent-counts"));
    let out = worker(&[
        "--application-name",
        &app,
        "--stream",
        &stream,
        "--counts-table",
        &counts,
    ])
    .await;
    assert_eq!(out.status.code(), Some(1));
    let text = stderr(&out);
    assert!(
        text.contains(&format!("counts table \"{counts}\"")),
        "{text}"
    );
    assert!(text.contains("needs its counts table"), "{text}");
    let leases = LeaseTable::new(clients.dynamodb.clone(), &app)
        .list()
        .await
        .unwrap_or_default();
    assert!(leases.iter().all(|l| l.owner.is_none()), "{leases:?}");
}

/// DynamoDB refusing every call as AWS does for a role without the
/// permission (injected by the proxy): a clear message naming the table
/// and the permissions, a non-zero exit, within seconds.
#[tokio::test(flavor = "multi_thread")]
async fn missing_table_permissions_are_named_with_the_remedy() {
    let clients = local_clients().await;
    let stream = unique_name("denied");
    shardwise::setup::ensure_stream(&clients.kinesis, &stream, 1)
        .await
        .expect("stream");
    let upstream = std::env::var("AWS_ENDPOINT_URL_DYNAMODB").expect("local DynamoDB");
    let proxy = FaultProxy::start(
        &upstream,
        Faults {
            refuse_all_with: Some("AccessDeniedException"),
            ..Faults::default()
        },
    )
    .await;
    let app = unique_name("app");
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_shardwise"))
            .args(["worker", "--application-name", &app, "--stream", &stream])
            .env("AWS_ENDPOINT_URL_DYNAMODB", &proxy.url)
            .output(),
    )
    .await
    .expect("the worker gives up at once")
    .expect("shardwise worker");
    assert_eq!(out.status.code(), Some(1));
    let text = stderr(&out);
    assert!(text.contains(&format!("lease table \"{app}\"")), "{text}");
    assert!(text.contains("AccessDeniedException"), "{text}");
    assert!(text.contains("the worker needs dynamodb:"), "{text}");
}
