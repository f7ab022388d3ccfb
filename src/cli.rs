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
    /// Put random words into a stream (Spark's KinesisWordCountProducerASL).
    Produce,
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
            Command::Produce => Some("the producer (issue 7)"),
            Command::Lambda(_) | Command::Counts(_) | Command::Setup(_) => None,
        }
    }

    /// The subcommand's name as typed.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Worker => "worker",
            Command::Lambda(_) => "lambda",
            Command::Produce => "produce",
            Command::Counts(_) => "counts",
            Command::Status => "status",
            Command::Setup(_) => "setup",
        }
    }
}
