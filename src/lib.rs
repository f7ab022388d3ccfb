//! shardwise: a Kinesis Data Streams consumer with KCL's guarantees, without
//! the JVM. One binary runs as a lease-coordinated worker or as an AWS Lambda
//! handler; both feed one batch-processing core. See `DESIGN.md` in the
//! project's shared notes and the README for the whole picture.
//!
//! Module map:
//! - [`aggregation`]: the KPL aggregated-record format: decode (both
//!   modes) and encode (the producer).
//! - [`aws`]: builds the AWS SDK clients, the one way the binary and the
//!   tests reach Kinesis and DynamoDB (standard `AWS_ENDPOINT_URL*` loading).
//! - [`cli`]: the command line: subcommands, flags and their environment
//!   variables, as `--help` shows them.
//! - [`lambda`]: the Lambda handler: Kinesis events in, partial-batch
//!   failure responses out.
//! - [`logging`]: `tracing` output, human on a terminal or JSON for CloudWatch.
//! - [`producer`]: the example's producer: random words into a stream,
//!   resending what Kinesis refuses, with totals of what it acknowledged.
//! - [`record`]: `Record`, `ShardId`, `Position` (sequence + sub-sequence,
//!   totally ordered), built from both modes' inputs.
//! - [`setup`]: one-shot helpers that create what a local run needs (streams).
//! - [`sink`]: the counts table: exactly-once application of a batch's counts.
//! - [`telemetry`]: metrics: names and units, recording helpers, and the
//!   exporter (CloudWatch EMF on stdout, Prometheus, or none).
//! - [`wordcount`]: the pure core: a batch of records in, counts per word out.
//! - [`worker`]: worker mode: leases (KCL schema), the coordinator, shard
//!   consumers fed by polling or enhanced fan-out, and checkpoints.

pub mod aggregation;
pub mod aws;
pub mod cli;
pub mod lambda;
pub mod logging;
pub mod producer;
pub mod record;
pub mod setup;
pub mod sink;
pub mod telemetry;
pub mod wordcount;
pub mod worker;
