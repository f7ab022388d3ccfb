//! A `shardwise worker` process of the built binary, as the tests run it:
//! its log (stderr) and its metrics (stdout) in files, signals by pid,
//! killed when the test ends.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub struct WorkerProcess {
    child: Child,
    pub log: PathBuf,
    pub stdout: PathBuf,
}

impl WorkerProcess {
    /// Starts a worker of application `app` on `stream`, counting into
    /// `counts` from TRIM_HORIZON, with `extra` flags and environment. Its
    /// log goes to a file of its own in the temp folder.
    pub fn start(
        app: &str,
        stream: &str,
        counts: &str,
        extra: &[&str],
        env: &[(String, String)],
    ) -> Self {
        static STARTED: AtomicU64 = AtomicU64::new(0);
        let n = STARTED.fetch_add(1, Ordering::SeqCst);
        let log = std::env::temp_dir().join(format!("{app}-{n}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let stdout = std::env::temp_dir().join(format!("{app}-{n}.stdout"));
        let out = std::fs::File::create(&stdout).expect("stdout file");
        let child = Command::new(env!("CARGO_BIN_EXE_shardwise"))
            .args([
                "worker",
                "--application-name",
                app,
                "--stream",
                stream,
                "--counts-table",
                counts,
            ])
            .args(["--initial-position", "TRIM_HORIZON"])
            .args(extra)
            .envs(env.iter().cloned())
            .stdout(out)
            .stderr(file)
            .spawn()
            .expect("shardwise worker");
        Self { child, log, stdout }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, signal: &str) {
        send_signal(signal, self.child.id());
    }

    /// Waits for the process to exit (up to `limit`).
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the worker still runs; log: {}",
                self.log.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then the exit code (the drain takes well under 30 s).
    pub fn stop(&mut self) -> Option<i32> {
        self.signal("-TERM");
        self.wait(Duration::from_secs(30)).code()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// What it wrote to stdout (its EMF metrics) so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `kill SIGNAL PID`.
pub fn send_signal(signal: &str, pid: u32) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill {signal} {pid}");
}
