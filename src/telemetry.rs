//! Metrics: what is measured, under which names, and where it goes.
//!
//! Code records through the `metrics` facade with the helpers below (so
//! names, units and dimensions live in one place); one exporter is
//! installed per process at startup:
//! - CloudWatch Embedded Metric Format (EMF) lines on stdout, the default:
//!   CloudWatch Logs turns them into metrics at no API cost. The worker
//!   flushes every `--metrics-interval`, Lambda once per invocation.
//!   `metrics_cloudwatch_embedded` writes the format.
//! - a Prometheus endpoint (`--metrics-addr`), for hosts outside AWS;
//! - nothing (`--metrics off`).
//!
//! Names follow KCL's (`RecordsProcessed`, `MillisBehindLatest`…), so its
//! dashboards and alarms translate. Dimensions stay bounded: a shard id, a
//! worker id, a reason; never a record or a word.
//!
//! Counters are what happened since the last flush. Timings are counters
//! too (milliseconds spent, beside a count of batches): EMF keeps at most
//! 100 values of a histogram between flushes, and a busy shard reads up to
//! 300 batches a minute. The one histogram, the lag, is sampled (at most
//! [`MAX_SAMPLES_PER_FLUSH`] per shard between flushes).

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use metrics_cloudwatch_embedded::Collector;
use tokio_util::sync::CancellationToken;

/// Where metrics go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exporter {
    /// EMF lines on stdout, in this CloudWatch namespace.
    Emf {
        namespace: String,
    },
    /// A Prometheus scrape endpoint.
    Prometheus {
        addr: SocketAddr,
    },
    Off,
}

/// Most lag samples a shard records between two flushes (EMF allows 100
/// values of a metric in one document).
pub const MAX_SAMPLES_PER_FLUSH: u32 = 60;

/// Why metrics could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("could not set up EMF metrics: {0}")]
    Emf(String),
    #[error(
        "could not serve Prometheus metrics on {addr}: {detail} (is the port taken? change --metrics-addr)"
    )]
    Prometheus { addr: SocketAddr, detail: String },
}

/// The installed exporter; flushes EMF documents.
#[derive(Clone, Copy)]
pub struct Metrics {
    emf: Option<&'static Collector>,
}

impl Metrics {
    /// Installs `exporter` as this process's recorder. Call once, inside the
    /// async runtime (the Prometheus endpoint is served on it).
    ///
    /// # Errors
    /// [`TelemetryError`] when the exporter cannot start (a taken port).
    pub fn install(exporter: &Exporter) -> Result<Self, TelemetryError> {
        let metrics = match exporter {
            Exporter::Off => return Ok(Self { emf: None }),
            Exporter::Emf { namespace } => {
                let collector = metrics_cloudwatch_embedded::Builder::new()
                    .cloudwatch_namespace(namespace.clone())
                    .init()
                    .map_err(|e| TelemetryError::Emf(e.to_string()))?;
                Self {
                    emf: Some(collector),
                }
            }
            Exporter::Prometheus { addr } => {
                metrics_exporter_prometheus::PrometheusBuilder::new()
                    .with_http_listener(*addr)
                    .install()
                    .map_err(|e| TelemetryError::Prometheus {
                        addr: *addr,
                        detail: e.to_string(),
                    })?;
                Self { emf: None }
            }
        };
        describe();
        Ok(metrics)
    }

    /// Sets a property carried by every following EMF document (not a
    /// dimension): Lambda's request id.
    pub fn set_property(&self, name: &'static str, value: String) {
        if let Some(collector) = self.emf {
            collector.set_property(name, value);
        }
    }

    /// Writes what was measured since the last flush as EMF documents, one
    /// per line, in one write (so no other output lands inside a line).
    ///
    /// # Errors
    /// When `out` cannot be written.
    pub fn flush_to(&self, out: &mut impl Write) -> std::io::Result<()> {
        let Some(collector) = self.emf else {
            return Ok(());
        };
        let mut buffer = Vec::with_capacity(4096);
        collector.flush(&mut buffer)?;
        out.write_all(&buffer)?;
        out.flush()
    }

    /// [`Self::flush_to`] stdout; a failure is logged, never fatal.
    pub fn flush(&self) {
        if let Err(e) = self.flush_to(&mut std::io::stdout().lock()) {
            tracing::warn!(error = %e, "could not write metrics to stdout");
        }
    }

    /// Flushes every `interval` until `stop`, then once more.
    pub async fn flush_every(self, interval: Duration, stop: CancellationToken) {
        if self.emf.is_none() {
            return;
        }
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = ticks.tick() => self.flush(),
            }
        }
        self.flush();
    }
}

/// The metric names, as KCL spells them where KCL has one.
pub mod names {
    pub const RECORDS_PROCESSED: &str = "RecordsProcessed";
    pub const DATA_BYTES_PROCESSED: &str = "DataBytesProcessed";
    pub const USER_RECORDS_DEAGGREGATED: &str = "UserRecordsDeaggregated";
    pub const BAD_RECORDS: &str = "BadRecords";
    pub const MILLIS_BEHIND_LATEST: &str = "MillisBehindLatest";
    pub const BATCHES_PROCESSED: &str = "BatchesProcessed";
    pub const PROCESSING_TIME: &str = "ProcessingTime";
    pub const SINK_WRITES: &str = "SinkWrites";
    pub const SINK_RECOUNTS: &str = "SinkRecounts";
    pub const SINK_FAILURES: &str = "SinkFailures";
    pub const CHECKPOINTS: &str = "CheckpointsWritten";
    pub const LEASES_HELD: &str = "LeasesHeld";
    pub const LEASES_TAKEN: &str = "LeasesTaken";
    pub const LEASES_STOLEN: &str = "LeasesStolen";
    pub const LEASES_LOST: &str = "LeasesLost";
    pub const LEASES_RELEASED: &str = "LeasesReleased";
    pub const LEASE_RENEWALS: &str = "LeaseRenewals";
    pub const LEASE_RENEWAL_FAILURES: &str = "LeaseRenewalFailures";
    pub const SHARD_SYNCS: &str = "ShardSyncs";
    pub const BATCH_ITEM_FAILURES: &str = "BatchItemFailures";
    pub const ITERATOR_AGE: &str = "IteratorAgeMilliseconds";
}

use names::*;

/// Dimension names.
pub const SHARD_ID: &str = "ShardId";
pub const WORKER_ID: &str = "WorkerId";
pub const REASON: &str = "Reason";

fn describe() {
    let counts = [
        (RECORDS_PROCESSED, "user records counted or skipped as bad"),
        (
            USER_RECORDS_DEAGGREGATED,
            "user records taken out of KPL aggregates",
        ),
        (
            BAD_RECORDS,
            "records skipped because they cannot be counted, by reason",
        ),
        (BATCHES_PROCESSED, "batches applied to the counts table"),
        (SINK_WRITES, "UpdateItem calls on the counts table"),
        (
            SINK_RECOUNTS,
            "words recounted after a failed condition (a re-delivery)",
        ),
        (
            SINK_FAILURES,
            "batches the counts table refused or could not take",
        ),
        (CHECKPOINTS, "checkpoints written to the lease table"),
        (LEASES_TAKEN, "leases taken (free, expired or stolen)"),
        (LEASES_STOLEN, "leases stolen from a busier worker"),
        (LEASES_LOST, "leases another worker took from this one"),
        (LEASES_RELEASED, "leases given up at shutdown"),
        (LEASE_RENEWALS, "lease renewals written"),
        (
            LEASE_RENEWAL_FAILURES,
            "lease renewals that failed without losing the lease",
        ),
        (SHARD_SYNCS, "shard syncs run"),
        (BATCH_ITEM_FAILURES, "batches reported to Lambda for retry"),
    ];
    for (name, what) in counts {
        describe_counter!(name, Unit::Count, what);
    }
    describe_counter!(
        DATA_BYTES_PROCESSED,
        Unit::Bytes,
        "bytes of Kinesis records read"
    );
    describe_counter!(
        PROCESSING_TIME,
        Unit::Milliseconds,
        "time spent applying batches; divide by BatchesProcessed for the average"
    );
    describe_gauge!(LEASES_HELD, Unit::Count, "leases this worker holds");
    describe_histogram!(
        MILLIS_BEHIND_LATEST,
        Unit::Milliseconds,
        "how far the shard's reader is behind the tip of the stream"
    );
    describe_histogram!(
        ITERATOR_AGE,
        Unit::Milliseconds,
        "age of the newest record of a Lambda batch when it was counted"
    );
}

/// What one batch of one shard came to.
#[derive(Debug, Clone, Default)]
pub struct BatchFigures {
    /// Kinesis records as read (an aggregate is one).
    pub kinesis_records: u64,
    pub bytes: u64,
    /// User records that came out of aggregates.
    pub deaggregated: u64,
    /// User records counted or skipped as bad (what KCL calls processed).
    pub user_records: u64,
    pub sink_writes: u64,
    pub sink_recounts: u64,
    pub elapsed: Duration,
}

/// Per-shard metrics.
pub fn batch_processed(shard_id: &str, figures: &BatchFigures) {
    let labels = [(SHARD_ID, shard_id.to_string())];
    counter!(RECORDS_PROCESSED, &labels).increment(figures.user_records);
    counter!(DATA_BYTES_PROCESSED, &labels).increment(figures.bytes);
    counter!(USER_RECORDS_DEAGGREGATED, &labels).increment(figures.deaggregated);
    counter!(BATCHES_PROCESSED, &labels).increment(1);
    counter!(SINK_WRITES, &labels).increment(figures.sink_writes);
    counter!(SINK_RECOUNTS, &labels).increment(figures.sink_recounts);
    let millis = u64::try_from(figures.elapsed.as_millis()).unwrap_or(u64::MAX);
    counter!(PROCESSING_TIME, &labels).increment(millis);
}

pub fn bad_record(shard_id: &str, reason: &'static str) {
    counter!(BAD_RECORDS, SHARD_ID => shard_id.to_string(), REASON => reason).increment(1);
}

pub fn sink_failed(shard_id: &str) {
    counter!(SINK_FAILURES, SHARD_ID => shard_id.to_string()).increment(1);
}

pub fn lag(shard_id: &str, millis_behind_latest: u64) {
    histogram!(MILLIS_BEHIND_LATEST, SHARD_ID => shard_id.to_string())
        .record(millis_behind_latest as f64);
}

pub fn checkpoint_written(shard_id: &str) {
    counter!(CHECKPOINTS, SHARD_ID => shard_id.to_string()).increment(1);
}

/// A worker-level lease event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseEvent {
    Taken,
    Stolen,
    Lost,
    Released,
    Renewed,
    RenewalFailed,
}

pub fn lease_event(worker_id: &str, event: LeaseEvent) {
    let name = match event {
        LeaseEvent::Taken => LEASES_TAKEN,
        LeaseEvent::Stolen => LEASES_STOLEN,
        LeaseEvent::Lost => LEASES_LOST,
        LeaseEvent::Released => LEASES_RELEASED,
        LeaseEvent::Renewed => LEASE_RENEWALS,
        LeaseEvent::RenewalFailed => LEASE_RENEWAL_FAILURES,
    };
    counter!(name, WORKER_ID => worker_id.to_string()).increment(1);
}

pub fn leases_held(worker_id: &str, held: usize) {
    gauge!(LEASES_HELD, WORKER_ID => worker_id.to_string()).set(held as f64);
}

pub fn shard_synced(worker_id: &str) {
    counter!(SHARD_SYNCS, WORKER_ID => worker_id.to_string()).increment(1);
}

/// Lambda: a shard's batch reported in `batchItemFailures`.
pub fn batch_item_failure(shard_id: &str) {
    counter!(BATCH_ITEM_FAILURES, SHARD_ID => shard_id.to_string()).increment(1);
}

/// Lambda: the age of a batch's newest record (its arrival in the stream).
pub fn iterator_age(shard_id: &str, age: Duration) {
    histogram!(ITERATOR_AGE, SHARD_ID => shard_id.to_string()).record(age.as_millis() as f64);
}
