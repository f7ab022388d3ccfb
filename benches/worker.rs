//! Worker mode end to end, on the local AWS, with the release binary:
//!
//!     eval "$(localstack/up)"
//!     cargo bench --bench worker                 # every scenario
//!     cargo bench --bench worker -- throughput   # or: latency, efo, failover, memory
//!
//! - throughput: a stream of 4 shards pre-loaded with KPL-aggregated user
//!   records of the producer's text (10 random digits each; aggregated, so
//!   kinesis-mock's slow writes are not what is measured), read to the end
//!   by a bare SDK GetRecords loop (the baseline) and counted by a worker,
//!   alternately, 3 rounds: user records/s, CPU seconds per million user
//!   records, DynamoDB writes per 1 000 records; and the same worker with
//!   `--metrics off`, for the cost of metrics.
//! - latency: a steady producer (`shardwise produce --aggregate`, 1 000
//!   records/s) and, beside it, one marker record every 100 ms whose word
//!   appears nowhere else; put→counted is the time from sending a marker to
//!   seeing its word in the counts table (polled every 50 ms).
//! - efo: enhanced fan-out beside polling in one run: CPU per million
//!   user records from a backlog, and put→counted latency as above.
//! - failover: two workers on 4 shards; `kill -9` one, then SIGTERM the
//!   other: how long until the survivor owns every lease.
//! - memory: one worker holding 32 shards: resident set size.
//!
//! Figures are ratios against a baseline measured in the same run where
//! there is one; the machines are shared and noisy.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::{BTreeMap, HashMap};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use common::emf::{parse_all, sum_where};
use common::worker_process::WorkerProcess;
use common::{Put, expected_counts, local_clients, unique_name};
use shardwise::aggregation::{self, UserRecord};
use shardwise::aws::Clients;
use shardwise::sink;
use shardwise::worker::lease::{Lease, LeaseTable};

const SHARDS: u32 = 4;
const ROUNDS: usize = 3;

fn main() {
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wanted = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
    if std::env::var_os("AWS_ENDPOINT_URL_KINESIS").is_none()
        && std::env::var_os("AWS_ENDPOINT_URL").is_none()
    {
        eprintln!("no local AWS in this shell: run `eval \"$(localstack/up)\"` first");
        std::process::exit(2);
    }
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let clients = local_clients().await;
        if wanted("throughput") {
            throughput(&clients).await;
        }
        if wanted("latency") {
            // The default, then the setting that trades latency for writes.
            latency(&clients, "--idle-time 1s", &["--idle-time", "1s"]).await;
            latency(&clients, "--idle-time 3s", &["--idle-time", "3s"]).await;
        }
        if wanted("efo") {
            efo(&clients).await;
        }
        if wanted("failover") {
            failover(&clients).await;
        }
        if wanted("memory") {
            memory(&clients).await;
        }
    });
}

// ---------------------------------------------------------------- helpers

/// CPU seconds (user + system) a process has used so far.
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) may hold spaces: count from its ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15, i.e. 11 and 12 after the ')'.
    (ticks(11) + ticks(12)) / clock_ticks()
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// `VmRSS` and `VmHWM` (peak) of a process, in MiB.
fn memory_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kib| kib.parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The time of the first log line holding `message` (the human format
/// starts each line with an RFC 3339 timestamp).
fn logged_at(log: &str, message: &str) -> Option<SystemTime> {
    let line = log.lines().find(|l| l.contains(message))?;
    let stamp = line.split_whitespace().next()?;
    humantime::parse_rfc3339(stamp).ok()
}

fn producer_text(rng: &mut fastrand::Rng) -> Vec<u8> {
    (0..10)
        .map(|_| rng.u8(0..10).to_string())
        .collect::<Vec<_>>()
        .join(" ")
        .into_bytes()
}

async fn totals(clients: &Clients, counts: &str) -> BTreeMap<String, u64> {
    sink::read_totals(&clients.dynamodb, counts)
        .await
        .unwrap_or_default()
        .into_iter()
        .collect()
}

async fn new_stream(clients: &Clients, prefix: &str, shards: u32) -> String {
    let stream = unique_name(prefix);
    shardwise::setup::ensure_stream(&clients.kinesis, &stream, shards)
        .await
        .expect("stream");
    stream
}

async fn new_counts(clients: &Clients) -> String {
    let counts = unique_name("bench-counts");
    sink::create_table_if_missing(&clients.dynamodb, &counts)
        .await
        .expect("counts table");
    counts
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// DynamoDB writes a worker reported in its EMF metrics: the sink's
/// `UpdateItem`s, checkpoints, renewals, takes and releases.
fn dynamodb_writes(emf: &str) -> f64 {
    let data = parse_all(emf);
    [
        "SinkWrites",
        "CheckpointsWritten",
        "LeaseRenewals",
        "LeasesTaken",
        "LeasesReleased",
    ]
    .iter()
    .map(|name| sum_where(&data, name, &[]))
    .sum()
}

// ------------------------------------------------------------- throughput

/// Reads every shard to its end with a bare GetRecords loop (one task per
/// shard, at most 5 calls a second per shard as Kinesis allows, like the
/// worker); returns the Kinesis records read.
async fn bare_loop(kinesis: &aws_sdk_kinesis::Client, stream: &str) -> usize {
    use aws_sdk_kinesis::types::ShardIteratorType;
    let shards = kinesis
        .list_shards()
        .stream_name(stream)
        .send()
        .await
        .expect("ListShards");
    let tasks: Vec<_> = shards
        .shards()
        .iter()
        .map(|shard| {
            let (kinesis, stream, shard_id) = (
                kinesis.clone(),
                stream.to_string(),
                shard.shard_id().to_string(),
            );
            tokio::spawn(async move {
                let mut iterator = kinesis
                    .get_shard_iterator()
                    .stream_name(&stream)
                    .shard_id(&shard_id)
                    .shard_iterator_type(ShardIteratorType::TrimHorizon)
                    .send()
                    .await
                    .expect("GetShardIterator")
                    .shard_iterator;
                let mut read = 0;
                let mut last_call = Instant::now() - Duration::from_millis(200);
                while let Some(it) = iterator {
                    tokio::time::sleep(
                        Duration::from_millis(200).saturating_sub(last_call.elapsed()),
                    )
                    .await;
                    last_call = Instant::now();
                    let page = match kinesis
                        .get_records()
                        .shard_iterator(it.clone())
                        .limit(10_000)
                        .send()
                        .await
                    {
                        Ok(page) => page,
                        // The engine stalls now and then on a loaded
                        // machine; the worker retries, and so does the
                        // baseline, with the same iterator.
                        Err(e) => {
                            eprintln!("  loop: GetRecords failed ({e}); retrying");
                            iterator = Some(it);
                            continue;
                        }
                    };
                    read += page.records().len();
                    if page.records().is_empty() && page.millis_behind_latest == Some(0) {
                        break;
                    }
                    iterator = page.next_shard_iterator;
                }
                read
            })
        })
        .collect();
    let mut read = 0;
    for task in tasks {
        read += task.await.expect("shard task");
    }
    read
}

struct WorkerRun {
    seconds: f64,
    cpu: f64,
    writes: f64,
}

async fn count_with_worker(
    clients: &Clients,
    stream: &str,
    expected: &BTreeMap<String, u64>,
    extra: &[&str],
) -> WorkerRun {
    let counts = new_counts(clients).await;
    let app = unique_name("bench-tp");
    let mut flags = vec!["--worker-id", "bench"];
    flags.extend_from_slice(extra);
    let mut worker = WorkerProcess::start(&app, stream, &counts, &flags, &[]);
    let pid = worker.pid().to_string();
    let done = loop {
        if totals(clients, &counts).await == *expected {
            break SystemTime::now();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let cpu = cpu_seconds(&pid);
    assert_eq!(worker.stop(), Some(0), "{}", worker.log());
    let started = logged_at(&worker.log(), "lease taken").expect("a lease taken");
    WorkerRun {
        seconds: done
            .duration_since(started)
            .unwrap_or_default()
            .as_secs_f64(),
        cpu,
        writes: dynamodb_writes(&worker.stdout()),
    }
}

/// A stream of SHARDS shards pre-loaded with `user_records` of the
/// producer's text, KPL-aggregated; returns it, the exact counts, and how
/// many Kinesis records hold them.
async fn preloaded(
    clients: &Clients,
    user_records: usize,
) -> (String, BTreeMap<String, u64>, usize) {
    let stream = new_stream(clients, "bench-tp", SHARDS).await;
    let mut rng = fastrand::Rng::with_seed(7);
    let texts: Vec<Vec<u8>> = (0..user_records).map(|_| producer_text(&mut rng)).collect();
    let expected = expected_counts(texts.iter().map(Vec::as_slice));
    let users = texts.iter().enumerate().map(|(i, data)| UserRecord {
        partition_key: format!("key-{}", i % 1000),
        explicit_hash_key: None,
        data: data.clone(),
    });
    // 16 KiB aggregates (≈ 470 user records): what a KPL buffering for
    // 100 ms at a few thousand records a second puts.
    let puts: Vec<Put> = aggregation::aggregate_all(users, 16 * 1024)
        .into_iter()
        .map(|a| Put {
            partition_key: a.partition_key,
            explicit_hash_key: a.explicit_hash_key,
            data: a.data,
        })
        .collect();
    let loading = Instant::now();
    common::put_records(&clients.kinesis, &stream, &puts).await;
    println!(
        "loaded {user_records} user records in {} aggregated records over {SHARDS} shards in {:.1}s",
        puts.len(),
        loading.elapsed().as_secs_f64()
    );
    (stream, expected, puts.len())
}

async fn throughput(clients: &Clients) {
    const USER_RECORDS: usize = 600_000;
    let (stream, expected, aggregates) = preloaded(clients, USER_RECORDS).await;
    let me = std::process::id().to_string();
    let (mut loop_rates, mut loop_cpus) = (Vec::new(), Vec::new());
    let (mut worker_rates, mut worker_cpus, mut writes) = (Vec::new(), Vec::new(), Vec::new());
    let (mut quiet_rates, mut quiet_cpus) = (Vec::new(), Vec::new());
    let millions = USER_RECORDS as f64 / 1e6;
    for round in 1..=ROUNDS {
        let (cpu_before, start) = (cpu_seconds(&me), Instant::now());
        let read = bare_loop(&clients.kinesis, &stream).await;
        let seconds = start.elapsed().as_secs_f64();
        assert_eq!(read, aggregates, "the loop read every record");
        loop_rates.push(USER_RECORDS as f64 / seconds);
        loop_cpus.push((cpu_seconds(&me) - cpu_before) / millions);

        let run = count_with_worker(clients, &stream, &expected, &["--metrics", "emf"]).await;
        worker_rates.push(USER_RECORDS as f64 / run.seconds);
        worker_cpus.push(run.cpu / millions);
        writes.push(run.writes / USER_RECORDS as f64 * 1000.0);

        let quiet = count_with_worker(clients, &stream, &expected, &["--metrics", "off"]).await;
        quiet_rates.push(USER_RECORDS as f64 / quiet.seconds);
        quiet_cpus.push(quiet.cpu / millions);
        println!(
            "  round {round}: loop {:.0}/s ({:.2} CPU s/M); worker {:.0}/s ({:.2} CPU s/M, \
             {:.2} writes/1000); worker, metrics off {:.0}/s ({:.2} CPU s/M)",
            loop_rates[round - 1],
            loop_cpus[round - 1],
            worker_rates[round - 1],
            worker_cpus[round - 1],
            writes[round - 1],
            quiet_rates[round - 1],
            quiet_cpus[round - 1],
        );
    }
    let ratios: Vec<f64> = worker_rates
        .iter()
        .zip(&loop_rates)
        .map(|(w, l)| w / l)
        .collect();
    let cpu_ratios: Vec<f64> = worker_cpus
        .iter()
        .zip(&loop_cpus)
        .map(|(w, l)| w / l)
        .collect();
    let metrics_ratios: Vec<f64> = worker_cpus
        .iter()
        .zip(&quiet_cpus)
        .map(|(on, off)| on / off)
        .collect();
    println!(
        "throughput: worker/loop records/s = {:.2} (median of {ROUNDS}; goal >= 0.9), \
         worker {:.0}/s, loop {:.0}/s",
        median(ratios),
        median(worker_rates),
        median(loop_rates)
    );
    println!(
        "cpu: worker {:.2} CPU s per million user records, loop {:.2} ({:.1}x the loop)",
        median(worker_cpus.clone()),
        median(loop_cpus),
        median(cpu_ratios)
    );
    println!(
        "metrics: CPU with EMF metrics / without = {:.2} (median of {ROUNDS})",
        median(metrics_ratios)
    );
    println!(
        "writes: {:.2} DynamoDB writes per 1000 records from a backlog (goal <= 15)",
        median(writes)
    );
}

// ---------------------------------------------------------------- latency

/// Put→counted latency and steady-state writes of a worker started with
/// `extra` flags (`label` names them in the figures); returns (p50, p99).
async fn latency(clients: &Clients, label: &str, extra: &[&str]) -> (f64, f64) {
    const MARKERS: usize = 300;
    let stream = new_stream(clients, "bench-lat", SHARDS).await;
    let counts = new_counts(clients).await;
    let app = unique_name("bench-lat");
    let mut flags = vec!["--worker-id", "bench"];
    flags.extend_from_slice(extra);
    let mut worker = WorkerProcess::start(&app, &stream, &counts, &flags, &[]);
    let table = LeaseTable::new(clients.dynamodb.clone(), &app);
    while table
        .list()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|l| l.owner.is_some())
        .count()
        < SHARDS as usize
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let report = std::env::temp_dir().join(format!("{app}-producer.json"));
    let mut producer = Command::new(env!("CARGO_BIN_EXE_shardwise"))
        .args([
            "produce",
            "--stream",
            &stream,
            "--rate",
            "1000",
            "--aggregate",
        ])
        .args(["--duration", &format!("{}s", MARKERS / 10 + 5)])
        .arg("--totals-json")
        .arg(&report)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("shardwise produce");

    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let seen: Arc<Mutex<HashMap<String, Duration>>> = Arc::default();
    let watching = tokio_util::sync::CancellationToken::new();
    let watcher = {
        let (dynamodb, counts, sent, seen, stop) = (
            clients.dynamodb.clone(),
            counts.clone(),
            sent.clone(),
            seen.clone(),
            watching.clone(),
        );
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                let words = sink::read_totals(&dynamodb, &counts)
                    .await
                    .unwrap_or_default();
                let now = Instant::now();
                {
                    let sent = sent.lock().expect("lock");
                    let mut seen = seen.lock().expect("lock");
                    for (word, _) in words {
                        if let Some(at) = sent.get(&word) {
                            seen.entry(word).or_insert_with(|| now - *at);
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut ticks = tokio::time::interval(Duration::from_millis(100));
    for n in 0..MARKERS {
        ticks.tick().await;
        let word = format!("marker{n}");
        sent.lock()
            .expect("lock")
            .insert(word.clone(), Instant::now());
        clients
            .kinesis
            .put_record()
            .stream_name(&stream)
            .partition_key(format!("marker-{n}"))
            .data(aws_sdk_kinesis::primitives::Blob::new(word.into_bytes()))
            .send()
            .await
            .expect("PutRecord");
    }
    let waiting = Instant::now();
    while seen.lock().expect("lock").len() < MARKERS && waiting.elapsed() < Duration::from_secs(30)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    watching.cancel();
    let _ = watcher.await;
    let _ = producer.wait();
    let produced: u64 = std::fs::read_to_string(&report)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["user_records"].as_u64())
        .unwrap_or(0);
    // Let the worker finish the producer's tail before counting writes.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(worker.stop(), Some(0), "{}", worker.log());
    let writes = dynamodb_writes(&worker.stdout());

    let mut latencies: Vec<f64> = seen
        .lock()
        .expect("lock")
        .values()
        .map(|d| d.as_secs_f64())
        .collect();
    latencies.sort_by(f64::total_cmp);
    let (p50, p99) = (percentile(&latencies, 50.0), percentile(&latencies, 99.0));
    println!(
        "latency: put->counted p50 {p50:.3}s, p99 {p99:.3}s, max {:.3}s over {} of {MARKERS} markers \
         beside a producer at 1000 records/s, {SHARDS} shards, {label} \
         (goal p50 <= 1.2s, p99 <= 3s)",
        latencies.last().copied().unwrap_or(f64::NAN),
        latencies.len()
    );
    // Each marker's word is unique: one write of its own, left out so the
    // figure is the producer's text's.
    let writes = writes - MARKERS as f64;
    let records = produced as f64;
    println!(
        "writes: {:.1} DynamoDB writes per 1000 records of the producer's text at a steady 1000 \
         records/s, {label} ({writes:.0} writes for {records:.0} records; goal <= 15)",
        writes / records * 1000.0
    );
    (p50, p99)
}

// -------------------------------------------------------------------- efo

/// Enhanced fan-out beside polling, in one run: CPU per million user
/// records from a backlog (alternate rounds on one pre-loaded stream), and
/// put→counted latency under a steady producer.
async fn efo(clients: &Clients) {
    const USER_RECORDS: usize = 300_000;
    let (stream, expected, _) = preloaded(clients, USER_RECORDS).await;
    let millions = USER_RECORDS as f64 / 1e6;
    let (mut polling, mut fanout) = (Vec::new(), Vec::new());
    for round in 1..=ROUNDS {
        let poll = count_with_worker(clients, &stream, &expected, &["--metrics", "off"]).await;
        let push = count_with_worker(
            clients,
            &stream,
            &expected,
            &["--metrics", "off", "--retrieval", "efo"],
        )
        .await;
        polling.push(poll.cpu / millions);
        fanout.push(push.cpu / millions);
        println!(
            "  round {round}: polling {:.0}/s ({:.2} CPU s/M); efo {:.0}/s ({:.2} CPU s/M)",
            USER_RECORDS as f64 / poll.seconds,
            polling[round - 1],
            USER_RECORDS as f64 / push.seconds,
            fanout[round - 1],
        );
    }
    let ratios: Vec<f64> = fanout.iter().zip(&polling).map(|(f, p)| f / p).collect();
    println!(
        "efo cpu: {:.2} CPU s per million user records, polling {:.2}: efo/polling = {:.2} (median of {ROUNDS})",
        median(fanout),
        median(polling),
        median(ratios)
    );
    let (poll_p50, poll_p99) =
        latency(clients, "polling, --idle-time 1s", &["--idle-time", "1s"]).await;
    let (efo_p50, efo_p99) = latency(clients, "efo", &["--retrieval", "efo"]).await;
    println!(
        "efo latency: p50 {efo_p50:.3}s / p99 {efo_p99:.3}s, polling p50 {poll_p50:.3}s / p99 {poll_p99:.3}s: \
         efo/polling p50 = {:.2} (goal: efo p50 <= 0.3s)",
        efo_p50 / poll_p50
    );
}

// --------------------------------------------------------------- failover

async fn owners(table: &LeaseTable) -> Vec<Option<String>> {
    table
        .list()
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|l: Lease| l.owner)
        .collect()
}

async fn until_all_owned_by(table: &LeaseTable, id: &str) -> Duration {
    let start = Instant::now();
    loop {
        let owners = owners(table).await;
        if owners.len() == SHARDS as usize && owners.iter().all(|o| o.as_deref() == Some(id)) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{id} never owned all"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn until_balanced(table: &LeaseTable) {
    loop {
        let owners = owners(table).await;
        let mut by: BTreeMap<Option<String>, usize> = BTreeMap::new();
        for owner in owners {
            *by.entry(owner).or_default() += 1;
        }
        if by.len() == 2
            && by.values().all(|n| *n == SHARDS as usize / 2)
            && !by.contains_key(&None)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn failover(clients: &Clients) {
    // Defaults: failover 10s, take interval a tenth of it.
    let (failover, take) = (10.0, 1.0);
    let (mut killed, mut stopped) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let stream = new_stream(clients, "bench-fo", SHARDS).await;
        let counts = new_counts(clients).await;
        let app = unique_name("bench-fo");
        let table = LeaseTable::new(clients.dynamodb.clone(), &app);
        let start =
            |id: &str| WorkerProcess::start(&app, &stream, &counts, &["--worker-id", id], &[]);
        let mut a = start("a");
        let mut b = start("b");
        until_balanced(&table).await;
        // A crash comes at any point of the renewal cycle (a third of the
        // failover time), not just after a renewal.
        tokio::time::sleep(Duration::from_millis(fastrand::u64(0..3333))).await;
        a.signal("-KILL");
        a.wait(Duration::from_secs(10));
        killed.push(until_all_owned_by(&table, "b").await.as_secs_f64());
        let mut c = start("c");
        until_balanced(&table).await;
        b.signal("-TERM");
        stopped.push(until_all_owned_by(&table, "c").await.as_secs_f64());
        assert_eq!(b.wait(Duration::from_secs(30)).code(), Some(0));
        assert_eq!(c.stop(), Some(0));
    }
    let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    println!(
        "failover: after kill -9, shards resumed in {:.2}s median, {:.2}s max of {ROUNDS} \
         (goal <= failover {failover}s + take interval {take}s = {}s; median / failover time \
         {:.2}); after SIGTERM in {:.2}s median, {:.2}s max (goal <= 2s)",
        median(killed.clone()),
        max(&killed),
        failover + take,
        median(killed.clone()) / failover,
        median(stopped.clone()),
        max(&stopped),
    );
}

// ----------------------------------------------------------------- memory

async fn memory(clients: &Clients) {
    const MANY: u32 = 32;
    let stream = new_stream(clients, "bench-mem", MANY).await;
    let counts = new_counts(clients).await;
    let mut rng = fastrand::Rng::with_seed(3);
    let texts: Vec<Vec<u8>> = (0..6400).map(|_| producer_text(&mut rng)).collect();
    common::put_records(&clients.kinesis, &stream, &common::puts_of(&texts, "mem")).await;
    let expected = expected_counts(texts.iter().map(Vec::as_slice));
    let app = unique_name("bench-mem");
    let mut worker = WorkerProcess::start(&app, &stream, &counts, &["--worker-id", "mem"], &[]);
    while totals(clients, &counts).await != expected {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A few idle polls of every shard, then the figure.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (rss, peak) = memory_mib(worker.pid());
    assert_eq!(worker.stop(), Some(0), "{}", worker.log());
    println!(
        "memory: one worker holding {MANY} shards after counting 6400 records: RSS {rss:.1} MiB, \
         peak {peak:.1} MiB (goal <= 40 MB)"
    );
}
