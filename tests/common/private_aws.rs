//! A private copy of the native local AWS, on ports and in a run folder of
//! its own, for tests that stop or freeze an engine without disturbing the
//! local AWS the other tests share.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};

use super::project_dir;

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

pub struct Ports {
    pub kinesis: u16,
    pub kinesis_tls: u16,
    pub dynamodb: u16,
}

impl Ports {
    pub fn free() -> Self {
        Self {
            kinesis: free_port(),
            kinesis_tls: free_port(),
            dynamodb: free_port(),
        }
    }
}

/// Runs `localstack/<name>` for the engines of `run_dir` and `ports`.
pub fn script(name: &str, run_dir: &Path, ports: &Ports) -> Output {
    Command::new(project_dir().join("localstack").join(name))
        .env("SHARDWISE_LOCAL_AWS", "native")
        .env("SHARDWISE_RUN_DIR", run_dir)
        .env("SHARDWISE_KINESIS_PORT", ports.kinesis.to_string())
        .env("SHARDWISE_KINESIS_TLS_PORT", ports.kinesis_tls.to_string())
        .env("SHARDWISE_DYNAMODB_PORT", ports.dynamodb.to_string())
        .output()
        .unwrap_or_else(|e| panic!("localstack/{name} could not run: {e}"))
}

pub fn pid(run_dir: &Path, engine: &str) -> u32 {
    std::fs::read_to_string(run_dir.join(format!("{engine}.pid")))
        .expect("pid file")
        .trim()
        .parse()
        .expect("a pid")
}

pub fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// The `export NAME=VALUE` lines `localstack/up` prints, as pairs.
pub fn parse_env(printed: &str) -> Vec<(String, String)> {
    printed
        .lines()
        .map(|line| {
            let (name, value) = line
                .strip_prefix("export ")
                .and_then(|assignment| assignment.split_once('='))
                .unwrap_or_else(|| panic!("not an export line: {line}"));
            (name.to_string(), value.to_string())
        })
        .collect()
}

/// Started engines, stopped (by `localstack/down`) when dropped.
pub struct PrivateAws {
    pub dir: tempfile::TempDir,
    pub ports: Ports,
    /// The environment `up` printed.
    pub env: Vec<(String, String)>,
}

impl PrivateAws {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let ports = Ports::free();
        let up = script("up", dir.path(), &ports);
        let aws = Self {
            env: parse_env(&String::from_utf8_lossy(&up.stdout)),
            dir,
            ports,
        };
        assert!(
            up.status.success(),
            "up failed: {}",
            String::from_utf8_lossy(&up.stderr)
        );
        aws
    }

    pub fn get(&self, name: &str) -> &str {
        self.env
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("{name} not printed"))
    }

    /// Clients of these engines (endpoints set per service).
    pub async fn clients(&self) -> shardwise::aws::Clients {
        let config = shardwise::aws::load_sdk_config().await;
        shardwise::aws::Clients {
            kinesis: aws_sdk_kinesis::Client::from_conf(
                aws_sdk_kinesis::config::Builder::from(&config)
                    .endpoint_url(self.get("AWS_ENDPOINT_URL_KINESIS"))
                    .build(),
            ),
            dynamodb: aws_sdk_dynamodb::Client::from_conf(
                aws_sdk_dynamodb::config::Builder::from(&config)
                    .endpoint_url(self.get("AWS_ENDPOINT_URL_DYNAMODB"))
                    .build(),
            ),
        }
    }
}

impl Drop for PrivateAws {
    fn drop(&mut self) {
        script("down", self.dir.path(), &self.ports);
    }
}
