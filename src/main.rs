//! The `shardwise` binary: parse the command line, set up logging, and call
//! into the library. Nothing else lives here.

use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser};
use shardwise::aws::Clients;
use shardwise::cli::{Cli, Command, CountsArgs, LambdaArgs, SetupArgs};
use shardwise::sink::{self, CountsSink};

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    if cli.command.is_none() && std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some() {
        // Inside Lambda the runtime starts the binary with no arguments:
        // parse as `lambda`, so its settings come from the environment.
        cli = Cli::parse_from(["shardwise", "lambda"]);
    }
    shardwise::logging::init(cli.log_format);
    let command = match cli.command {
        Some(command) => command,
        None => {
            // Best effort: a closed stdout must not turn help into a panic.
            let _ = Cli::command().print_help();
            return ExitCode::from(2);
        }
    };
    match run(command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Setup(args) => block_on(setup(args)),
        Command::Lambda(args) => block_on(lambda(args)),
        Command::Counts(args) => block_on(counts(args)),
        other => {
            let issue = other.not_built_yet().unwrap_or("a later issue");
            anyhow::bail!(
                "`shardwise {}` is not built yet: it arrives with {issue}",
                other.name()
            )
        }
    }
}

fn block_on<F: std::future::Future<Output = anyhow::Result<()>>>(future: F) -> anyhow::Result<()> {
    tokio::runtime::Runtime::new()
        .context("could not start the async runtime")?
        .block_on(future)
}

async fn setup(args: SetupArgs) -> anyhow::Result<()> {
    let clients = Clients::from_env().await?;
    let ready =
        shardwise::setup::ensure_stream(&clients.kinesis, &args.stream, args.shards.get()).await?;
    let verb = if ready.created { "created" } else { "found" };
    println!(
        "{verb} stream {} ({} open shards): {}",
        args.stream, ready.open_shards, ready.arn
    );
    let table = &args.table.counts_table;
    let created = sink::create_table_if_missing(&clients.dynamodb, table).await?;
    let verb = if created { "created" } else { "found" };
    println!("{verb} counts table {table}");
    Ok(())
}

async fn lambda(args: LambdaArgs) -> anyhow::Result<()> {
    // The runtime client would panic without it; say what to do instead.
    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_none() {
        anyhow::bail!(
            "`shardwise lambda` serves the AWS Lambda runtime API, and AWS_LAMBDA_RUNTIME_API \
             is not set: deploy it as a Lambda function, or run it locally behind \
             `cargo lambda watch --only-lambda-apis` with the variables that command prints"
        );
    }
    // Clients are built once per cold start and shared by every invocation.
    let clients = Clients::from_env().await?;
    let sink = CountsSink::new(
        clients.dynamodb,
        args.table.counts_table,
        args.sink_concurrency,
    );
    shardwise::lambda::run(shardwise::lambda::Handler::new(sink))
        .await
        .map_err(|error| anyhow::anyhow!("the Lambda runtime stopped: {error}"))
}

async fn counts(args: CountsArgs) -> anyhow::Result<()> {
    let clients = Clients::from_env().await?;
    let totals = sink::read_totals(&clients.dynamodb, &args.table.counts_table).await?;
    let words: u64 = totals.iter().map(|(_, count)| count).sum();
    println!(
        "{} distinct words, {words} in all (table {})",
        totals.len(),
        args.table.counts_table
    );
    for (word, count) in totals.iter().take(args.top) {
        println!("{count:>12}  {word}");
    }
    Ok(())
}
