//! The command line. Every setting has a flag and an environment variable
//! (`SHARDWISE_…`): people use flags, Lambda and ECS configure through the
//! environment. `--help` is generated from the doc comments here.

use std::num::NonZeroU32;

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
    /// Run as an AWS Lambda handler for Kinesis event source batches.
    /// Chosen automatically when AWS_LAMBDA_RUNTIME_API is set.
    Lambda,
    /// Put random words into a stream (Spark's KinesisWordCountProducerASL).
    Produce,
    /// Print the word totals from the counts table.
    Counts,
    /// Print one row per lease: owner, checkpoint, lag, last renewal.
    Status,
    /// Create what a run needs (for local use and quick starts): a stream.
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
}

impl Command {
    /// The issue that builds a command that is not built yet, if any.
    pub fn not_built_yet(&self) -> Option<&'static str> {
        match self {
            Command::Worker | Command::Status => Some("worker mode (issue 6)"),
            Command::Lambda | Command::Counts => Some("the core and Lambda mode (issue 4)"),
            Command::Produce => Some("the producer (issue 7)"),
            Command::Setup(_) => None,
        }
    }

    /// The subcommand's name as typed.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Worker => "worker",
            Command::Lambda => "lambda",
            Command::Produce => "produce",
            Command::Counts => "counts",
            Command::Status => "status",
            Command::Setup(_) => "setup",
        }
    }
}
