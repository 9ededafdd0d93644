//! A service binary under test, run as a real process.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::net::free_port;
use crate::process::kill;

/// A running service. Killed on drop if it is still running.
#[derive(Debug)]
pub struct Service {
    child: Child,
    pub health_addr: SocketAddr,
    logs: Arc<Mutex<String>>,
    log_readers: Vec<thread::JoinHandle<()>>,
    exit: Option<ExitStatus>,
}

impl Service {
    /// Starts `binary` with a clean environment: `PATH`, `HEALTH_ADDR` on a free loopback
    /// port, and `env`. Does not wait for it to be up.
    pub fn start(binary: &Path, env: &[(&str, &str)]) -> Service {
        Self::start_with_args(binary, &[], env)
    }

    /// [`Service::start`] with command-line arguments (`demo`, say).
    pub fn start_with_args(binary: &Path, args: &[&str], env: &[(&str, &str)]) -> Service {
        let health_addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let mut command = Command::new(binary);
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HEALTH_ADDR", health_addr.to_string())
            .env("DATA_DIR", scratch_data_dir())
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
        let logs = Arc::new(Mutex::new(String::new()));
        let mut log_readers = Vec::new();
        for pipe in [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let logs = logs.clone();
            log_readers.push(thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let mut logs = logs.lock().unwrap();
                    logs.push_str(&line);
                    logs.push('\n');
                }
            }));
        }
        Service {
            child,
            health_addr,
            logs,
            log_readers,
            exit: None,
        }
    }

    /// Waits until `/healthz` answers 200; panics with the logs after `timeout`.
    pub fn wait_healthy(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let reply = crate::http::request(self.health_addr, "GET", "/healthz");
            if reply.is_ok_and(|r| r.status == 200) {
                return;
            }
            if let Some(status) = self.try_exit() {
                panic!("service exited early with {status}:\n{}", self.logs());
            }
            thread::sleep(Duration::from_millis(2));
        }
        panic!("service not healthy within {timeout:?}:\n{}", self.logs());
    }

    /// Waits until `/readyz` answers 200.
    pub fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        self.wait_healthy(timeout);
        while Instant::now() < deadline {
            if crate::http::get(self.health_addr, "/readyz").status == 200 {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        panic!("service not ready within {timeout:?}:\n{}", self.logs());
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, signal: i32) {
        kill(self.pid(), signal).expect("signal the service");
    }

    fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().ok().flatten();
        }
        self.exit
    }

    /// Waits for the process to exit; `None` if it is still running after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit() {
                // The pipes are at EOF once the process is gone: collect the last lines.
                for reader in self.log_readers.drain(..) {
                    let _ = reader.join();
                }
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(1));
        }
    }

    /// Waits until the output contains `needle`; false after `timeout`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.logs().contains(needle) {
                return true;
            }
            thread::sleep(Duration::from_millis(2));
        }
        false
    }

    /// Everything the process printed so far (stdout and stderr).
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if self.try_exit().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `binary` with `args` and `env` to completion (for `--help`, bad configuration).
pub fn run_to_exit(binary: &Path, args: &[&str], env: &[(&str, &str)]) -> (ExitStatus, String) {
    let out = Command::new(binary)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DATA_DIR", scratch_data_dir())
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", binary.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status, text)
}

/// A data directory for the embedded store of a service that the test gives none, so
/// that no test writes into the source tree. Under the system's temp dir; the service
/// creates it.
pub fn scratch_data_dir() -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    std::env::temp_dir().join(format!(
        "telegram-bots-data-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}
