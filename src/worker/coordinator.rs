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
use crate::telemetry::{self, LeaseEvent};

/// How often shard sync lists the stream's shards (new shards also arrive
/// through `ChildShards` at a parent's end, at once).
const SHARD_SYNC_INTERVAL: Duration = Duration::from_secs(60);

/// What this worker has seen of another's lease: a counter, and when this
/// worker first saw it (its own clock).
#[derive(Debug, Clone, Copy)]
struct Seen {
    counter: u64,
    since: Instant,
}

/// Every lease's counter as this worker last saw it change, on its own
/// monotonic clock: expiry needs no clock sync between workers.
#[derive(Debug, Default)]
pub struct Observations {
    seen: HashMap<String, Seen>,
}

impl Observations {
    /// Notes the counters of a fresh scan made at `now`.
    pub fn observe(&mut self, leases: &[Lease], now: Instant) {
        for lease in leases {
            let seen = self.seen.entry(lease.key.clone()).or_insert(Seen {
                counter: lease.counter,
                since: now,
            });
            if seen.counter != lease.counter {
                *seen = Seen {
                    counter: lease.counter,
                    since: now,
                };
            }
        }
    }

    /// Free, or its counter has not moved for `failover` on this clock.
    pub fn is_expired(&self, lease: &Lease, now: Instant, failover: Duration) -> bool {
        match &lease.owner {
            None => true,
            Some(_) => self.seen.get(&lease.key).is_some_and(|s| {
                s.counter == lease.counter && now.duration_since(s.since) >= failover
            }),
        }
    }

    /// When the earliest of `leases` held by another worker and not yet
    /// expired will expire, if nothing renews it first.
    pub fn next_expiry(&self, leases: &[Lease], me: &str, failover: Duration) -> Option<Instant> {
        leases
            .iter()
            .filter(|l| l.owner.as_deref().is_some_and(|o| o != me))
            .filter_map(|l| {
                let seen = self.seen.get(&l.key)?;
                (seen.counter == l.counter).then_some(seen.since + failover)
            })
            .filter(|at| *at > Instant::now())
            .min()
    }
}

/// How a lease is to be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    Free,
    Expired,
    Stolen,
}

impl How {
    fn as_str(self) -> &'static str {
        match self {
            How::Free => "free",
            How::Expired => "expired",
            How::Stolen => "stolen",
        }
    }
}

/// Which leases this worker should take now. Pure but for the shuffle:
/// - eligible leases: not finished, and every parent that has a lease is
///   at SHARD_END (a child waits for its parents);
/// - fair share: ceil(eligible ÷ live workers), live workers being the
///   distinct owners of unexpired eligible leases plus this one, capped by
///   `max_leases`;
/// - below it: expired or free leases first; if there are none, one lease
///   stolen from the most loaded worker, only while it holds more than the
///   fair share (so the fleet converges without thrashing).
pub fn plan_takes(
    leases: &[Lease],
    observations: &Observations,
    now: Instant,
    failover: Duration,
    me: &str,
    held: &HashSet<&str>,
    max_leases: Option<usize>,
) -> Vec<(Lease, How)> {
    let finished: HashSet<&str> = leases
        .iter()
        .filter(|l| l.is_finished())
        .map(|l| l.key.as_str())
        .collect();
    let present: HashSet<&str> = leases.iter().map(|l| l.key.as_str()).collect();
    let ready = |l: &Lease| {
        !l.is_finished()
            && l.parents
                .iter()
                .all(|p| !present.contains(p.as_str()) || finished.contains(p.as_str()))
    };
    let expired = |l: &Lease| observations.is_expired(l, now, failover);
    let eligible: Vec<&Lease> = leases.iter().filter(|l| ready(l)).collect();
    let mut load: HashMap<&str, Vec<&Lease>> = HashMap::new();
    for lease in &eligible {
        if let Some(owner) = &lease.owner
            && owner != me
            && !expired(lease)
        {
            load.entry(owner.as_str()).or_default().push(lease);
        }
    }
    let mut target = eligible.len().div_ceil(load.len() + 1);
    if let Some(max) = max_leases {
        target = target.min(max);
    }
    if held.len() >= target {
        return Vec::new();
    }
    let wanted = target - held.len();
    // A lease this worker holds may look expired while its renewals fail
    // (DynamoDB unreachable): it is never taken twice. One in its name that
    // it does not hold was left by an earlier process with the same worker
    // id (restarted after `kill -9`): like anyone's, it is taken once
    // expired, as KCL does.
    let mut candidates: Vec<&Lease> = eligible
        .iter()
        .copied()
        .filter(|l| !(l.owner.as_deref() == Some(me) && held.contains(l.key.as_str())))
        .filter(|l| expired(l))
        .collect();
    fastrand::shuffle(&mut candidates);
    let mut takes: Vec<(Lease, How)> = candidates
        .into_iter()
        .take(wanted)
        .map(|l| {
            let how = if l.owner.is_some() {
                How::Expired
            } else {
                How::Free
            };
            (l.clone(), how)
        })
        .collect();
    if takes.is_empty()
        && let Some((_, leases)) = load.iter().max_by_key(|(owner, l)| (l.len(), **owner))
        && leases.len() > target
        && let Some(lease) = leases.get(fastrand::usize(0..leases.len()))
    {
        takes.push(((*lease).clone(), How::Stolen));
    }
    takes
}

/// Sleeps until `at` (forever if `None`; the branch is disabled then).
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
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
    observations: Observations,
    running: HashMap<String, Running>,
    tasks: JoinSet<(String, ConsumerEnd)>,
    /// Shards whose consumer ended at SHARD_END (no longer renewed).
    finished: HashSet<String>,
    /// When a peer's lease expires unless renewed: a scan is made then,
    /// not at the next take tick, so a crashed worker's shards move within
    /// the failover time plus one take interval (the lag of seeing its
    /// last renewal) of that renewal.
    next_expiry: Option<Instant>,
}

impl Coordinator {
    pub fn new(config: WorkerConfig, table: LeaseTable, context: ConsumerContext) -> Self {
        let owner: Arc<str> = config.worker_id.as_str().into();
        Self {
            config,
            table,
            context,
            owner,
            observations: Observations::default(),
            running: HashMap::new(),
            tasks: JoinSet::new(),
            finished: HashSet::new(),
            next_expiry: None,
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
                _ = take.tick() => self.scan_and_take(&shutdown).await,
                _ = sleep_until_some(self.next_expiry), if self.next_expiry.is_some() => {
                    self.next_expiry = None;
                    self.scan_and_take(&shutdown).await;
                }
                _ = sync.tick() => match shard_sync(&self.context, &self.table).await {
                    Ok(_) => telemetry::shard_synced(&self.owner),
                    Err(e) => warn!(error = %e, "shard sync failed; will try again"),
                },
            }
        }
        self.drain().await;
    }

    async fn scan_and_take(&mut self, shutdown: &CancellationToken) {
        match self.table.list().await {
            Ok(leases) => self.take_and_balance(leases, shutdown).await,
            Err(e) => warn!(error = %e, "could not list leases; will try again"),
        }
    }

    fn consumer_ended(&mut self, done: Result<(String, ConsumerEnd), tokio::task::JoinError>) {
        let Ok((key, end)) = done else {
            warn!("a shard consumer task failed");
            return;
        };
        match end {
            ConsumerEnd::LeaseLost => {
                // Counted here unless a renewal found it lost first.
                if self.running.remove(&key).is_some() {
                    telemetry::lease_event(&self.owner, LeaseEvent::Lost);
                }
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
                Ok(()) => telemetry::lease_event(&self.owner, LeaseEvent::Renewed),
                Err(LeaseError::Lost { .. }) => {
                    warn!(shard_id = %h.key, worker_id = %self.owner, "lease lost: another worker took it");
                    if self.running.remove(&h.key).is_some() {
                        telemetry::lease_event(&self.owner, LeaseEvent::Lost);
                    }
                }
                // Not lost: still ours if the next renewal succeeds in time.
                Err(e) => {
                    telemetry::lease_event(&self.owner, LeaseEvent::RenewalFailed);
                    warn!(shard_id = %h.key, error = %e, "lease renewal failed; will retry");
                }
            }
        }
        telemetry::leases_held(&self.owner, self.running.len());
    }

    async fn take_and_balance(&mut self, leases: Vec<Lease>, shutdown: &CancellationToken) {
        self.clean_up_finished(&leases).await;
        let now = Instant::now();
        self.observations.observe(&leases, now);
        // Shards this worker finished are not taken again, even before the
        // table shows their SHARD_END.
        let leases: Vec<Lease> = leases
            .into_iter()
            .filter(|l| !self.finished.contains(&l.key))
            .collect();
        self.next_expiry =
            self.observations
                .next_expiry(&leases, &self.owner, self.config.failover_time);
        let held: HashSet<&str> = self.running.keys().map(String::as_str).collect();
        let takes = plan_takes(
            &leases,
            &self.observations,
            now,
            self.config.failover_time,
            &self.owner,
            &held,
            self.config.max_leases,
        );
        for (lease, how) in takes {
            if how == How::Stolen {
                info!(shard_id = %lease.key, from = ?lease.owner, "stealing a lease to balance the load");
            }
            match self
                .table
                .take(
                    &lease.key,
                    lease.counter,
                    &self.owner,
                    self.context.retrieval.name(),
                )
                .await
            {
                Ok(counter) => {
                    info!(shard_id = %lease.key, worker_id = %self.owner, how = how.as_str(), previous_owner = ?lease.owner, "lease taken");
                    telemetry::lease_event(&self.owner, LeaseEvent::Taken);
                    if how == How::Stolen {
                        telemetry::lease_event(&self.owner, LeaseEvent::Stolen);
                    }
                    self.start_consumer(lease, counter, shutdown);
                }
                Err(LeaseError::Lost { .. }) => {
                    info!(shard_id = %lease.key, "another worker took the lease first");
                }
                Err(e) => warn!(shard_id = %lease.key, error = %e, "could not take the lease"),
            }
        }
        telemetry::leases_held(&self.owner, self.running.len());
    }

    /// Deletes the leases of finished shards whose children have all
    /// started, as KCL's lease cleanup does: they are no longer needed to
    /// hold the children back. (Any worker may do it; the delete is
    /// conditional on `SHARD_END`.)
    async fn clean_up_finished(&mut self, leases: &[Lease]) {
        for parent in leases.iter().filter(|l| l.is_finished()) {
            let children: Vec<&Lease> = leases
                .iter()
                .filter(|l| l.parents.contains(&parent.key) || parent.children.contains(&l.key))
                .collect();
            if children.is_empty() || !children.iter().all(|c| c.has_started()) {
                continue;
            }
            match self.table.delete_finished(&parent.key).await {
                Ok(true) => {
                    info!(shard_id = %parent.key, "lease of a finished shard cleaned up: its children have started");
                    self.finished.remove(&parent.key);
                }
                Ok(false) => {}
                Err(e) => {
                    warn!(shard_id = %parent.key, error = %e, "could not clean up a finished lease")
                }
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
                Ok(()) => {
                    info!(shard_id = %h.key, worker_id = %self.owner, "lease released");
                    telemetry::lease_event(&self.owner, LeaseEvent::Released);
                }
                Err(e) => {
                    warn!(shard_id = %h.key, error = %e, "could not release the lease; it will expire")
                }
            }
        }
        telemetry::leases_held(&self.owner, 0);
    }
}

/// Creates a lease for every shard of the stream that has none (at the
/// initial position; children after their parents through `parentShardId`).
///
/// # Errors
/// When the stream's shards cannot be listed or the table written.
pub async fn shard_sync(context: &ConsumerContext, table: &LeaseTable) -> Result<usize, String> {
    let leases = table.list().await.map_err(|e| e.to_string())?;
    // A shard with a child lease was finished (its own lease may have been
    // cleaned up since): never lease it again.
    let has_child: HashSet<String> = leases
        .iter()
        .flat_map(|l| l.parents.iter().cloned())
        .collect();
    let existing: HashSet<String> = leases.into_iter().map(|l| l.key).collect();
    let shards = list_shards(&context.kinesis, &context.stream).await?;
    let mut created = 0;
    for shard in shards {
        if existing.contains(&shard.shard_id) || has_child.contains(&shard.shard_id) {
            continue;
        }
        let parents: Vec<String> = shard
            .parent_shard_id
            .iter()
            .chain(shard.adjacent_parent_shard_id.iter())
            .cloned()
            .collect();
        // A child of a shard we track starts at its beginning.
        let checkpoint = if parents.iter().any(|p| existing.contains(p)) {
            lease::TRIM_HORIZON
        } else {
            context.initial_position.sentinel()
        };
        let lease = Lease::new_shard(
            &shard.shard_id,
            parents,
            shard.hash_key_range.as_ref(),
            context.stream.name(),
            checkpoint,
        );
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

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(key: &str, owner: Option<&str>, counter: u64) -> Lease {
        Lease {
            key: key.into(),
            owner: owner.map(String::from),
            counter,
            checkpoint: lease::TRIM_HORIZON.into(),
            ..Lease::default()
        }
    }

    const FAILOVER: Duration = Duration::from_secs(10);

    fn plan(leases: &[Lease], seen: &Observations, held: &[&str]) -> Vec<(String, How)> {
        let held: HashSet<&str> = held.iter().copied().collect();
        let mut takes: Vec<(String, How)> =
            plan_takes(leases, seen, Instant::now(), FAILOVER, "me", &held, None)
                .into_iter()
                .map(|(l, how)| (l.key, how))
                .collect();
        takes.sort_by(|a, b| a.0.cmp(&b.0));
        takes
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_expires_only_after_the_failover_time_on_this_clock() {
        let mut seen = Observations::default();
        let leases = vec![lease("s0", Some("dead"), 7)];
        seen.observe(&leases, Instant::now());
        tokio::time::advance(FAILOVER - Duration::from_millis(1)).await;
        seen.observe(&leases, Instant::now());
        assert!(plan(&leases, &seen, &[]).is_empty(), "not yet expired");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(plan(&leases, &seen, &[]), vec![("s0".into(), How::Expired)]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_renewed_lease_never_expires() {
        let mut seen = Observations::default();
        for counter in 0..10 {
            seen.observe(&[lease("s0", Some("alive"), counter)], Instant::now());
            tokio::time::advance(FAILOVER / 3).await;
        }
        let now = [lease("s0", Some("alive"), 9)];
        // The last change was seen a third of the failover time ago.
        assert!(!seen.is_expired(&now[0], Instant::now(), FAILOVER));
        assert!(plan(&now, &seen, &[]).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn free_leases_are_taken_up_to_the_fair_share() {
        let seen = Observations::default();
        let leases: Vec<Lease> = (0..6).map(|i| lease(&format!("s{i}"), None, 0)).collect();
        assert_eq!(plan(&leases, &seen, &[]).len(), 6, "alone: all of them");
        let mut with_peer = leases.clone();
        with_peer[0].owner = Some("peer".into());
        with_peer[1].owner = Some("peer".into());
        let mut seen = Observations::default();
        seen.observe(&with_peer, Instant::now());
        let takes = plan(&with_peer, &seen, &[]);
        assert_eq!(takes.len(), 3, "two workers: ceil(6/2)");
        assert!(takes.iter().all(|(_, how)| *how == How::Free));
    }

    #[tokio::test(start_paused = true)]
    async fn a_worker_below_its_share_steals_one_from_the_most_loaded() {
        let leases: Vec<Lease> = (0..6)
            .map(|i| lease(&format!("s{i}"), Some(if i < 4 { "a" } else { "b" }), 1))
            .collect();
        let mut seen = Observations::default();
        seen.observe(&leases, Instant::now());
        let takes = plan(&leases, &seen, &[]);
        assert_eq!(takes.len(), 1, "one at a time");
        assert_eq!(takes[0].1, How::Stolen);
        let stolen = leases
            .iter()
            .find(|l| l.key == takes[0].0)
            .expect("a lease");
        assert_eq!(stolen.owner.as_deref(), Some("a"), "from the most loaded");
    }

    #[tokio::test(start_paused = true)]
    async fn no_stealing_when_nobody_is_above_the_share() {
        // 4 leases, 3 workers: share 2. a holds 2, b and this one 1 each.
        let leases = vec![
            lease("s0", Some("a"), 1),
            lease("s1", Some("a"), 1),
            lease("s2", Some("b"), 1),
            lease("s3", Some("me"), 1),
        ];
        let mut seen = Observations::default();
        seen.observe(&leases, Instant::now());
        assert!(plan(&leases, &seen, &["s3"]).is_empty(), "no thrash");
    }

    #[tokio::test(start_paused = true)]
    async fn a_child_waits_until_its_parents_reach_shard_end() {
        let mut parent = lease("parent", Some("a"), 1);
        let mut child = lease("child", None, 0);
        child.parents = vec!["parent".into(), "gone".into()];
        let mut seen = Observations::default();
        seen.observe(&[parent.clone(), child.clone()], Instant::now());
        let takes = plan(&[parent.clone(), child.clone()], &seen, &[]);
        assert!(
            takes.iter().all(|(key, _)| key != "child"),
            "parent still open"
        );
        parent.checkpoint = lease::SHARD_END.into();
        let takes = plan(&[parent, child], &seen, &[]);
        assert_eq!(
            takes,
            vec![("child".into(), How::Free)],
            "a trimmed parent (no lease) does not block"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_left_in_this_workers_name_is_taken_once_expired_but_never_one_it_holds() {
        // s0: left by an earlier process with this id; s1: held, its
        // renewals failing. Both look the same in the table.
        let leases = vec![lease("s0", Some("me"), 4), lease("s1", Some("me"), 9)];
        let mut seen = Observations::default();
        seen.observe(&leases, Instant::now());
        assert!(plan(&leases, &seen, &["s1"]).is_empty(), "not yet expired");
        tokio::time::advance(FAILOVER).await;
        assert_eq!(
            plan(&leases, &seen, &["s1"]),
            vec![("s0".into(), How::Expired)]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_next_expiry_is_the_earliest_unrenewed_peer_lease() {
        let mut seen = Observations::default();
        let first = vec![lease("s0", Some("peer"), 1), lease("s1", Some("me"), 1)];
        seen.observe(&first, Instant::now());
        let start = Instant::now();
        tokio::time::advance(Duration::from_secs(2)).await;
        let later = vec![lease("s0", Some("peer"), 1), lease("s2", Some("peer"), 5)];
        seen.observe(&later, Instant::now());
        assert_eq!(
            seen.next_expiry(&later, "me", FAILOVER),
            Some(start + FAILOVER),
            "s0, seen first; never this worker's own"
        );
        // s0 has expired; s2 (seen 2 s later) has not yet.
        tokio::time::advance(FAILOVER - Duration::from_secs(1)).await;
        assert_eq!(
            seen.next_expiry(&later, "me", FAILOVER),
            Some(start + Duration::from_secs(2) + FAILOVER),
            "an expired lease is left to the take ticks"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn max_leases_caps_the_share() {
        let leases: Vec<Lease> = (0..8).map(|i| lease(&format!("s{i}"), None, 0)).collect();
        let seen = Observations::default();
        let held = HashSet::from(["s0"]);
        let takes = plan_takes(
            &leases,
            &seen,
            Instant::now(),
            FAILOVER,
            "me",
            &held,
            Some(3),
        );
        assert_eq!(takes.len(), 2);
    }
}
