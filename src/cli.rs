//! The command line. Every setting has a flag and an environment variable
//! (`SHARDWISE_…`): people use flags, Lambda and ECS configure through the
//! environment. `--help` is generated from the doc comments here.

use std::num::{NonZeroU32, NonZeroUsize};

use clap::{Parser, Subcommand, ValueEnum};

/// A Kinesis Data Streams consumer with KCL's guarantees, without the JVM.
///
/// Its built-in job counts the words of every record (Spark's Kinesis word
/// count example) into a DynamoDB table, exactly once. It runs as a
/// long-running, lease-coordinated `worker` or as an AWS Lambda handler.
///
/// AWS is reached the standard way (AWS_REGION, credentials, and
/// AWS_ENDPOINT_URL or AWS_ENDPOINT_URL_KINESIS / AWS_ENDPOINT_URL_DYNAMODB
/// for a local AWS: `eval "$(localstack/up)"` sets them).
#[derive(Debug, Parser)]
#[command(name = "shardwise", version, propagate_version = true)]
pub struct Cli {
    /// Log format: `human` for a terminal, `json` for CloudWatch Logs.
    /// `auto` picks json inside Lambda or ECS and human elsewhere.
    #[arg(long, env = "SHARDWISE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Auto, global = true)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Auto,
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Consume a stream as one of a fleet of workers that share its shards
    /// through leases in DynamoDB (the lease table is named after the
    /// application, in the KCL 2.x schema), counting words exactly once and
    /// checkpointing as it goes. Start more workers to spread the shards;
    /// SIGTERM or Ctrl-C checkpoints and hands the leases over at once.
    Worker(WorkerArgs),
    /// Run as an AWS Lambda handler for Kinesis event source batches: count
    /// the words of each batch into the counts table, exactly once, and
    /// report failed batches in `batchItemFailures`. Chosen automatically
    /// when AWS_LAMBDA_RUNTIME_API is set.
    ///
    /// A word is a maximal run of characters that are not Unicode
    /// White_Space, kept exactly as written. Records that are empty or not
    /// valid UTF-8 are skipped and logged, never retried.
    Lambda(LambdaArgs),
    /// Put records of random words into a stream, like Spark's
    /// KinesisWordCountProducerASL, and print the totals per word it wrote,
    /// so the consumers' counts can be checked.
    ///
    /// Records that Kinesis reports as failed (throttling) are resent alone
    /// with backoff, never dropped; only acknowledged records are counted
    /// in the totals. Ctrl-C stops generating and sends what is queued; a
    /// second Ctrl-C gives up on it (the exit status is then 1).
    Produce(ProduceArgs),
    /// Print the word totals from the counts table, largest first.
    Counts(CountsArgs),
    /// Print one row per lease of an application: shard, owner, counter,
    /// checkpoint, parents, last lag.
    Status(StatusArgs),
    /// Create what a run needs (for local use and quick starts): a stream
    /// and the counts table. Nothing happens to those that exist.
    Setup(SetupArgs),
    /// Deregister the enhanced fan-out stream consumer that `worker
    /// --retrieval efo` registered, when an application is retired or goes
    /// back to polling (registered consumers are billed by the hour).
    /// Workers still subscribed lose their subscriptions.
    DeregisterConsumer(DeregisterConsumerArgs),
}

/// Arguments of `shardwise deregister-consumer`.
#[derive(Debug, clap::Args)]
pub struct DeregisterConsumerArgs {
    /// The stream the consumer is registered on: a name, or an ARN.
    #[arg(long, env = "SHARDWISE_STREAM")]
    pub stream: String,

    #[command(flatten)]
    pub consumer: ConsumerNameArgs,
}

/// The stream consumer's name: --consumer-name, else the application name.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = true)]
pub struct ConsumerNameArgs {
    /// The application's name (the consumer's name by default).
    #[arg(long, env = "SHARDWISE_APPLICATION_NAME")]
    pub application_name: Option<String>,

    /// The enhanced fan-out consumer's name (default: the application
    /// name). Applications that name the same consumer share its
    /// throughput; each consumer gets 2 MB/s per shard of its own.
    #[arg(long, env = "SHARDWISE_CONSUMER_NAME")]
    pub consumer_name: Option<String>,
}

impl ConsumerNameArgs {
    /// The consumer's name, checked against Kinesis's rules.
    ///
    /// # Errors
    /// [`ConfigError::ConsumerName`] for a name Kinesis refuses.
    pub fn name(&self) -> Result<String, ConfigError> {
        let name = self
            .consumer_name
            .clone()
            .or_else(|| self.application_name.clone())
            .unwrap_or_default();
        check_consumer_name(name)
    }
}

/// Kinesis's rule for consumer names: 1 to 128 of `[a-zA-Z0-9_.-]`.
fn check_consumer_name(name: String) -> Result<String, ConfigError> {
    if (1..=128).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        Ok(name)
    } else {
        Err(ConfigError::ConsumerName(name))
    }
}

/// How a worker reads its shards.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RetrievalArg {
    /// GetRecords polling: shares each shard's 2 MB/s of reads with every
    /// other polling application; about 0.2-1 s from put to read.
    Polling,
    /// Enhanced fan-out (SubscribeToShard): a registered stream consumer
    /// with 2 MB/s per shard of its own, records pushed ~70 ms after the
    /// put. Registered consumers are billed per consumer-shard-hour.
    Efo,
}

/// Arguments of `shardwise setup`.
#[derive(Debug, clap::Args)]
pub struct SetupArgs {
    /// Name of the Kinesis stream to create (nothing happens if it exists).
    #[arg(long, env = "SHARDWISE_STREAM")]
    pub stream: String,

    /// Number of shards of a stream that does not exist yet.
    #[arg(long, env = "SHARDWISE_SHARDS", default_value = "4")]
    pub shards: NonZeroU32,

    #[command(flatten)]
    pub table: CountsTableArg,
}

/// The counts table's name, shared by every command that uses it.
#[derive(Debug, Clone, clap::Args)]
pub struct CountsTableArg {
    /// DynamoDB table holding the word counts (one item per word and shard;
    /// the README describes its layout).
    #[arg(
        long,
        env = "SHARDWISE_COUNTS_TABLE",
        default_value = "shardwise-counts"
    )]
    pub counts_table: String,
}

/// Arguments of `shardwise lambda`.
#[derive(Debug, clap::Args)]
pub struct LambdaArgs {
    #[command(flatten)]
    pub table: CountsTableArg,

    /// Most UpdateItem calls in flight for one batch. Raise it for batches
    /// with many distinct words; lower it if the table throttles.
    #[arg(long, env = "SHARDWISE_SINK_CONCURRENCY", default_value = "32")]
    pub sink_concurrency: NonZeroUsize,

    #[command(flatten)]
    pub metrics: MetricsArgs,
}

/// Where metrics go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum MetricsMode {
    /// CloudWatch Embedded Metric Format lines on stdout: CloudWatch Logs
    /// turns them into metrics, with no PutMetricData calls.
    Emf,
    /// A Prometheus scrape endpoint at --metrics-addr.
    Prometheus,
    Off,
}

/// Metrics settings, shared by `worker` and `lambda`.
#[derive(Debug, clap::Args)]
pub struct MetricsArgs {
    /// Where metrics go: `emf` (CloudWatch Embedded Metric Format on
    /// stdout), `prometheus` (served at --metrics-addr) or `off`. Default:
    /// prometheus when --metrics-addr is set, emf otherwise.
    #[arg(long = "metrics", env = "SHARDWISE_METRICS", value_enum)]
    pub mode: Option<MetricsMode>,

    /// Serve Prometheus metrics on this address, e.g. 127.0.0.1:9464 (for
    /// workers outside AWS). Worker mode only.
    #[arg(long, env = "SHARDWISE_METRICS_ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,

    /// CloudWatch namespace of the EMF metrics (default: the application
    /// name; `shardwise` in Lambda).
    #[arg(long, env = "SHARDWISE_METRICS_NAMESPACE")]
    pub metrics_namespace: Option<String>,
}

impl MetricsArgs {
    /// The exporter these settings ask for.
    ///
    /// # Errors
    /// [`ConfigError`] when --metrics and --metrics-addr disagree.
    pub fn exporter(
        self,
        default_namespace: &str,
    ) -> Result<crate::telemetry::Exporter, ConfigError> {
        use crate::telemetry::Exporter;
        let mode = self.mode.unwrap_or(if self.metrics_addr.is_some() {
            MetricsMode::Prometheus
        } else {
            MetricsMode::Emf
        });
        match (mode, self.metrics_addr) {
            (MetricsMode::Prometheus, Some(addr)) => Ok(Exporter::Prometheus { addr }),
            (MetricsMode::Prometheus, None) => Err(ConfigError::MetricsAddrMissing),
            (MetricsMode::Emf | MetricsMode::Off, Some(_)) => Err(ConfigError::MetricsAddrUnused),
            (MetricsMode::Emf, None) => {
                let namespace = self
                    .metrics_namespace
                    .unwrap_or_else(|| default_namespace.to_string());
                if namespace.is_empty() || namespace.len() > 255 {
                    return Err(ConfigError::MetricsNamespace(namespace));
                }
                Ok(Exporter::Emf { namespace })
            }
            (MetricsMode::Off, None) => Ok(Exporter::Off),
        }
    }
}

/// Where a shard without a checkpoint starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum InitialPositionArg {
    TrimHorizon,
    Latest,
    AtTimestamp,
}

/// Arguments of `shardwise worker`.
#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// The application's name: the lease table's name, as in KCL. Workers
    /// with the same name share the stream's shards.
    #[arg(long, env = "SHARDWISE_APPLICATION_NAME")]
    pub application_name: String,

    /// The stream to consume: a name, or an ARN.
    #[arg(long, env = "SHARDWISE_STREAM")]
    pub stream: String,

    /// This worker's id in the lease table (default: the ECS task id, else
    /// host name and process id). Must be unique in the fleet.
    #[arg(long, env = "SHARDWISE_WORKER_ID")]
    pub worker_id: Option<String>,

    /// Where shards without a checkpoint start.
    #[arg(
        long,
        env = "SHARDWISE_INITIAL_POSITION",
        value_enum,
        default_value = "LATEST"
    )]
    pub initial_position: InitialPositionArg,

    /// With AT_TIMESTAMP: the time to start from (RFC 3339, e.g.
    /// 2026-11-25T10:00:00Z).
    #[arg(long, env = "SHARDWISE_INITIAL_TIMESTAMP")]
    pub initial_timestamp: Option<humantime::Timestamp>,

    /// How often a shard's position is checkpointed (also at shard end and
    /// shutdown). Shorter: less re-reading after a failover; more writes.
    #[arg(long, env = "SHARDWISE_CHECKPOINT_INTERVAL", default_value = "5s")]
    pub checkpoint_interval: humantime::Duration,

    /// A lease whose counter has not moved for this long is expired and
    /// taken by a peer: how long a crashed worker's shards wait.
    #[arg(long, env = "SHARDWISE_FAILOVER_TIME", default_value = "10s")]
    pub failover_time: humantime::Duration,

    /// How often held leases are renewed (default: a third of the failover
    /// time). Must be shorter than the failover time.
    #[arg(long, env = "SHARDWISE_RENEW_INTERVAL")]
    pub renew_interval: Option<humantime::Duration>,

    /// How often the lease table is scanned to take expired or free leases
    /// and balance (default: a tenth of the failover time). It bounds how
    /// long a stopped worker's released shards wait for a peer.
    #[arg(long, env = "SHARDWISE_TAKE_INTERVAL")]
    pub take_interval: Option<humantime::Duration>,

    /// Most records per GetRecords call (Kinesis allows 10 000).
    #[arg(long, env = "SHARDWISE_MAX_RECORDS", default_value = "10000", value_parser = clap::value_parser!(i32).range(1..=10000))]
    pub max_records: i32,

    /// Pause between reads of a shard whose reader is at the tip of the
    /// stream (at least 200ms: Kinesis allows 5 reads a second per shard).
    /// Longer: fewer reads and DynamoDB writes per record; shorter: lower
    /// put-to-counted latency. A shard that is behind is read without pause.
    #[arg(long, env = "SHARDWISE_IDLE_TIME", default_value = "1s")]
    pub idle_time: humantime::Duration,

    /// How shards are read: `polling` (GetRecords) or `efo` (enhanced
    /// fan-out: the worker registers the stream consumer --consumer-name
    /// if it does not exist and subscribes to each shard).
    #[arg(
        long,
        env = "SHARDWISE_RETRIEVAL",
        value_enum,
        default_value = "polling"
    )]
    pub retrieval: RetrievalArg,

    /// With --retrieval efo: the stream consumer's name (default: the
    /// application name). `shardwise deregister-consumer` removes it.
    #[arg(long, env = "SHARDWISE_CONSUMER_NAME")]
    pub consumer_name: Option<String>,

    /// Most leases this worker holds (default: its fair share, no cap).
    #[arg(long, env = "SHARDWISE_MAX_LEASES")]
    pub max_leases: Option<NonZeroUsize>,

    /// How long a stop may take to drain and checkpoint before giving up
    /// (keep it below ECS's stopTimeout).
    #[arg(long, env = "SHARDWISE_SHUTDOWN_TIMEOUT", default_value = "20s")]
    pub shutdown_timeout: humantime::Duration,

    #[command(flatten)]
    pub table: CountsTableArg,

    /// Most UpdateItem calls in flight for one batch.
    #[arg(long, env = "SHARDWISE_SINK_CONCURRENCY", default_value = "32")]
    pub sink_concurrency: NonZeroUsize,

    #[command(flatten)]
    pub metrics: MetricsArgs,

    /// How often EMF metrics are written (each line costs log ingestion;
    /// CloudWatch's finest regular resolution is a minute).
    #[arg(long, env = "SHARDWISE_METRICS_INTERVAL", default_value = "60s")]
    pub metrics_interval: humantime::Duration,
}

/// Arguments of `shardwise status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The application's name (its lease table).
    #[arg(long, env = "SHARDWISE_APPLICATION_NAME")]
    pub application_name: String,

    /// Keep printing the leases every --interval until Ctrl-C.
    #[arg(long)]
    pub watch: bool,

    /// With --watch: how often to print.
    #[arg(long, default_value = "2s")]
    pub interval: humantime::Duration,
}

/// Arguments of `shardwise produce`.
#[derive(Debug, clap::Args)]
pub struct ProduceArgs {
    /// Name of the Kinesis stream to write to.
    #[arg(long, env = "SHARDWISE_STREAM")]
    pub stream: String,

    /// Records a second (the seed's example: 1000).
    #[arg(long, env = "SHARDWISE_RATE", default_value = "1000")]
    pub rate: NonZeroU32,

    /// Words in each record.
    #[arg(long, env = "SHARDWISE_WORDS_PER_RECORD", default_value = "10")]
    pub words_per_record: NonZeroU32,

    /// Draw words from this file (words separated by whitespace) instead of
    /// the digits 0-9.
    #[arg(long, env = "SHARDWISE_WORDS_FILE")]
    pub words_file: Option<std::path::PathBuf>,

    /// Stop after this many records (default: run until Ctrl-C).
    #[arg(long, env = "SHARDWISE_RECORDS", conflicts_with = "duration")]
    pub records: Option<u64>,

    /// Stop after this long, e.g. `30s` or `2m` (default: run until Ctrl-C).
    #[arg(long, env = "SHARDWISE_DURATION")]
    pub duration: Option<humantime::Duration>,

    /// How many different partition keys to spread records over.
    #[arg(long, env = "SHARDWISE_PARTITION_KEYS", default_value = "100")]
    pub partition_keys: NonZeroU32,

    /// Pack records into KPL aggregates (up to 1 MiB each): how real
    /// producers reach high rates on few shards.
    #[arg(long, env = "SHARDWISE_AGGREGATE")]
    pub aggregate: bool,

    /// Create the stream with this many shards if it does not exist (for
    /// local use).
    #[arg(long, value_name = "SHARDS")]
    pub create_stream: Option<NonZeroU32>,

    /// Write the report (records, totals per word) as JSON to this file.
    #[arg(long, env = "SHARDWISE_TOTALS_JSON")]
    pub totals_json: Option<std::path::PathBuf>,

    /// Seed of the random words, for a reproducible run.
    #[arg(long)]
    pub seed: Option<u64>,
}

/// Arguments of `shardwise counts`.
#[derive(Debug, clap::Args)]
pub struct CountsArgs {
    #[command(flatten)]
    pub table: CountsTableArg,

    /// How many words to print (the most frequent first).
    #[arg(long, env = "SHARDWISE_TOP", default_value = "20")]
    pub top: usize,

    /// Keep printing the totals every --interval until Ctrl-C.
    #[arg(long)]
    pub watch: bool,

    /// With --watch: how often to print.
    #[arg(long, default_value = "2s")]
    pub interval: humantime::Duration,

    /// Compare the totals with a producer's report (`produce
    /// --totals-json`), waiting up to --wait for the consumers to catch up;
    /// print the verdict and exit 1 if they differ.
    #[arg(long, value_name = "REPORT_JSON", conflicts_with = "watch")]
    pub expect: Option<std::path::PathBuf>,

    /// With --expect: how long to wait for the totals to match.
    #[arg(long, default_value = "60s")]
    pub wait: humantime::Duration,
}

/// A setting that cannot work, found before anything starts.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error(
        "--renew-interval ({renew}) must be shorter than --failover-time ({failover}): a lease would expire between renewals"
    )]
    RenewNotShorter { renew: String, failover: String },
    #[error("--idle-time ({0}) is below 200ms: Kinesis allows 5 reads a second per shard")]
    IdleTooShort(String),
    #[error(
        "--initial-position AT_TIMESTAMP needs --initial-timestamp (e.g. 2026-11-25T10:00:00Z)"
    )]
    TimestampMissing,
    #[error("--initial-timestamp is only used with --initial-position AT_TIMESTAMP")]
    TimestampUnused,
    #[error("{name} must be longer than zero")]
    Zero { name: &'static str },
    #[error("--metrics prometheus needs --metrics-addr (e.g. 127.0.0.1:9464)")]
    MetricsAddrMissing,
    #[error("--metrics-addr serves Prometheus metrics: drop it, or use --metrics prometheus")]
    MetricsAddrUnused,
    #[error("--metrics-namespace {0:?} must be 1 to 255 characters")]
    MetricsNamespace(String),
    #[error(
        "--application-name {0:?} names the lease table: 3 to 255 letters, digits, '_', '-' or '.'"
    )]
    ApplicationName(String),
    #[error(
        "the stream consumer's name {0:?} (--consumer-name, else --application-name) must be \
         1 to 128 letters, digits, '_', '-' or '.'"
    )]
    ConsumerName(String),
    #[error("--consumer-name is only used with --retrieval efo")]
    ConsumerNameUnused,
}

impl WorkerArgs {
    /// Validates the settings together and builds the worker's config.
    ///
    /// # Errors
    /// [`ConfigError`] naming the flag to fix.
    pub fn into_config(self) -> Result<crate::worker::WorkerConfig, ConfigError> {
        use std::time::Duration;
        let failover: Duration = self.failover_time.into();
        let checkpoint: Duration = self.checkpoint_interval.into();
        let name = &self.application_name;
        if !(3..=255).contains(&name.len())
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            return Err(ConfigError::ApplicationName(name.clone()));
        }
        let metrics_interval: Duration = self.metrics_interval.into();
        for (name, value) in [
            ("--failover-time", failover),
            ("--checkpoint-interval", checkpoint),
            ("--metrics-interval", metrics_interval),
        ] {
            if value.is_zero() {
                return Err(ConfigError::Zero { name });
            }
        }
        let renew: Duration = self.renew_interval.map_or(failover / 3, Into::into);
        if renew.is_zero() {
            return Err(ConfigError::Zero {
                name: "--renew-interval",
            });
        }
        if renew >= failover {
            return Err(ConfigError::RenewNotShorter {
                renew: humantime::format_duration(renew).to_string(),
                failover: humantime::format_duration(failover).to_string(),
            });
        }
        let take: Duration = self.take_interval.map_or(failover / 10, Into::into);
        if take.is_zero() {
            return Err(ConfigError::Zero {
                name: "--take-interval",
            });
        }
        let idle: Duration = self.idle_time.into();
        if idle < Duration::from_millis(200) {
            return Err(ConfigError::IdleTooShort(
                humantime::format_duration(idle).to_string(),
            ));
        }
        let initial_position = match (self.initial_position, self.initial_timestamp) {
            (InitialPositionArg::AtTimestamp, Some(at)) => {
                let at: std::time::SystemTime = at.into();
                crate::worker::InitialPosition::AtTimestamp(at.into())
            }
            (InitialPositionArg::AtTimestamp, None) => return Err(ConfigError::TimestampMissing),
            (_, Some(_)) => return Err(ConfigError::TimestampUnused),
            (InitialPositionArg::TrimHorizon, None) => crate::worker::InitialPosition::TrimHorizon,
            (InitialPositionArg::Latest, None) => crate::worker::InitialPosition::Latest,
        };
        let retrieval = match (self.retrieval, self.consumer_name) {
            (RetrievalArg::Polling, None) => crate::worker::RetrievalConfig::Polling,
            (RetrievalArg::Polling, Some(_)) => return Err(ConfigError::ConsumerNameUnused),
            (RetrievalArg::Efo, consumer_name) => crate::worker::RetrievalConfig::FanOut {
                consumer_name: check_consumer_name(
                    consumer_name.unwrap_or_else(|| self.application_name.clone()),
                )?,
            },
        };
        let metrics = self.metrics.exporter(&self.application_name)?;
        Ok(crate::worker::WorkerConfig {
            retrieval,
            metrics,
            metrics_interval,
            application: self.application_name,
            stream: crate::worker::StreamRef::parse(&self.stream),
            worker_id: self.worker_id.unwrap_or_else(default_worker_id),
            initial_position,
            checkpoint_interval: checkpoint,
            failover_time: failover,
            renew_interval: renew,
            take_interval: take,
            max_records: self.max_records,
            idle_time: idle,
            max_leases: self.max_leases.map(NonZeroUsize::get),
            shutdown_timeout: self.shutdown_timeout.into(),
            counts_table: self.table.counts_table,
            sink_concurrency: self.sink_concurrency,
        })
    }
}

/// Host name and process id: unique and readable.
fn default_worker_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|| "worker".to_string());
    format!("{host}-{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(args: &[&str]) -> Result<crate::worker::WorkerConfig, ConfigError> {
        let mut all = vec!["shardwise", "worker", "--application-name", "app"];
        if !args.contains(&"--stream") {
            all.extend(["--stream", "s"]);
        }
        all.extend_from_slice(args);
        match Cli::try_parse_from(all).expect("parses").command {
            Some(Command::Worker(args)) => args.into_config(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_application_name_that_cannot_name_a_table_is_refused() {
        for bad in ["ab", "my app", "app/1"] {
            let mut all = vec!["shardwise", "worker", "--stream", "s"];
            all.extend(["--application-name", bad]);
            let Some(Command::Worker(args)) = Cli::try_parse_from(all).expect("parses").command
            else {
                panic!("worker");
            };
            assert_eq!(
                args.into_config().err(),
                Some(ConfigError::ApplicationName(bad.into()))
            );
        }
        assert!(worker(&[]).is_ok(), "`app` is fine");
    }

    #[test]
    fn metrics_flags_resolve_to_one_exporter() {
        use crate::telemetry::Exporter;
        let exporter = |args: &[&str]| worker(args).map(|c| c.metrics);
        assert_eq!(
            exporter(&[]),
            Ok(Exporter::Emf {
                namespace: "app".into()
            })
        );
        assert_eq!(
            exporter(&["--metrics-addr", "127.0.0.1:9464"]),
            Ok(Exporter::Prometheus {
                addr: "127.0.0.1:9464".parse().expect("addr")
            })
        );
        assert_eq!(exporter(&["--metrics", "off"]), Ok(Exporter::Off));
        assert_eq!(
            exporter(&["--metrics-namespace", "Ops/Counts"]),
            Ok(Exporter::Emf {
                namespace: "Ops/Counts".into()
            })
        );
        assert_eq!(
            exporter(&["--metrics", "off", "--metrics-addr", "127.0.0.1:1"]).err(),
            Some(ConfigError::MetricsAddrUnused)
        );
    }

    #[test]
    fn cross_field_mistakes_are_refused_before_anything_starts() {
        assert!(matches!(
            worker(&["--failover-time", "3s", "--renew-interval", "3s"]),
            Err(ConfigError::RenewNotShorter { .. })
        ));
        assert_eq!(
            worker(&["--idle-time", "50ms"]).err(),
            Some(ConfigError::IdleTooShort("50ms".into()))
        );
        assert_eq!(
            worker(&["--initial-position", "AT_TIMESTAMP"]).err(),
            Some(ConfigError::TimestampMissing)
        );
        assert_eq!(
            worker(&["--initial-timestamp", "2026-11-25T10:00:00Z"]).err(),
            Some(ConfigError::TimestampUnused)
        );
        assert_eq!(
            worker(&["--failover-time", "0s"]).err(),
            Some(ConfigError::Zero {
                name: "--failover-time"
            })
        );
    }

    #[test]
    fn defaults_follow_the_failover_time() {
        let config = worker(&[
            "--failover-time",
            "9s",
            "--initial-position",
            "TRIM_HORIZON",
        ])
        .expect("valid");
        assert_eq!(config.renew_interval, std::time::Duration::from_secs(3));
        assert_eq!(config.take_interval, std::time::Duration::from_millis(900));
        assert_eq!(
            config.initial_position,
            crate::worker::InitialPosition::TrimHorizon
        );
        assert!(
            config
                .worker_id
                .ends_with(&format!("-{}", std::process::id()))
        );
        let arn = worker(&[
            "--stream",
            "arn:aws:kinesis:us-east-1:123456789012:stream/orders",
        ])
        .expect("valid");
        assert_eq!(arn.stream.name(), "orders");
    }

    #[test]
    fn efo_names_its_consumer_after_the_application_unless_told() {
        use crate::worker::RetrievalConfig;
        assert_eq!(
            worker(&[]).expect("valid").retrieval,
            RetrievalConfig::Polling
        );
        assert_eq!(
            worker(&["--retrieval", "efo"]).expect("valid").retrieval,
            RetrievalConfig::FanOut {
                consumer_name: "app".into()
            }
        );
        assert_eq!(
            worker(&["--retrieval", "efo", "--consumer-name", "shared.v2"])
                .expect("valid")
                .retrieval,
            RetrievalConfig::FanOut {
                consumer_name: "shared.v2".into()
            }
        );
        assert_eq!(
            worker(&["--consumer-name", "x"]).err(),
            Some(ConfigError::ConsumerNameUnused)
        );
        assert_eq!(
            worker(&["--retrieval", "efo", "--consumer-name", "no spaces"]).err(),
            Some(ConfigError::ConsumerName("no spaces".into()))
        );
    }
}
