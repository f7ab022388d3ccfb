//! A worker reading through the project's fault-injecting proxy: every
//! third GetRecords call fails, in turn throttled, with an expired
//! iterator, with a 500, and with the connection dropped. The worker backs
//! off, re-acquires expired iterators from its last applied position, and
//! still counts every record exactly once and checkpoints every shard at
//! its end.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::fault_proxy::{FaultProxy, Faults};
use common::worker_process::WorkerProcess;
use common::{
    expected_counts, last_sequences, local_clients, new_stream_and_counts, put_and_read_back,
    puts_of, unique_name, until,
};
use shardwise::aws::Clients;
use shardwise::sink;
use shardwise::worker::lease::LeaseTable;

/// Polls until the counts table holds `expected` and every lease of `app`
/// is checkpointed at its shard's last record; returns how long it took.
async fn until_exact_at_the_end(
    clients: &Clients,
    counts: &str,
    app: &str,
    last: &HashMap<String, String>,
    expected: &BTreeMap<String, u64>,
    log: &std::path::Path,
) -> Duration {
    let table = LeaseTable::new(clients.dynamodb.clone(), app);
    let what = format!(
        "exact counts and every shard at its end (log {})",
        log.display()
    );
    until(&what, Duration::from_secs(120), || async {
        let totals: BTreeMap<String, u64> = sink::read_totals(&clients.dynamodb, counts)
            .await
            .unwrap_or_default()
            .into_iter()
            .collect();
        let leases = table.list().await.unwrap_or_default();
        totals == *expected
            && leases.len() == last.len()
            && leases
                .iter()
                .all(|l| last.get(&l.key) == Some(&l.checkpoint))
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_rides_out_throttling_expired_iterators_500s_and_dropped_connections() {
    let clients = local_clients().await;
    let (stream, counts) = new_stream_and_counts(&clients, "faults", 2).await;
    let app = unique_name("faults-app");
    let texts: Vec<Vec<u8>> = (0..1000)
        .map(|i| format!("{} {} fault{}", i % 10, (i * 3) % 10, i % 7).into_bytes())
        .collect();
    let last: HashMap<String, String> =
        last_sequences(put_and_read_back(&clients.kinesis, &stream, &puts_of(&texts, "key")).await);
    let expected = expected_counts(texts.iter().map(Vec::as_slice));

    let upstream = std::env::var("AWS_ENDPOINT_URL_KINESIS").expect("local Kinesis");
    let faults = Faults {
        budget: 40,
        get_records_fault_every: 3,
        ..Faults::default()
    };
    let proxy = FaultProxy::start(&upstream, faults).await;
    let mut worker = WorkerProcess::start(
        &app,
        &stream,
        &counts,
        &[
            "--max-records",
            "50",
            "--idle-time",
            "200ms",
            "--checkpoint-interval",
            "1s",
            "--failover-time",
            "3s",
        ],
        &[("AWS_ENDPOINT_URL_KINESIS".to_string(), proxy.url.clone())],
    );
    let took = until_exact_at_the_end(&clients, &counts, &app, &last, &expected, &worker.log).await;
    let injected: Vec<u64> = proxy
        .get_records_faults
        .iter()
        .map(|n| n.load(Ordering::SeqCst))
        .collect();
    eprintln!(
        "figure: GetRecords faults injected (throttled, expired, 500, dropped): {injected:?}; exact after {took:?}"
    );
    assert!(
        injected.iter().all(|n| *n > 0),
        "every kind of fault was injected: {injected:?}"
    );
    let text = worker.log();
    assert!(
        text.contains("shard iterator expired; re-acquiring"),
        "{text}"
    );

    assert_eq!(worker.stop(), Some(0));
}

/// Enhanced fan-out through the proxy, which cuts every subscription 1.5 s
/// after it starts, in turn ending it cleanly (as Kinesis ends a session
/// after 5 minutes) and aborting it mid-stream (a dropped connection),
/// while records keep arriving. The worker subscribes again from its last
/// continuation each time: every record counted exactly once, every shard
/// checkpointed at its last record.
#[tokio::test(flavor = "multi_thread")]
async fn an_efo_subscription_cut_mid_stream_resumes_without_loss_or_double_counts() {
    let clients = local_clients().await;
    let (stream, counts) = new_stream_and_counts(&clients, "efo-cuts", 2).await;
    let app = unique_name("efo-cuts-app");
    let upstream = std::env::var("AWS_ENDPOINT_URL_KINESIS").expect("local Kinesis");
    let faults = Faults {
        cut_subscriptions_after: Some(Duration::from_millis(1500)),
        ..Faults::default()
    };
    let proxy = FaultProxy::start(&upstream, faults).await;
    let worker = WorkerProcess::start(
        &app,
        &stream,
        &counts,
        &[
            "--retrieval",
            "efo",
            "--checkpoint-interval",
            "1s",
            "--failover-time",
            "3s",
        ],
        &[("AWS_ENDPOINT_URL_KINESIS".to_string(), proxy.url.clone())],
    );
    // Records arrive over ~10 s, across many cuts of both kinds.
    let texts: Vec<Vec<u8>> = (0..1000)
        .map(|i| format!("{} {} cut{}", i % 10, (i * 7) % 10, i % 11).into_bytes())
        .collect();
    for (n, chunk) in texts.chunks(50).enumerate() {
        let puts = puts_of(chunk, &format!("cut{n}"));
        common::put_records(&clients.kinesis, &stream, &puts).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let last = last_sequences(common::read_all(&clients.kinesis, &stream).await);
    let expected = expected_counts(texts.iter().map(Vec::as_slice));
    let took = until_exact_at_the_end(&clients, &counts, &app, &last, &expected, &worker.log).await;
    let cuts: Vec<u64> = proxy
        .subscription_cuts
        .iter()
        .map(|n| n.load(Ordering::SeqCst))
        .collect();
    eprintln!("figure: subscriptions cut (ended, aborted): {cuts:?}; exact after {took:?}");
    assert!(cuts.iter().all(|n| *n >= 2), "both kinds of cut: {cuts:?}");
    let text = worker.log();
    assert!(
        text.contains("subscription ended; subscribing again"),
        "{text}"
    );
    assert!(
        text.contains("SubscribeToShard event stream failed"),
        "{text}"
    );
}

/// Poison among good records: not UTF-8, an aggregate whose MD5 is wrong,
/// a truncated aggregate, and a 1 MiB record of one word. Every shard keeps
/// moving to its last record, each bad record is logged once, and the good
/// records (the 1 MiB word included) are counted exactly.
#[tokio::test(flavor = "multi_thread")]
async fn poison_records_never_stop_a_shard_and_are_reported_once() {
    use shardwise::aggregation::{self, UserRecord};
    let clients = local_clients().await;
    let (stream, counts) = new_stream_and_counts(&clients, "poison", 2).await;
    let app = unique_name("poison-app");

    let good: Vec<Vec<u8>> = (0..200)
        .map(|i| format!("{} good {}", i % 10, i % 3).into_bytes())
        .collect();
    let aggregate = aggregation::aggregate_all(
        (0..5).map(|i| UserRecord {
            partition_key: format!("u{i}"),
            explicit_hash_key: None,
            data: b"hidden words".to_vec(),
        }),
        aggregation::MAX_RECORD_BYTES,
    )
    .remove(0)
    .data;
    let mut md5_wrong = aggregate.clone();
    let last = md5_wrong.len() - 1;
    md5_wrong[last] ^= 0xff;
    let truncated = aggregate[..aggregate.len() / 2].to_vec();
    // One 1 MiB record (minus its key): a single long word.
    let huge = vec![b'x'; 1024 * 1024 - 16];
    let mut texts = good.clone();
    texts.push(b"caf\xe9 au lait".to_vec());
    texts.push(md5_wrong);
    texts.push(truncated);
    texts.push(huge.clone());
    // Spread over both shards, the poison in the middle of the good ones.
    texts.rotate_left(100);
    let mut puts = puts_of(&texts, "poison");
    for put in puts.iter_mut().filter(|p| p.data.len() > 1000) {
        put.partition_key = "h".into();
    }
    let last: HashMap<String, String> =
        last_sequences(put_and_read_back(&clients.kinesis, &stream, &puts).await);
    let mut expected_texts = good.clone();
    expected_texts.push(huge);
    // The 1 MiB word is stored under its long-word key (README).
    let expected: BTreeMap<String, u64> = expected_counts(expected_texts.iter().map(Vec::as_slice))
        .into_iter()
        .map(|(word, count)| (sink::word_key(&word).into_owned(), count))
        .collect();

    let worker = WorkerProcess::start(
        &app,
        &stream,
        &counts,
        &["--checkpoint-interval", "1s", "--idle-time", "200ms"],
        &[],
    );
    until_exact_at_the_end(&clients, &counts, &app, &last, &expected, &worker.log).await;
    let text = worker.log();
    // One line per bad record: the invalid UTF-8 one, and both damaged
    // aggregates (cut in half, an aggregate's tail is no longer its MD5).
    assert_eq!(text.matches("reason=\"invalid_utf8\"").count(), 1, "{text}");
    assert_eq!(
        text.matches("reason=\"aggregate_md5_mismatch\"").count(),
        2,
        "{text}"
    );
    assert_eq!(
        text.matches("skipped a record that cannot be counted")
            .count(),
        3,
        "{text}"
    );
}
