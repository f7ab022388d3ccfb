//! The `shardwise` binary: parse the command line, set up logging, and call
//! into the library. Nothing else lives here.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser};
use shardwise::aws::Clients;
use shardwise::cli::{Cli, Command, CountsArgs, LambdaArgs, ProduceArgs, SetupArgs, StatusArgs};
use shardwise::sink::{self, CountsSink};
use shardwise::telemetry::{Exporter, Metrics};
use tokio_util::sync::CancellationToken;

/// `println!` for command output that reports a closed stdout (`| head`)
/// as an error instead of panicking; `main` treats that one as success.
macro_rules! say {
    ($($arg:tt)*) => { writeln!(std::io::stdout(), $($arg)*)? };
}

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
        // The reader went away (`shardwise counts | head`): not an error.
        Err(error) if is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Setup(args) => block_on(setup(args)),
        Command::Lambda(args) => block_on(lambda(args)),
        Command::Counts(args) => block_on(counts(args)),
        Command::Produce(args) => block_on(produce(args)),
        Command::Worker(args) => {
            // Settings are checked before anything starts.
            let config = args.into_config()?;
            block_on(worker(config))
        }
        Command::Status(args) => block_on(status(args)),
        Command::DeregisterConsumer(args) => {
            let name = args.consumer.name()?;
            block_on(deregister_consumer(args.stream, name))
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
    say!(
        "{verb} stream {} ({} open shards): {}",
        args.stream,
        ready.open_shards,
        ready.arn
    );
    let table = &args.table.counts_table;
    let created = sink::create_table_if_missing(&clients.dynamodb, table).await?;
    let verb = if created { "created" } else { "found" };
    say!("{verb} counts table {table}");
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
    let exporter = args.metrics.exporter("shardwise")?;
    if matches!(exporter, Exporter::Prometheus { .. }) {
        anyhow::bail!(
            "Prometheus metrics are for workers; in Lambda use --metrics emf (the default) or off"
        );
    }
    let metrics = Metrics::install(&exporter)?;
    // Clients are built once per cold start and shared by every invocation.
    let clients = Clients::from_env().await?;
    let sink = CountsSink::new(
        clients.dynamodb,
        args.table.counts_table,
        args.sink_concurrency,
    );
    shardwise::lambda::run(shardwise::lambda::Handler::new(sink), metrics)
        .await
        .map_err(|error| anyhow::anyhow!("the Lambda runtime stopped: {error}"))
}

async fn produce(args: ProduceArgs) -> anyhow::Result<()> {
    use shardwise::producer::{Limit, ProducerConfig, Vocabulary};
    use std::io::IsTerminal;
    let vocabulary = match &args.words_file {
        None => Vocabulary::Digits,
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("could not read --words-file {}", path.display()))?;
            let words: Vec<String> = text.split_whitespace().map(String::from).collect();
            if words.is_empty() {
                anyhow::bail!("--words-file {} holds no words", path.display());
            }
            Vocabulary::Words(words)
        }
    };
    let limit = match (args.records, args.duration) {
        (Some(records), _) => Limit::Records(records),
        (None, Some(duration)) => Limit::Duration(duration.into()),
        (None, None) => Limit::None,
    };
    let config = ProducerConfig {
        stream: args.stream.clone(),
        records_per_second: args.rate.get(),
        words_per_record: args.words_per_record.get(),
        vocabulary,
        limit,
        partition_keys: args.partition_keys.get(),
        aggregate: args.aggregate,
        seed: args.seed,
    };
    let clients = Clients::from_env().await?;
    if let Some(shards) = args.create_stream {
        shardwise::setup::ensure_stream(&clients.kinesis, &args.stream, shards.get()).await?;
    }
    let (stop, abort) = (CancellationToken::new(), CancellationToken::new());
    tokio::spawn(stop_on_signals(stop.clone(), abort.clone()));
    let terminal = std::io::stderr().is_terminal();
    let mut progress = |report: &shardwise::producer::ProducerReport,
                        elapsed: std::time::Duration| {
        if terminal {
            let rate = report.user_records as f64 / elapsed.as_secs_f64().max(0.001);
            eprint!(
                "\rsent {} records ({} Kinesis records), {rate:.0}/s, {} resent   ",
                report.user_records, report.kinesis_records, report.retried_records
            );
        }
    };
    let report =
        shardwise::producer::run(&clients.kinesis, &config, &stop, &abort, &mut progress).await?;
    if terminal {
        eprintln!();
    }
    let words: u64 = report.totals.values().sum();
    say!(
        "produced {} records ({} Kinesis records{}), {words} words; {} resent after partial failures",
        report.user_records,
        report.kinesis_records,
        if args.aggregate {
            ", KPL-aggregated"
        } else {
            ""
        },
        report.retried_records
    );
    let mut by_count: Vec<(&String, &u64)> = report.totals.iter().collect();
    by_count.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
    for (word, count) in by_count.iter().take(20) {
        say!("{count:>12}  {word}");
    }
    if let Some(path) = &args.totals_json {
        let json = serde_json::to_string_pretty(&report).context("could not encode the report")?;
        std::fs::write(path, json)
            .with_context(|| format!("could not write --totals-json {}", path.display()))?;
    }
    if report.unsent_user_records > 0 {
        anyhow::bail!(
            "stopped with {} records not written to Kinesis (they are not in the totals)",
            report.unsent_user_records
        );
    }
    Ok(())
}

/// First Ctrl-C or SIGTERM: finish up; second: give up now.
async fn stop_on_signals(stop: CancellationToken, abort: CancellationToken) {
    for token in [stop, abort] {
        if shutdown_signal().await.is_err() {
            return;
        }
        token.cancel();
    }
}

async fn shutdown_signal() -> std::io::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result,
        _ = terminate.recv() => Ok(()),
    }
}

async fn worker(config: shardwise::worker::WorkerConfig) -> anyhow::Result<()> {
    let metrics = Metrics::install(&config.metrics)?;
    let clients = Clients::from_env().await?;
    let (stop, abort) = (CancellationToken::new(), CancellationToken::new());
    tokio::spawn(stop_on_signals(stop.clone(), abort.clone()));
    // A second signal exits at once, without waiting for the drain.
    tokio::spawn(async move {
        abort.cancelled().await;
        eprintln!("second signal: exiting without waiting for the drain");
        std::process::exit(130);
    });
    let flushed = CancellationToken::new();
    let flusher = tokio::spawn(metrics.flush_every(config.metrics_interval, flushed.clone()));
    let result = shardwise::worker::run(config, clients, stop).await;
    // The last figures (leases released) are written before exiting.
    flushed.cancel();
    let _ = flusher.await;
    result?;
    Ok(())
}

async fn deregister_consumer(stream: String, name: String) -> anyhow::Result<()> {
    use shardwise::worker::{StreamRef, fanout};
    let clients = Clients::from_env().await?;
    let stream = StreamRef::parse(&stream);
    let arn = fanout::stream_arn(&clients.kinesis, &stream)
        .await
        .map_err(|detail| anyhow::anyhow!("stream \"{}\": {detail}", stream.name()))?;
    if fanout::deregister_consumer(&clients.kinesis, &arn, stream.name(), &name).await? {
        say!(
            "deregistered stream consumer \"{name}\" of stream \"{}\"",
            stream.name()
        );
    } else {
        say!(
            "stream \"{}\" has no consumer \"{name}\": nothing to do",
            stream.name()
        );
    }
    Ok(())
}

async fn status(args: StatusArgs) -> anyhow::Result<()> {
    let clients = Clients::from_env().await?;
    let table = shardwise::worker::lease::LeaseTable::new(clients.dynamodb, &args.application_name);
    loop {
        let leases = table.list().await?;
        if args.watch {
            clear_screen();
        }
        say!(
            "{:<24} {:<28} {:<9} {:>8} {:<24} {:>6} {:>10}  parents",
            "shard",
            "owner",
            "retrieval",
            "counter",
            "checkpoint",
            "sub",
            "lag ms"
        );
        for lease in &leases {
            let checkpoint = match lease.checkpoint.char_indices().rev().nth(22) {
                Some((cut, _)) if lease.checkpoint.len() > 24 => {
                    format!("…{}", &lease.checkpoint[cut..])
                }
                _ => lease.checkpoint.clone(),
            };
            say!(
                "{:<24} {:<28} {:<9} {:>8} {:<24} {:>6} {:>10}  {}",
                lease.key,
                lease.owner.as_deref().unwrap_or("-"),
                lease.retrieval.as_deref().unwrap_or("-"),
                lease.counter,
                checkpoint,
                lease.checkpoint_sub,
                lease.lag_millis.map_or("-".to_string(), |l| l.to_string()),
                lease.parents.join(",")
            );
        }
        say!("{} leases in table {}", leases.len(), args.application_name);
        if !args.watch || !pause(args.interval.into()).await {
            return Ok(());
        }
    }
}

/// On a terminal, clears it so that --watch redraws in place.
fn clear_screen() {
    use std::io::IsTerminal;
    if std::io::stdout().is_terminal() {
        print!("\x1b[2J\x1b[H");
    }
}

/// Sleeps; false if Ctrl-C or SIGTERM came first.
async fn pause(duration: std::time::Duration) -> bool {
    tokio::select! {
        _ = shutdown_signal() => false,
        _ = tokio::time::sleep(duration) => true,
    }
}

async fn counts(args: CountsArgs) -> anyhow::Result<()> {
    let clients = Clients::from_env().await?;
    let table = &args.table.counts_table;
    if let Some(path) = &args.expect {
        return expect_totals(&clients, table, path, args.wait.into()).await;
    }
    loop {
        let totals = sink::read_totals(&clients.dynamodb, table).await?;
        let words: u64 = totals.iter().map(|(_, count)| count).sum();
        if args.watch {
            clear_screen();
        }
        say!(
            "{} distinct words, {words} in all (table {table})",
            totals.len()
        );
        for (word, count) in totals.iter().take(args.top) {
            say!("{count:>12}  {word}");
        }
        if !args.watch || !pause(args.interval.into()).await {
            return Ok(());
        }
    }
}

/// Waits until the counts table holds exactly a producer's totals, and
/// says so; otherwise shows the differences and fails.
async fn expect_totals(
    clients: &Clients,
    table: &str,
    path: &std::path::Path,
    wait: std::time::Duration,
) -> anyhow::Result<()> {
    #[derive(serde::Deserialize)]
    struct Report {
        user_records: u64,
        totals: std::collections::BTreeMap<String, u64>,
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("could not read --expect {}", path.display()))?;
    let report: Report = serde_json::from_str(&text).with_context(|| {
        format!(
            "--expect {} is not a report of `shardwise produce --totals-json`",
            path.display()
        )
    })?;
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let totals: std::collections::BTreeMap<String, u64> =
            sink::read_totals(&clients.dynamodb, table)
                .await?
                .into_iter()
                .collect();
        if totals == report.totals {
            let words: u64 = totals.values().sum();
            say!(
                "verdict: EXACT: the counts table holds exactly what the producer wrote: {} records, {words} words, {} distinct, each counted once",
                report.user_records,
                totals.len()
            );
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            let mut differences = Vec::new();
            for word in report
                .totals
                .keys()
                .chain(totals.keys())
                .collect::<std::collections::BTreeSet<_>>()
            {
                let (want, got) = (
                    report.totals.get(word).copied().unwrap_or(0),
                    totals.get(word).copied().unwrap_or(0),
                );
                if want != got {
                    differences.push(format!("{word:?}: produced {want}, counted {got}"));
                }
            }
            say!(
                "verdict: DIFFERENT after waiting {}:",
                humantime::format_duration(wait)
            );
            for line in differences.iter().take(10) {
                say!("  {line}");
            }
            anyhow::bail!(
                "the counts table differs from the producer's totals in {} words",
                differences.len()
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}
