//! `localstack/up` and `localstack/down` as a user runs them: a second copy
//! of the native engines on ports of its own, in a run folder of its own, so
//! it never touches the local AWS the other tests use.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;

use common::private_aws::{Ports, alive, free_port, parse_env, pid, script};

/// Runs `localstack/down` when the test ends, passed or failed, so that a
/// failed assertion never leaves engines behind.
struct StopOnDrop<'a> {
    run_dir: &'a Path,
    ports: &'a Ports,
}

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        script("down", self.run_dir, self.ports);
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn native_mode_only() -> bool {
    if std::env::var("SHARDWISE_LOCAL_AWS").as_deref() == Ok("docker") {
        eprintln!(
            "the native engines' scripts are not exercised when the suite runs on LocalStack"
        );
        return false;
    }
    true
}

#[test]
fn up_twice_starts_one_copy_and_down_stops_it() {
    if !native_mode_only() {
        return;
    }
    let run_dir = tempfile::tempdir().expect("temp dir");
    let ports = Ports {
        kinesis: free_port(),
        kinesis_tls: free_port(),
        dynamodb: free_port(),
    };

    let _stop_on_failure = StopOnDrop {
        run_dir: run_dir.path(),
        ports: &ports,
    };
    let first = script("up", run_dir.path(), &ports);
    assert!(first.status.success(), "up failed: {}", text(&first.stderr));
    let env = text(&first.stdout);
    let kinesis_url = format!("http://127.0.0.1:{}", ports.kinesis);
    let dynamodb_url = format!("http://127.0.0.1:{}", ports.dynamodb);
    assert!(
        env.contains(&format!("export AWS_ENDPOINT_URL_KINESIS={kinesis_url}\n")),
        "{env}"
    );
    assert!(
        env.contains(&format!(
            "export AWS_ENDPOINT_URL_DYNAMODB={dynamodb_url}\n"
        )),
        "{env}"
    );
    assert!(env.contains("export AWS_REGION="), "{env}");
    let (dynamodb_pid, kinesis_pid) = (
        pid(run_dir.path(), "dynamodb"),
        pid(run_dir.path(), "kinesis"),
    );
    assert!(alive(dynamodb_pid) && alive(kinesis_pid));

    let second = script("up", run_dir.path(), &ports);
    assert!(
        second.status.success(),
        "second up failed: {}",
        text(&second.stderr)
    );
    assert_eq!(text(&second.stdout), env, "the same environment again");
    assert!(
        text(&second.stderr).contains("already running"),
        "{}",
        text(&second.stderr)
    );
    assert_eq!(
        pid(run_dir.path(), "dynamodb"),
        dynamodb_pid,
        "no second DynamoDB Local"
    );
    assert_eq!(
        pid(run_dir.path(), "kinesis"),
        kinesis_pid,
        "no second kinesis-mock"
    );

    // The printed environment, applied as `eval` would, is all the binary
    // needs to reach the engines.
    let mut setup = Command::new(env!("CARGO_BIN_EXE_shardwise"));
    setup.args(["setup", "--stream", "scripts-test", "--shards", "1"]);
    setup.envs(parse_env(&env));
    let setup = setup.output().expect("shardwise setup");
    assert!(
        setup.status.success(),
        "setup failed: {}",
        text(&setup.stderr)
    );
    assert!(text(&setup.stdout).starts_with("created stream scripts-test"));

    let down = script("down", run_dir.path(), &ports);
    assert!(down.status.success(), "down failed: {}", text(&down.stderr));
    assert!(
        !alive(dynamodb_pid),
        "DynamoDB Local (pid {dynamodb_pid}) still runs after down"
    );
    assert!(
        !alive(kinesis_pid),
        "kinesis-mock (pid {kinesis_pid}) still runs after down"
    );
    assert!(!run_dir.path().join("dynamodb.pid").exists());
    for port in [ports.kinesis, ports.kinesis_tls, ports.dynamodb] {
        assert!(
            TcpListener::bind(("127.0.0.1", port)).is_ok(),
            "port {port} still taken after down"
        );
    }
}

#[test]
fn up_refuses_a_taken_port_and_names_the_remedy() {
    if !native_mode_only() {
        return;
    }
    let run_dir = tempfile::tempdir().expect("temp dir");
    let squatter = TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken = squatter.local_addr().expect("addr").port();
    let ports = Ports {
        kinesis: free_port(),
        kinesis_tls: free_port(),
        dynamodb: taken,
    };
    let up = script("up", run_dir.path(), &ports);
    assert_eq!(up.status.code(), Some(1));
    let stderr = text(&up.stderr);
    assert!(
        stderr.contains(&format!("port {taken} for DynamoDB Local is already taken")),
        "{stderr}"
    );
    assert!(
        stderr.contains("SHARDWISE_DYNAMODB_PORT=<free port>"),
        "{stderr}"
    );
    assert!(up.stdout.is_empty(), "nothing for eval on failure");
    assert!(
        !run_dir.path().join("dynamodb.pid").exists(),
        "nothing started"
    );
}
