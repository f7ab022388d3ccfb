//! Log output through `tracing`: human-readable on a terminal, JSON for
//! CloudWatch Logs. The level comes from `SHARDWISE_LOG` (or `RUST_LOG`),
//! in `tracing_subscriber`'s filter syntax; the default is `info`.

use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

/// Whether the process runs where logs go to CloudWatch (Lambda or ECS).
fn in_aws_runtime() -> bool {
    ["AWS_LAMBDA_RUNTIME_API", "ECS_CONTAINER_METADATA_URI_V4"]
        .iter()
        .any(|name| std::env::var_os(name).is_some())
}

/// Installs the global subscriber; logs go to stderr so that stdout stays
/// free for a command's output.
pub fn init(format: LogFormat) {
    let filter = std::env::var("SHARDWISE_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|spec| EnvFilter::try_new(spec).ok())
        // aws_config warns once per provider it probes (IMDS off AWS): noise.
        .unwrap_or_else(|| EnvFilter::new("info,aws_config=error"));
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Human => false,
        LogFormat::Auto => in_aws_runtime(),
    };
    // Colours only on a terminal: in a file or CloudWatch they are noise.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    // A second init (tests) keeps the first subscriber: ignore the error.
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}
