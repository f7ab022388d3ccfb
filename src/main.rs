//! The `shardwise` binary: parse the command line, set up logging, and call
//! into the library. Nothing else lives here.

use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser};
use shardwise::aws::Clients;
use shardwise::cli::{Cli, Command, SetupArgs};

fn main() -> ExitCode {
    let cli = Cli::parse();
    shardwise::logging::init(cli.log_format);
    let command = match cli.command {
        Some(command) => command,
        // Inside Lambda the runtime starts the binary with no arguments.
        None if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some() => Command::Lambda,
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
    Ok(())
}
