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
    /// through leases in DynamoDB, checkpointing as it goes (like KCL).
    Worker,
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
    /// Print one row per lease: owner, checkpoint, lag, last renewal.
    Status,
    /// Create what a run needs (for local use and quick starts): a stream
    /// and the counts table. Nothing happens to those that exist.
    Setup(SetupArgs),
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
}

impl Command {
    /// The issue that builds a command that is not built yet, if any.
    pub fn not_built_yet(&self) -> Option<&'static str> {
        match self {
            Command::Worker | Command::Status => Some("worker mode (issue 6)"),
            Command::Lambda(_) | Command::Counts(_) | Command::Setup(_) | Command::Produce(_) => {
                None
            }
        }
    }

    /// The subcommand's name as typed.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Worker => "worker",
            Command::Lambda(_) => "lambda",
            Command::Produce(_) => "produce",
            Command::Counts(_) => "counts",
            Command::Status => "status",
            Command::Setup(_) => "setup",
        }
    }
}
