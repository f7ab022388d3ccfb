//! The lease coordinator: renews what this worker holds, takes expired and
//! free leases up to its fair share, steals from the most loaded worker when
//! still below it, creates leases for new shards, and runs one consumer per
//! held lease. All of it through conditional writes (see `lease.rs`).
//!
//! Expiry is judged on this worker's own monotonic clock: a lease is
//! expired when its counter has not moved for the failover time since this
//! worker first saw that counter, or when it has no owner. No clock sync.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::consumer::{self, ConsumerContext, ConsumerEnd, HeldLease};
use super::lease::{self, Lease, LeaseError, LeaseTable};
use super::{StreamRef, WorkerConfig};
use crate::aws::describe_error;

/// How often shard sync lists the stream's shards (new shards also arrive
/// through `ChildShards` at a parent's end, at once).
const SHARD_SYNC_INTERVAL: Duration = Duration::from_secs(60);

/// What this worker has seen of another's lease: a counter, and when this
/// worker first saw it (its own clock).
struct Seen {
    counter: u64,
    since: Instant,
}

struct Running {
    held: Arc<HeldLease>,
    /// Graceful stop for this shard's consumer (a child of the root).
    shutdown: CancellationToken,
}

pub struct Coordinator {
    config: WorkerConfig,
    table: LeaseTable,
    context: ConsumerContext,
    owner: Arc<str>,
    seen: HashMap<String, Seen>,
    running: HashMap<String, Running>,
    tasks: JoinSet<(String, ConsumerEnd)>,
    /// Shards whose consumer ended at SHARD_END (no longer renewed).
    finished: HashSet<String>,
}

impl Coordinator {
    pub fn new(config: WorkerConfig, table: LeaseTable, context: ConsumerContext) -> Self {
        let owner: Arc<str> = config.worker_id.as_str().into();
        Self {
            config,
            table,
            context,
            owner,
            seen: HashMap::new(),
            running: HashMap::new(),
            tasks: JoinSet::new(),
            finished: HashSet::new(),
        }
    }

    /// Runs until `shutdown` fires, then drains and releases.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut renew = tokio::time::interval(self.config.renew_interval);
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Taking has its own timer: an expired lease is taken within one
        // take interval of expiring, whatever the renewal period.
        let mut take = tokio::time::interval(self.config.take_interval);
        take.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sync =
            tokio::time::interval_at(Instant::now() + SHARD_SYNC_INTERVAL, SHARD_SYNC_INTERVAL);
        sync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                _ = renew.tick() => self.renew_all().await,
                Some(done) = self.tasks.join_next(), if !self.tasks.is_empty() => {
                    self.consumer_ended(done);
                }
                _ = take.tick() => match self.table.list().await {
                    Ok(leases) => self.take_and_balance(leases, &shutdown).await,
                    Err(e) => warn!(error = %e, "could not list leases; will try again"),
                },
                _ = sync.tick() => {
                    if let Err(e) = shard_sync(&self.context, &self.table).await {
                        warn!(error = %e, "shard sync failed; will try again");
                    }
                }
            }
        }
        self.drain().await;
    }

    fn consumer_ended(&mut self, done: Result<(String, ConsumerEnd), tokio::task::JoinError>) {
        let Ok((key, end)) = done else {
            warn!("a shard consumer task failed");
            return;
        };
        match end {
            ConsumerEnd::LeaseLost => {
                self.running.remove(&key);
            }
            ConsumerEnd::ShardEnded => {
                self.running.remove(&key);
                self.finished.insert(key);
            }
            // Stopped for shutdown: the lease is still held, and the drain
            // releases it (regression: it used to be forgotten here when a
            // consumer stopped before the coordinator saw the signal).
            ConsumerEnd::ShutDown => {}
        }
    }

    async fn renew_all(&mut self) {
        let held: Vec<Arc<HeldLease>> = self.running.values().map(|r| r.held.clone()).collect();
        let results =
            futures_util::future::join_all(held.iter().map(|h| h.renew(&self.table))).await;
        for (h, result) in held.iter().zip(results) {
            match result {
                Ok(()) => {}
                Err(LeaseError::Lost { .. }) => {
                    warn!(shard_id = %h.key, worker_id = %self.owner, "lease lost: another worker took it");
                    self.running.remove(&h.key);
                }
                // Not lost: still ours if the next renewal succeeds in time.
                Err(e) => warn!(shard_id = %h.key, error = %e, "lease renewal failed; will retry"),
            }
        }
    }

    async fn take_and_balance(&mut self, leases: Vec<Lease>, shutdown: &CancellationToken) {
        let now = Instant::now();
        let failover = self.config.failover_time;
        // What this worker has observed, on its own clock.
        for lease in &leases {
            let entry = self.seen.entry(lease.key.clone()).or_insert(Seen {
                counter: lease.counter,
                since: now,
            });
            if entry.counter != lease.counter {
                *entry = Seen {
                    counter: lease.counter,
                    since: now,
                };
            }
        }
        let finished: HashSet<&str> = leases
            .iter()
            .filter(|l| l.is_finished())
            .map(|l| l.key.as_str())
            .collect();
        let present: HashSet<&str> = leases.iter().map(|l| l.key.as_str()).collect();
        // A child waits until every parent that has a lease is finished.
        let ready = |l: &Lease| {
            !l.is_finished()
                && !self.finished.contains(&l.key)
                && l.parents
                    .iter()
                    .all(|p| !present.contains(p.as_str()) || finished.contains(p.as_str()))
        };
        let expired = |l: &Lease| match &l.owner {
            None => true,
            Some(_) => self
                .seen
                .get(&l.key)
                .is_some_and(|s| now.duration_since(s.since) >= failover),
        };
        let eligible: Vec<&Lease> = leases.iter().filter(|l| ready(l)).collect();
        let mut load: HashMap<&str, Vec<&Lease>> = HashMap::new();
        for lease in &eligible {
            if let Some(owner) = &lease.owner
                && !expired(lease)
                && **owner != *self.owner
            {
                load.entry(owner.as_str()).or_default().push(lease);
            }
        }
        let workers = load.len() + 1;
        let mut target = eligible.len().div_ceil(workers);
        if let Some(max) = self.config.max_leases {
            target = target.min(max);
        }
        let mine = self.running.len();
        if mine >= target {
            return;
        }
        let mut wanted = target - mine;
        let mut candidates: Vec<&Lease> = eligible
            .iter()
            .copied()
            .filter(|l| !self.running.contains_key(&l.key) && expired(l))
            .collect();
        fastrand::shuffle(&mut candidates);
        let mut to_take: Vec<(Lease, &'static str)> = candidates
            .into_iter()
            .take(wanted)
            .map(|l| {
                (
                    l.clone(),
                    if l.owner.is_some() { "expired" } else { "free" },
                )
            })
            .collect();
        wanted -= to_take.len();
        // Still below the fair share and nothing expired: steal one lease
        // from the most loaded worker, only if it holds more than the
        // target, so the fleet converges without thrashing.
        if wanted > 0
            && to_take.is_empty()
            && let Some((victim, leases)) = load.iter().max_by_key(|(owner, l)| (l.len(), *owner))
            && leases.len() > target
            && let Some(lease) = leases.get(fastrand::usize(0..leases.len()))
        {
            info!(shard_id = %lease.key, from = %victim, "stealing a lease to balance the load");
            to_take.push(((*lease).clone(), "stolen"));
        }
        for (lease, how) in to_take {
            match self
                .table
                .take(&lease.key, lease.counter, &self.owner)
                .await
            {
                Ok(counter) => {
                    info!(shard_id = %lease.key, worker_id = %self.owner, how, previous_owner = ?lease.owner, "lease taken");
                    self.start_consumer(lease, counter, shutdown);
                }
                Err(LeaseError::Lost { .. }) => {
                    info!(shard_id = %lease.key, "another worker took the lease first");
                }
                Err(e) => warn!(shard_id = %lease.key, error = %e, "could not take the lease"),
            }
        }
    }

    fn start_consumer(&mut self, lease: Lease, counter: u64, shutdown: &CancellationToken) {
        let held = Arc::new(HeldLease::new(
            lease.key.clone(),
            self.owner.clone(),
            counter,
        ));
        let child = shutdown.child_token();
        self.running.insert(
            lease.key.clone(),
            Running {
                held: held.clone(),
                shutdown: child.clone(),
            },
        );
        let context = self.context.clone();
        let key = lease.key.clone();
        self.tasks.spawn(async move {
            let end = consumer::run(context, held, lease, child).await;
            (key, end)
        });
    }

    /// Lets every consumer finish its batch and checkpoint, within the
    /// shutdown timeout, then releases the leases still held.
    async fn drain(&mut self) {
        for running in self.running.values() {
            running.shutdown.cancel();
        }
        let deadline = Instant::now() + self.config.shutdown_timeout;
        while !self.tasks.is_empty() {
            match tokio::time::timeout_at(deadline, self.tasks.join_next()).await {
                Ok(Some(done)) => {
                    if let Ok((key, ConsumerEnd::ShardEnded)) = &done {
                        self.running.remove(key);
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    warn!("shutdown timeout reached; stopping the remaining consumers");
                    self.tasks.abort_all();
                    break;
                }
            }
        }
        let held: Vec<Arc<HeldLease>> = self.running.values().map(|r| r.held.clone()).collect();
        for h in held {
            if h.lost.is_cancelled() {
                continue;
            }
            match h.release(&self.table).await {
                Ok(()) => info!(shard_id = %h.key, worker_id = %self.owner, "lease released"),
                Err(e) => {
                    warn!(shard_id = %h.key, error = %e, "could not release the lease; it will expire")
                }
            }
        }
    }
}

/// Creates a lease for every shard of the stream that has none (at the
/// initial position; children after their parents through `parentShardId`).
///
/// # Errors
/// When the stream's shards cannot be listed or the table written.
pub async fn shard_sync(context: &ConsumerContext, table: &LeaseTable) -> Result<usize, String> {
    let existing: HashSet<String> = table
        .list()
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|l| l.key)
        .collect();
    let shards = list_shards(&context.kinesis, &context.stream).await?;
    let mut created = 0;
    for shard in shards {
        if existing.contains(&shard.shard_id) {
            continue;
        }
        let parents: Vec<String> = shard
            .parent_shard_id
            .iter()
            .chain(shard.adjacent_parent_shard_id.iter())
            .cloned()
            .collect();
        let lease = Lease {
            key: shard.shard_id.clone(),
            checkpoint: if parents.iter().any(|p| existing.contains(p)) {
                // A child of a shard we track starts at its beginning.
                lease::TRIM_HORIZON.to_string()
            } else {
                context.initial_position.sentinel().to_string()
            },
            parents,
            starting_hash_key: shard
                .hash_key_range
                .as_ref()
                .map(|r| r.starting_hash_key.clone()),
            ending_hash_key: shard
                .hash_key_range
                .as_ref()
                .map(|r| r.ending_hash_key.clone()),
            stream: Some(context.stream.name().to_string()),
            ..Lease::default()
        };
        if table.create(&lease).await.map_err(|e| e.to_string())? {
            created += 1;
        }
    }
    if created > 0 {
        info!(created, "shard sync created leases");
    }
    Ok(created)
}

/// Every shard of the stream (paged ListShards).
///
/// # Errors
/// A message naming the stream and endpoint.
pub async fn list_shards(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &StreamRef,
) -> Result<Vec<aws_sdk_kinesis::types::Shard>, String> {
    let mut shards = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let request = match &token {
            // With a token, the stream must not be named again.
            Some(t) => kinesis.list_shards().next_token(t),
            None => stream.apply_list_shards(kinesis.list_shards()),
        };
        let page = request.send().await.map_err(|e| {
            format!(
                "could not list the shards of stream \"{}\" at {}: {}",
                stream.name(),
                crate::aws::endpoint_description("KINESIS"),
                describe_error(&e)
            )
        })?;
        shards.extend(page.shards().iter().cloned());
        token = page.next_token;
        if token.is_none() {
            return Ok(shards);
        }
    }
}
