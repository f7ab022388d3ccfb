//! Worker churn: three workers on four shards, one of them `kill -9`ed at
//! random every few seconds and restarted (half the time under the same
//! worker id, as a fixed-id deployment restarts; half under a new one, as
//! an ECS task does), while tens of thousands of KPL-aggregated user
//! records flow in. The lease table is sampled throughout.
//!
//! At the end: counts exact, every shard checkpointed at its last record.
//! Throughout: a lease changes owner only with a higher lease counter (the
//! fence that keeps two workers from both believing they hold it), and no
//! checkpoint ever moves backwards (a stale owner's write would).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::worker_process::WorkerProcess;
use common::{Put, expected_counts, local_clients, unique_name, until};
use shardwise::aggregation::{self, UserRecord};
use shardwise::sink;
use shardwise::worker::lease::{Lease, LeaseTable};
use tokio_util::sync::CancellationToken;

const FAILOVER: Duration = Duration::from_secs(3);
const USER_RECORDS: usize = 40_000;
const WAVES: usize = 20;
const KILLS: usize = 8;

fn start(app: &str, stream: &str, counts: &str, id: &str) -> WorkerProcess {
    WorkerProcess::start(
        app,
        stream,
        counts,
        &[
            "--worker-id",
            id,
            "--failover-time",
            "3s",
            "--checkpoint-interval",
            "1s",
            "--idle-time",
            "200ms",
        ],
        &[],
    )
}

fn user_texts() -> Vec<Vec<u8>> {
    (0..USER_RECORDS)
        .map(|i| format!("{} {} w{} churn", i % 10, (i * 7) % 17, i % 29).into_bytes())
        .collect()
}

/// What one lease looked like in one sample.
#[derive(Debug, Clone)]
struct Seen {
    at: Duration,
    owner: Option<String>,
    counter: u64,
    checkpoint: String,
}

/// Orders checkpoints: TRIM_HORIZON/LATEST before any sequence number
/// (numerically), SHARD_END after all.
fn checkpoint_rank(checkpoint: &str) -> (u8, u128, String) {
    match checkpoint {
        "SHARD_END" => (2, 0, String::new()),
        c if c.chars().all(|d| d.is_ascii_digit()) => (1, c.len() as u128, c.to_string()),
        _ => (0, 0, String::new()),
    }
}

/// The violations of the lease invariants in one lease's history.
fn violations(key: &str, history: &[Seen]) -> Vec<String> {
    let mut found = Vec::new();
    for pair in history.windows(2) {
        let (before, after) = (&pair[0], &pair[1]);
        if after.counter < before.counter {
            found.push(format!(
                "{key}: counter went back {} -> {} at {:?}",
                before.counter, after.counter, after.at
            ));
        }
        if after.owner != before.owner && after.counter <= before.counter {
            found.push(format!(
                "{key}: owner {:?} -> {:?} without a higher counter ({}) at {:?}",
                before.owner, after.owner, after.counter, after.at
            ));
        }
        if checkpoint_rank(&after.checkpoint) < checkpoint_rank(&before.checkpoint) {
            found.push(format!(
                "{key}: checkpoint went back {} -> {} at {:?}",
                before.checkpoint, after.checkpoint, after.at
            ));
        }
    }
    found
}

/// The longest time an owned lease's counter stood still: renewals move
/// it every failover/3, so a long stall is a dead owner's lease waiting to
/// be taken.
fn longest_stall(history: &[Seen]) -> Duration {
    let mut longest = Duration::ZERO;
    let mut since: Option<&Seen> = None;
    for seen in history {
        match since {
            Some(s) if s.counter == seen.counter && s.owner.is_some() => {
                longest = longest.max(seen.at - s.at);
            }
            _ => since = Some(seen),
        }
    }
    longest
}

#[tokio::test(flavor = "multi_thread")]
async fn random_kill_9s_and_restarts_lose_nothing_and_never_double_count() {
    let clients = local_clients().await;
    let stream = unique_name("churn");
    let counts = unique_name("churn-counts");
    let app = unique_name("churn-app");
    shardwise::setup::ensure_stream(&clients.kinesis, &stream, 4)
        .await
        .expect("stream");
    sink::create_table_if_missing(&clients.dynamodb, &counts)
        .await
        .expect("counts table");
    let texts = user_texts();
    let expected = expected_counts(texts.iter().map(Vec::as_slice));
    // ~150 user records per aggregate: the consumer, not kinesis-mock's
    // write rate, is what this exercises.
    let users = texts.iter().enumerate().map(|(i, data)| UserRecord {
        partition_key: format!("user-{i}"),
        explicit_hash_key: None,
        data: data.clone(),
    });
    let puts: Vec<Put> = aggregation::aggregate_all(users, 4 * 1024)
        .into_iter()
        .map(|a| Put {
            partition_key: a.partition_key,
            explicit_hash_key: a.explicit_hash_key,
            data: a.data,
        })
        .collect();
    eprintln!(
        "figure: {USER_RECORDS} user records in {} aggregated records",
        puts.len()
    );

    let began = Instant::now();
    let history: Arc<Mutex<HashMap<String, Vec<Seen>>>> = Arc::default();
    let stop_sampling = CancellationToken::new();
    let sampler = {
        let (table, history, stop) = (
            LeaseTable::new(clients.dynamodb.clone(), &app),
            history.clone(),
            stop_sampling.clone(),
        );
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                if let Ok(leases) = table.list().await {
                    let at = began.elapsed();
                    let mut history = history.lock().expect("lock");
                    for Lease {
                        key,
                        owner,
                        counter,
                        checkpoint,
                        ..
                    } in leases
                    {
                        history.entry(key).or_default().push(Seen {
                            at,
                            owner,
                            counter,
                            checkpoint,
                        });
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    let producing = {
        let (kinesis, stream) = (clients.kinesis.clone(), stream.clone());
        tokio::spawn(async move {
            for wave in puts.chunks(puts.len().div_ceil(WAVES)) {
                common::put_records(&kinesis, &stream, wave).await;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };

    let mut workers: Vec<(String, WorkerProcess)> = ["w0", "w1", "w2"]
        .iter()
        .map(|id| (id.to_string(), start(&app, &stream, &counts, id)))
        .collect();
    let seed = fastrand::u64(..);
    eprintln!("churn seed {seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    for kill in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(rng.u64(2000..4000))).await;
        let victim = rng.usize(0..workers.len());
        let (id, mut process) = workers.swap_remove(victim);
        process.signal("-KILL");
        process.wait(Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(rng.u64(200..1500))).await;
        let base = id.split('-').next().unwrap_or("w").to_string();
        let new_id = if kill % 2 == 0 {
            id.clone()
        } else {
            format!("{base}-r{kill}")
        };
        eprintln!("kill -9 {id}, restarted as {new_id}");
        workers.push((new_id.clone(), start(&app, &stream, &counts, &new_id)));
    }
    producing.await.expect("producer");

    let last = common::last_sequences(common::read_all(&clients.kinesis, &stream).await);
    let table = LeaseTable::new(clients.dynamodb.clone(), &app);
    let live: Vec<String> = workers.iter().map(|(id, _)| id.clone()).collect();
    let logs: Vec<String> = workers
        .iter()
        .map(|(id, w)| format!("{id}: {}", w.log.display()))
        .collect();
    let settled = until(
        &format!("exact counts, every shard at its end, leases with live workers (logs {logs:?})"),
        Duration::from_secs(120),
        || async {
            let totals: BTreeMap<String, u64> = sink::read_totals(&clients.dynamodb, &counts)
                .await
                .unwrap_or_default()
                .into_iter()
                .collect();
            let leases = table.list().await.unwrap_or_default();
            totals == expected
                && leases.len() == last.len()
                && leases.iter().all(|l| {
                    last.get(&l.key) == Some(&l.checkpoint)
                        && l.owner.as_ref().is_some_and(|o| live.contains(o))
                })
        },
    )
    .await;
    eprintln!(
        "figure: settled {settled:?} after the last wave; whole run {:?}",
        began.elapsed()
    );
    stop_sampling.cancel();
    sampler.await.expect("sampler");

    let (samples, found, stall) = {
        let history = history.lock().expect("lock");
        let samples: usize = history.values().map(Vec::len).sum();
        let found: Vec<String> = history
            .iter()
            .flat_map(|(key, h)| violations(key, h))
            .collect();
        let stall = history
            .values()
            .map(|h| longest_stall(h))
            .max()
            .unwrap_or_default();
        (samples, found, stall)
    };
    assert!(samples > 100, "the lease table was sampled ({samples})");
    assert!(found.is_empty(), "{found:#?}");
    eprintln!(
        "figure: the longest a lease stood still under an owner: {stall:?} (failover {FAILOVER:?})"
    );
    for (_, worker) in &mut workers {
        assert_eq!(worker.stop(), Some(0), "{}", worker.log());
    }
    assert_eq!(
        sink::read_totals(&clients.dynamodb, &counts)
            .await
            .expect("totals")
            .into_iter()
            .collect::<BTreeMap<_, _>>(),
        expected,
        "nothing counted twice after the last stop"
    );
}
