//! Worker mode with real worker processes of the built binary against the
//! local AWS: counts exact, checkpoints at each shard's end, leases spread
//! evenly, a `kill -9` survived, a SIGTERM handed over. Timings are printed
//! as figures, never asserted; the waits are generous upper bounds.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::{Put, expected_counts, local_clients, put_and_read_back, unique_name};
use shardwise::aws::Clients;
use shardwise::sink;
use shardwise::worker::lease::{Lease, LeaseTable};

const FAILOVER: &str = "3s";

/// A worker process, killed when the test ends.
struct Worker {
    id: String,
    child: Child,
    log: PathBuf,
}

impl Worker {
    fn start(app: &str, stream: &str, counts: &str, id: &str) -> Self {
        let log = std::env::temp_dir().join(format!("{app}-{id}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_shardwise"))
            .args(["worker", "--application-name", app, "--stream", stream])
            .args(["--counts-table", counts, "--worker-id", id])
            .args([
                "--initial-position",
                "TRIM_HORIZON",
                "--failover-time",
                FAILOVER,
            ])
            .args(["--checkpoint-interval", "1s", "--idle-time", "200ms"])
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("shardwise worker");
        Self {
            id: id.to_string(),
            child,
            log,
        }
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits for the process to exit (up to `limit`).
    fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "worker {} still runs; log: {}",
                self.id,
                self.log.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
    let puts: Vec<Put> = texts
        .iter()
        .enumerate()
        .map(|(i, data)| Put {
            partition_key: format!("key-{i}"),
            explicit_hash_key: None,
            data: data.clone(),
        })
        .collect();
    put_and_read_back(&s.clients.kinesis, &s.stream, &puts)
        .await
        .into_iter()
        .map(|(shard, records)| {
            let last = records
                .last()
                .map(|r| r.sequence_number().to_string())
                .unwrap_or_default();
            (shard, last)
        })
        .collect()
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

/// Polls `check` every 200 ms until it holds; returns how long it took.
async fn until<F, Fut>(what: &str, limit: Duration, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < limit, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    start.elapsed()
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
    let s = setup(4).await;
    let texts = texts(0, 2000);
    let last_sequences = put(&s, &texts).await;
    let expected = expected_counts(texts.iter().map(Vec::as_slice));
    let started = Instant::now();
    let mut worker = Worker::start(&s.app, &s.stream, &s.counts, "solo");

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
}

#[tokio::test(flavor = "multi_thread")]
async fn three_workers_share_six_shards_survive_kill_9_and_hand_over_on_sigterm() {
    let s = setup(6).await;
    let first = texts(0, 1200);
    put(&s, &first).await;
    let mut workers: Vec<Worker> = ["a", "b", "c"]
        .iter()
        .map(|id| Worker::start(&s.app, &s.stream, &s.counts, id))
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
    let puts: Vec<Put> = second
        .iter()
        .enumerate()
        .map(|(i, data)| Put {
            partition_key: format!("more-{i}"),
            explicit_hash_key: None,
            data: data.clone(),
        })
        .collect();
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
