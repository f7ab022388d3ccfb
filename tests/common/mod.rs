//! Shared by the integration tests: names that never collide, and clients
//! built exactly as the binary builds them.
#![allow(dead_code)] // each test crate uses a different part of this module

use shardwise::aws::Clients;

/// A resource name unique to this test run, so tests never share state.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}-{}-{:08x}", std::process::id(), fastrand::u32(..))
}

/// The clients the binary would build from this environment. Refuses to
/// run without a local endpoint: these tests create and delete resources and
/// must never reach a real AWS account by accident.
pub async fn local_clients() -> Clients {
    let local = ["AWS_ENDPOINT_URL_KINESIS", "AWS_ENDPOINT_URL"]
        .iter()
        .any(|name| std::env::var_os(name).is_some());
    assert!(
        local,
        "no local AWS endpoint set: run the tests with scripts/test, \
         or `eval \"$(localstack/up)\"` first"
    );
    Clients::from_env().await.expect("AWS configuration")
}

/// Path of the project's checkout (for its scripts).
pub fn project_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}
