//! Worker mode with real worker processes of the built binary against the
//! local AWS: counts exact, checkpoints at each shard's end, leases spread
//! evenly, a `kill -9` survived, a SIGTERM handed over. Timings are printed
//! as figures, never asserted; the waits are generous upper bounds.
//!
//! The tests of counting, failover and resharding run twice: with polling
//! (the default) and with enhanced fan-out (`--retrieval efo`, served by
//! kinesis-mock's SubscribeToShard).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use common::worker_process::WorkerProcess;
use common::{Put, expected_counts, local_clients, put_and_read_back, unique_name, until};
use shardwise::aws::Clients;
use shardwise::sink;
use shardwise::worker::lease::{Lease, LeaseTable};

const FAILOVER: &str = "3s";

/// How the test's workers read their shards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Retrieval {
    Polling,
    Efo,
}

impl Retrieval {
    fn flag(self) -> &'static str {
        match self {
            Retrieval::Polling => "polling",
            Retrieval::Efo => "efo",
        }
    }
}

/// A worker of the test's application, with the tests' timings.
struct Worker;

impl Worker {
    fn start(app: &str, stream: &str, counts: &str, id: &str) -> WorkerProcess {
        Self::start_with(app, stream, counts, id, Retrieval::Polling)
    }

    fn start_with(
        app: &str,
        stream: &str,
        counts: &str,
        id: &str,
        retrieval: Retrieval,
    ) -> WorkerProcess {
        WorkerProcess::start(
            app,
            stream,
            counts,
            &[
                "--worker-id",
                id,
                "--failover-time",
                FAILOVER,
                "--checkpoint-interval",
                "1s",
                "--idle-time",
                "200ms",
                "--retrieval",
                retrieval.flag(),
            ],
            &[],
        )
    }
}

/// The stream consumers registered on the test's stream, by name and status.
async fn stream_consumers(s: &Setup) -> Vec<(String, String)> {
    let Ok(arn) = shardwise::worker::fanout::stream_arn(
        &s.clients.kinesis,
        &shardwise::worker::StreamRef::parse(&s.stream),
    )
    .await
    else {
        return Vec::new();
    };
    s.clients
        .kinesis
        .list_stream_consumers()
        .stream_arn(arn)
        .send()
        .await
        .map(|out| {
            out.consumers
                .unwrap_or_default()
                .into_iter()
                .map(|c| (c.consumer_name, c.consumer_status.as_str().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

struct Setup {
    clients: Clients,
    stream: String,
    app: String,
    counts: String,
}

async fn setup(shards: u32) -> Setup {
    let clients = local_clients().await;
    let stream = unique_name("worker");
    shardwise::setup::ensure_stream(&clients.kinesis, &stream, shards)
        .await
        .expect("stream");
    let counts = unique_name("worker-counts");
    sink::create_table_if_missing(&clients.dynamodb, &counts)
        .await
        .expect("counts table");
    Setup {
        clients,
        app: unique_name("app"),
        stream,
        counts,
    }
}

fn texts(from: usize, to: usize) -> Vec<Vec<u8>> {
    (from..to)
        .map(|i| format!("{} {} {} w{}", i % 10, (i * 7) % 10, (i * 3) % 10, i % 13).into_bytes())
        .collect()
}

/// Puts the texts with varied keys; returns the last sequence number of
/// each shard.
async fn put(s: &Setup, texts: &[Vec<u8>]) -> HashMap<String, String> {
    let puts: Vec<Put> = common::puts_of(texts, "key");
    common::last_sequences(put_and_read_back(&s.clients.kinesis, &s.stream, &puts).await)
}

async fn leases(s: &Setup) -> Vec<Lease> {
    LeaseTable::new(s.clients.dynamodb.clone(), &s.app)
        .list()
        .await
        .unwrap_or_default()
}

async fn totals(s: &Setup) -> BTreeMap<String, u64> {
    sink::read_totals(&s.clients.dynamodb, &s.counts)
        .await
        .unwrap_or_default()
        .into_iter()
        .collect()
}

fn owners(leases: &[Lease]) -> BTreeMap<String, usize> {
    let mut owners = BTreeMap::new();
    for lease in leases {
        *owners
            .entry(lease.owner.clone().unwrap_or_else(|| "-".into()))
            .or_insert(0) += 1;
    }
    owners
}

#[tokio::test(flavor = "multi_thread")]
async fn one_worker_counts_every_record_and_checkpoints_each_shard_at_its_end() {
    one_worker_counts_and_checkpoints(Retrieval::Polling).await;
}

/// With EFO, also: the consumer is registered under the application's
/// name, `status` shows `efo` for every lease, and `deregister-consumer`
/// removes the consumer.
#[tokio::test(flavor = "multi_thread")]
async fn efo_one_worker_counts_every_record_and_checkpoints_each_shard_at_its_end() {
    one_worker_counts_and_checkpoints(Retrieval::Efo).await;
}

async fn one_worker_counts_and_checkpoints(retrieval: Retrieval) {
    let s = setup(4).await;
    let texts = texts(0, 2000);
    let last_sequences = put(&s, &texts).await;
    let expected = expected_counts(texts.iter().map(Vec::as_slice));
    let started = Instant::now();
    let mut worker = Worker::start_with(&s.app, &s.stream, &s.counts, "solo", retrieval);

    let first_record = until("first counts", Duration::from_secs(60), || async {
        !totals(&s).await.is_empty()
    })
    .await;
    eprintln!("figure: first record counted {first_record:?} after the worker started");
    until("exact counts", Duration::from_secs(90), || async {
        totals(&s).await == expected
    })
    .await;
    until(
        "checkpoints at each shard's last record",
        Duration::from_secs(30),
        || async {
            let leases = leases(&s).await;
            leases.len() == 4
                && leases.iter().all(|l| {
                    l.owner.as_deref() == Some("solo")
                        && last_sequences
                            .get(&l.key)
                            .is_none_or(|last| l.checkpoint == *last)
                })
        },
    )
    .await;

    assert!(
        leases(&s)
            .await
            .iter()
            .all(|l| l.retrieval.as_deref() == Some(retrieval.flag())),
        "every lease taken with {retrieval:?}"
    );
    if retrieval == Retrieval::Efo {
        assert_eq!(
            stream_consumers(&s).await,
            vec![(s.app.clone(), "ACTIVE".to_string())],
            "the consumer is named after the application"
        );
    }

    worker.signal("-TERM");
    let status = worker.wait(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "{}", worker.log());
    let after = leases(&s).await;
    assert!(
        after.iter().all(|l| l.owner.is_none()),
        "released: {after:?}"
    );
    assert_eq!(totals(&s).await, expected, "nothing counted twice");
    eprintln!("figure: whole run {:?}", started.elapsed());

    if retrieval == Retrieval::Efo {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_shardwise"))
            .args(["deregister-consumer", "--stream", &s.stream])
            .args(["--application-name", &s.app])
            .output()
            .expect("deregister-consumer");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("deregistered stream consumer"), "{stdout}");
        until("the consumer is gone", Duration::from_secs(30), || async {
            stream_consumers(&s)
                .await
                .iter()
                .all(|(_, status)| status != "ACTIVE")
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn three_workers_share_six_shards_survive_kill_9_and_hand_over_on_sigterm() {
    three_workers_kill_9_and_sigterm(Retrieval::Polling).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn efo_three_workers_share_six_shards_survive_kill_9_and_hand_over_on_sigterm() {
    three_workers_kill_9_and_sigterm(Retrieval::Efo).await;
}

async fn three_workers_kill_9_and_sigterm(retrieval: Retrieval) {
    let s = setup(6).await;
    let first = texts(0, 1200);
    put(&s, &first).await;
    let mut workers: Vec<WorkerProcess> = ["a", "b", "c"]
        .iter()
        .map(|id| Worker::start_with(&s.app, &s.stream, &s.counts, id, retrieval))
        .collect();

    let balanced = until("2 leases each", Duration::from_secs(60), || async {
        owners(&leases(&s).await)
            == BTreeMap::from([("a".into(), 2), ("b".into(), 2), ("c".into(), 2)])
    })
    .await;
    eprintln!("figure: 3 workers balanced 2/2/2 after {balanced:?}");

    // kill -9 one worker: its shards go to the survivors.
    workers[0].signal("-KILL");
    workers[0].wait(Duration::from_secs(10));
    let taken_over = until(
        "survivors own every lease",
        Duration::from_secs(60),
        || async {
            let leases = leases(&s).await;
            leases.len() == 6
                && leases
                    .iter()
                    .all(|l| matches!(l.owner.as_deref(), Some("b") | Some("c")))
        },
    )
    .await;
    eprintln!("figure: shards resumed {taken_over:?} after kill -9 (failover time {FAILOVER})");

    let second = texts(1200, 2400);
    let puts: Vec<Put> = common::puts_of(&second, "more");
    common::put_records(&s.clients.kinesis, &s.stream, &puts).await;
    let all: Vec<Vec<u8>> = first.iter().chain(second.iter()).cloned().collect();
    let expected = expected_counts(all.iter().map(Vec::as_slice));
    until(
        "exact counts after the failover",
        Duration::from_secs(90),
        || async { totals(&s).await == expected },
    )
    .await;

    // SIGTERM another: exit 0, leases released, taken by the last one.
    workers[1].signal("-TERM");
    let stopped_at = Instant::now();
    let status = workers[1].wait(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "{}", workers[1].log());
    let handed_over = until(
        "the last worker owns every lease",
        Duration::from_secs(30),
        || async {
            leases(&s)
                .await
                .iter()
                .all(|l| l.owner.as_deref() == Some("c"))
        },
    )
    .await;
    eprintln!(
        "figure: after SIGTERM, worker exited in {:?}; its shards owned by a peer {handed_over:?} after it exited",
        stopped_at.elapsed() - handed_over
    );
    assert!(
        workers[1].log().contains("lease released"),
        "{}",
        workers[1].log()
    );
    assert_eq!(totals(&s).await, expected, "nothing counted twice");
}

/// Stop cleanly, start again: the new worker resumes every shard from its
/// checkpoint, and re-reading changes no count.
#[tokio::test(flavor = "multi_thread")]
async fn a_restart_after_a_clean_stop_resumes_from_the_checkpoints() {
    let s = setup(2).await;
    let first = texts(0, 600);
    put(&s, &first).await;
    let expected = expected_counts(first.iter().map(Vec::as_slice));
    let mut worker = Worker::start(&s.app, &s.stream, &s.counts, "first");
    until("exact counts", Duration::from_secs(60), || async {
        totals(&s).await == expected
    })
    .await;
    worker.signal("-TERM");
    assert_eq!(worker.wait(Duration::from_secs(30)).code(), Some(0));
    let checkpoints: BTreeMap<String, String> = leases(&s)
        .await
        .into_iter()
        .map(|l| (l.key, l.checkpoint))
        .collect();
    assert!(
        checkpoints
            .values()
            .all(|c| c.chars().all(|ch| ch.is_ascii_digit())),
        "{checkpoints:?}"
    );

    let second = Worker::start(&s.app, &s.stream, &s.counts, "second");
    until("both shards resumed", Duration::from_secs(30), || async {
        leases(&s)
            .await
            .iter()
            .all(|l| l.owner.as_deref() == Some("second"))
    })
    .await;
    until(
        "resumed from the checkpoints",
        Duration::from_secs(30),
        || async {
            let log = second.log();
            checkpoints
                .values()
                .all(|c| log.contains(&format!("checkpoint={c}")))
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        totals(&s).await,
        expected,
        "replayed records changed no count"
    );
}

/// `kill -9`, then the same worker id again (a fixed-id deployment
/// restarting): the leases still in its name are taken back once expired,
/// and the counts come out exact.
#[tokio::test(flavor = "multi_thread")]
async fn a_worker_restarted_under_the_same_id_after_kill_9_takes_its_own_leases_back() {
    let s = setup(2).await;
    let first = texts(0, 400);
    put(&s, &first).await;
    let mut worker = Worker::start(&s.app, &s.stream, &s.counts, "fixed");
    until("both leases held", Duration::from_secs(60), || async {
        let leases = leases(&s).await;
        leases.len() == 2 && leases.iter().all(|l| l.owner.as_deref() == Some("fixed"))
    })
    .await;
    worker.signal("-KILL");
    worker.wait(Duration::from_secs(10));
    let again = Worker::start(&s.app, &s.stream, &s.counts, "fixed");
    let second = texts(400, 800);
    common::put_records(
        &s.clients.kinesis,
        &s.stream,
        &common::puts_of(&second, "again"),
    )
    .await;
    let all: Vec<Vec<u8>> = first.iter().chain(second.iter()).cloned().collect();
    let expected = expected_counts(all.iter().map(Vec::as_slice));
    let resumed = until(
        "exact counts after the restart",
        Duration::from_secs(60),
        || async { totals(&s).await == expected },
    )
    .await;
    eprintln!("figure: counts exact {resumed:?} after the restart (failover time {FAILOVER})");
    assert!(
        again.log().matches("how=\"expired\"").count() >= 2,
        "both leases taken back as expired: {}",
        again.log()
    );
}

/// Another owner and counter written straight into the table: the worker
/// notices at its next renewal, stops the shard without a checkpoint, and
/// (the intruder never renewing) takes it back after the failover time.
#[tokio::test(flavor = "multi_thread")]
async fn a_lease_stolen_from_under_a_worker_stops_that_shard_without_a_checkpoint() {
    lease_stolen_stops_the_shard(Retrieval::Polling).await;
}

/// With EFO, the lost shard's subscription is dropped with it, and the
/// worker subscribes again when it takes the lease back.
#[tokio::test(flavor = "multi_thread")]
async fn efo_a_lease_stolen_from_under_a_worker_stops_that_shard_without_a_checkpoint() {
    lease_stolen_stops_the_shard(Retrieval::Efo).await;
}

async fn lease_stolen_stops_the_shard(retrieval: Retrieval) {
    use aws_sdk_dynamodb::types::AttributeValue;
    let s = setup(1).await;
    let first = texts(0, 300);
    put(&s, &first).await;
    let worker = Worker::start_with(&s.app, &s.stream, &s.counts, "victim", retrieval);
    let expected = expected_counts(first.iter().map(Vec::as_slice));
    until("exact counts", Duration::from_secs(60), || async {
        totals(&s).await == expected
    })
    .await;
    until("a checkpoint", Duration::from_secs(30), || async {
        leases(&s)
            .await
            .iter()
            .all(|l| l.checkpoint.chars().all(|c| c.is_ascii_digit()))
    })
    .await;
    let before = leases(&s).await.remove(0);
    s.clients
        .dynamodb
        .update_item()
        .table_name(&s.app)
        .key("leaseKey", AttributeValue::S(before.key.clone()))
        .update_expression("SET leaseOwner = :intruder, leaseCounter = leaseCounter + :one")
        .expression_attribute_values(":intruder", AttributeValue::S("intruder".into()))
        .expression_attribute_values(":one", AttributeValue::N("1".into()))
        .send()
        .await
        .expect("steal");
    let second = texts(300, 500);
    let puts: Vec<Put> = common::puts_of(&second, "late");
    common::put_records(&s.clients.kinesis, &s.stream, &puts).await;
    until("the worker noticed", Duration::from_secs(10), || async {
        worker.log().contains("lease lost")
    })
    .await;
    let during = leases(&s).await.remove(0);
    assert_eq!(during.owner.as_deref(), Some("intruder"));
    assert_eq!(
        during.checkpoint, before.checkpoint,
        "no checkpoint after the lease was lost"
    );

    let all: Vec<Vec<u8>> = first.iter().chain(second.iter()).cloned().collect();
    let expected = expected_counts(all.iter().map(Vec::as_slice));
    // (The victim may count the late records before its next renewal
    // notices the theft: only its checkpoints are fenced, and the counts
    // sink keeps the counts exact either way.)
    until(
        "taken back after the failover",
        Duration::from_secs(60),
        || async { leases(&s).await[0].owner.as_deref() == Some("victim") },
    )
    .await;
    until("counted exactly", Duration::from_secs(60), || async {
        totals(&s).await == expected
    })
    .await;
}

/// A lease table as the Java KCL 2.x writes it (no shardwise attributes, a
/// dead Java worker as owner, a checkpoint in the middle of a shard): the
/// worker takes the leases after the failover time and resumes from those
/// checkpoints, so records before them are not counted.
#[tokio::test(flavor = "multi_thread")]
async fn a_table_written_by_the_java_kcl_is_resumed_from_its_checkpoints() {
    use aws_sdk_dynamodb::types::AttributeValue;
    use std::collections::HashMap as Map;
    let s = setup(2).await;
    let texts = texts(0, 400);
    let puts: Vec<Put> = common::puts_of(&texts, "key");
    let read = put_and_read_back(&s.clients.kinesis, &s.stream, &puts).await;
    LeaseTable::new(s.clients.dynamodb.clone(), &s.app)
        .create_if_missing()
        .await
        .expect("table");
    let mut expected_texts: Vec<Vec<u8>> = Vec::new();
    for (n, (shard, records)) in read.iter().enumerate() {
        // First shard: checkpointed at its 50th record; second: at its start.
        let checkpoint = if n == 0 {
            records[49].sequence_number().to_string()
        } else {
            "TRIM_HORIZON".to_string()
        };
        let skip = if n == 0 { 50 } else { 0 };
        expected_texts.extend(records[skip..].iter().map(|r| r.data().as_ref().to_vec()));
        let item: Map<String, AttributeValue> = Map::from([
            ("leaseKey".into(), AttributeValue::S(shard.clone())),
            (
                "leaseOwner".into(),
                AttributeValue::S("java-worker-1".into()),
            ),
            ("leaseCounter".into(), AttributeValue::N("41".into())),
            (
                "ownerSwitchesSinceCheckpoint".into(),
                AttributeValue::N("0".into()),
            ),
            ("checkpoint".into(), AttributeValue::S(checkpoint)),
            (
                "checkpointSubSequenceNumber".into(),
                AttributeValue::N("0".into()),
            ),
        ]);
        s.clients
            .dynamodb
            .put_item()
            .table_name(&s.app)
            .set_item(Some(item))
            .send()
            .await
            .expect("put lease");
    }
    let _worker = Worker::start(&s.app, &s.stream, &s.counts, "rust-worker");
    let expected = expected_counts(expected_texts.iter().map(Vec::as_slice));
    until(
        "resumed from the Java checkpoints",
        Duration::from_secs(60),
        || async { totals(&s).await == expected },
    )
    .await;
    let after = leases(&s).await;
    assert!(
        after
            .iter()
            .all(|l| l.owner.as_deref() == Some("rust-worker") && l.counter > 41),
        "{after:?}"
    );
}

/// Split one shard and merge two others while records flow: no child is
/// read before all its parents are at SHARD_END (sampled from the table the
/// whole time), and the counts are exact at the end.
#[tokio::test(flavor = "multi_thread")]
async fn resharding_while_records_flow_keeps_parents_before_children() {
    resharding_keeps_parents_before_children(Retrieval::Polling).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn efo_resharding_while_records_flow_keeps_parents_before_children() {
    resharding_keeps_parents_before_children(Retrieval::Efo).await;
}

async fn resharding_keeps_parents_before_children(retrieval: Retrieval) {
    let s = setup(3).await;
    let first = texts(0, 300);
    put(&s, &first).await;
    let _worker = Worker::start_with(&s.app, &s.stream, &s.counts, "resharder", retrieval);
    let expected_first = expected_counts(first.iter().map(Vec::as_slice));
    until("first records counted", Duration::from_secs(60), || async {
        totals(&s).await == expected_first
    })
    .await;

    // Sample the lease table in the background from here on.
    let violations = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sampling = tokio_util::sync::CancellationToken::new();
    let sampler = {
        let (dynamodb, app, violations, stop) = (
            s.clients.dynamodb.clone(),
            s.app.clone(),
            violations.clone(),
            sampling.clone(),
        );
        tokio::spawn(async move {
            let table = LeaseTable::new(dynamodb, app);
            while !stop.is_cancelled() {
                if let Ok(leases) = table.list().await {
                    let by_key: HashMap<&str, &Lease> =
                        leases.iter().map(|l| (l.key.as_str(), l)).collect();
                    for child in leases.iter().filter(|l| !l.parents.is_empty()) {
                        let started = child.checkpoint.chars().all(|c| c.is_ascii_digit())
                            || child.is_finished();
                        for parent in &child.parents {
                            if started
                                && by_key
                                    .get(parent.as_str())
                                    .is_some_and(|p| !p.is_finished())
                            {
                                violations
                                    .lock()
                                    .expect("lock")
                                    .push(format!("{} read before {parent} ended", child.key));
                            }
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    let shards = shardwise::worker::coordinator::list_shards(
        &s.clients.kinesis,
        &shardwise::worker::StreamRef::parse(&s.stream),
    )
    .await
    .expect("shards");
    let range = |i: usize| {
        let r = shards[i].hash_key_range().expect("range");
        (
            r.starting_hash_key().parse::<u128>().expect("u128"),
            r.ending_hash_key().parse::<u128>().expect("u128"),
        )
    };
    // Records keep flowing while the shards split and merge.
    let second = texts(300, 700);
    let flowing = {
        let (kinesis, stream, second) =
            (s.clients.kinesis.clone(), s.stream.clone(), second.clone());
        tokio::spawn(async move {
            for (n, chunk) in second.chunks(50).enumerate() {
                let puts: Vec<Put> = chunk
                    .iter()
                    .enumerate()
                    .map(|(i, data)| Put {
                        partition_key: format!("after-{n}-{i}"),
                        explicit_hash_key: None,
                        data: data.clone(),
                    })
                    .collect();
                common::put_records(&kinesis, &stream, &puts).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let (start, end) = range(0);
    s.clients
        .kinesis
        .split_shard()
        .stream_name(&s.stream)
        .shard_to_split(shards[0].shard_id())
        .new_starting_hash_key((start + (end - start) / 2).to_string())
        .send()
        .await
        .expect("SplitShard");
    wait_active(&s).await;
    s.clients
        .kinesis
        .merge_shards()
        .stream_name(&s.stream)
        .shard_to_merge(shards[1].shard_id())
        .adjacent_shard_to_merge(shards[2].shard_id())
        .send()
        .await
        .expect("MergeShards");
    wait_active(&s).await;

    flowing.await.expect("puts during the reshard");
    if retrieval == Retrieval::Efo {
        // kinesis-mock 0.6.2 never tells a subscriber that its shard is
        // closed: its SubscribeToShard keeps sending empty events with a
        // continuation and no ChildShards (src/main/scala/kinesis/mock/api/
        // SubscribeToShardRequest.scala sets `childShards = None`), where
        // Kinesis sends a last event with ChildShards and no continuation
        // (unit-tested in fanout.rs). So on the local engine the parents
        // never reach SHARD_END: what holds is that every record of the
        // parents is counted exactly, and that no child is read first.
        let parents: Vec<&str> = shards.iter().map(|s| s.shard_id()).collect();
        let in_parents: Vec<Vec<u8>> = common::read_all(&s.clients.kinesis, &s.stream)
            .await
            .into_iter()
            .filter(|(shard, _)| parents.contains(&shard.as_str()))
            .flat_map(|(_, records)| records.into_iter().map(|r| r.data.into_inner()))
            .collect();
        let expected = expected_counts(in_parents.iter().map(Vec::as_slice));
        until(
            "the parents' records counted exactly",
            Duration::from_secs(60),
            || async { totals(&s).await == expected },
        )
        .await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        sampling.cancel();
        let _ = sampler.await;
        let violations = violations.lock().expect("lock").clone();
        assert!(violations.is_empty(), "{violations:?}");
        assert_eq!(totals(&s).await, expected, "nothing counted twice");
        return;
    }
    let all: Vec<Vec<u8>> = first.iter().chain(second.iter()).cloned().collect();
    let expected = expected_counts(all.iter().map(Vec::as_slice));
    until(
        "exact counts across the reshard",
        Duration::from_secs(120),
        || async { totals(&s).await == expected },
    )
    .await;
    // Once the children have started, the parents' leases are cleaned up;
    // shard sync must not lease the parents again.
    until(
        "parents cleaned up, three children leased",
        Duration::from_secs(60),
        || async {
            let leases = leases(&s).await;
            leases.len() == 3
                && leases
                    .iter()
                    .all(|l| !l.parents.is_empty() && !l.is_finished())
        },
    )
    .await;
    // A worker starting now runs shard sync: the parents are still listed
    // by Kinesis, and must not be leased again.
    let late = Worker::start_with(&s.app, &s.stream, &s.counts, "late", retrieval);
    until(
        "the late worker started",
        Duration::from_secs(30),
        || async { late.log().contains("worker started") },
    )
    .await;
    assert_eq!(leases(&s).await.len(), 3, "no parent leased again");
    sampling.cancel();
    let _ = sampler.await;
    let violations = violations.lock().expect("lock").clone();
    assert!(violations.is_empty(), "{violations:?}");
}

async fn wait_active(s: &Setup) {
    until("stream ACTIVE", Duration::from_secs(30), || async {
        s.clients
            .kinesis
            .describe_stream_summary()
            .stream_name(&s.stream)
            .send()
            .await
            .ok()
            .and_then(|d| d.stream_description_summary)
            .is_some_and(|d| d.stream_status == aws_sdk_kinesis::types::StreamStatus::Active)
    })
    .await;
}
