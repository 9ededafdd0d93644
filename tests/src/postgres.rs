//! A real PostgreSQL for tests, one fresh database per test.
//!
//! With `DATABASE_URL` set, that server is used (the URL must name a role allowed to
//! create databases). Without it, the first test of the process starts a private
//! throwaway cluster on a free loopback port: `initdb` into a temp dir and `postgres` in
//! the foreground, as the `postgres` user when running as root (PostgreSQL refuses to run
//! as root), tied to the test process so that it stops when the process ends.
//!
//! A test that restarts the database owns a [`PgCluster`] of its own, whatever
//! `DATABASE_URL` says: the same start-up, with [`PgCluster::stop`] and
//! [`PgCluster::start`] again on the same data and port.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::process::{die_with_parent, find_executable, is_root, temp_dir, user_ids};

/// The server all tests of this process use.
#[derive(Debug)]
pub struct PgServer {
    /// URL of a role that may create databases, ending in a database name.
    admin_url: String,
    /// The private cluster, when there is no `DATABASE_URL` (never dropped: the server
    /// stops with the process).
    _cluster: Option<PgCluster>,
}

impl PgServer {
    /// The shared server, started on first use.
    pub fn get() -> &'static PgServer {
        static SERVER: OnceLock<PgServer> = OnceLock::new();
        SERVER.get_or_init(|| match std::env::var("DATABASE_URL") {
            Ok(url) if !url.is_empty() => PgServer {
                admin_url: url,
                _cluster: None,
            },
            _ => start_private_cluster(),
        })
    }

    pub fn admin_url(&self) -> &str {
        &self.admin_url
    }
}

/// A database of its own for one test, dropped with this value.
#[derive(Debug)]
pub struct TestDb {
    name: String,
    url: String,
}

impl TestDb {
    pub fn new() -> TestDb {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let server = PgServer::get();
        let name = format!(
            "tb_test_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut admin = connect(server.admin_url());
        // Two statements, not one batch: CREATE DATABASE cannot run in a transaction,
        // and a multi-statement batch is one.
        for sql in [
            format!("DROP DATABASE IF EXISTS {name}"),
            format!("CREATE DATABASE {name}"),
        ] {
            admin
                .batch_execute(&sql)
                .unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)));
        }
        TestDb {
            url: with_database(server.admin_url(), &name),
            name,
        }
    }

    /// The URL of this database, for `DATABASE_URL` of a service under test.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn connect(&self) -> postgres::Client {
        connect(&self.url)
    }
}

impl Default for TestDb {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Ok(mut admin) =
            postgres::Client::connect(PgServer::get().admin_url(), postgres::NoTls)
        {
            let _ = admin.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

fn connect(url: &str) -> postgres::Client {
    postgres::Client::connect(url, postgres::NoTls)
        .unwrap_or_else(|e| panic!("connect to PostgreSQL for tests: {}", describe(&e)))
}

/// The server's own message where there is one (`Display` says only "db error").
pub fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    }
}

/// `url` with its database name replaced by `database` (query string kept).
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{database}?{query}"),
        None => format!("{base}/{database}"),
    }
}

/// The directory of `initdb` and `postgres`: PATH first, then Debian's versioned dirs.
fn pg_bin_dir() -> PathBuf {
    if let Some(initdb) = find_executable("initdb") {
        return initdb.parent().expect("a file has a parent").to_owned();
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|bin| bin.join("initdb").is_file())
        .collect();
    dirs.sort_by_key(|d| {
        d.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    dirs.pop().expect(
        "PostgreSQL server binaries (initdb) not found, and a private cluster needs them \
         (without DATABASE_URL, or for a test that restarts its database): install them \
         (apt-get install postgresql) or run tests/run, which does",
    )
}

fn start_private_cluster() -> PgServer {
    let mut cluster = PgCluster::init();
    cluster.start();
    PgServer {
        admin_url: cluster.admin_url(),
        _cluster: Some(cluster),
    }
}

/// A private cluster: `initdb` into a temp dir, and a server on a loopback port that a
/// test can stop and start again on the same data and port (a database restart). Run
/// as the `postgres` user when running as root. Dropping it stops the server and
/// removes the dir; the server also stops when the test process ends.
#[derive(Debug)]
pub struct PgCluster {
    bin: PathBuf,
    dir: PathBuf,
    owner: Option<(u32, u32)>,
    port: u16,
    server: Option<RunningServer>,
}

/// A started `postgres`: its pid, and the thread that spawned it and waits for it.
#[derive(Debug)]
struct RunningServer {
    pid: u32,
    keeper: thread::JoinHandle<()>,
}

impl PgCluster {
    /// A new cluster, not started.
    pub fn init() -> PgCluster {
        let bin = pg_bin_dir();
        let dir = temp_dir("telegram-bots-pg");
        let owner = if is_root() {
            let ids = user_ids("postgres")
                .expect("running as root, and there is no `postgres` user to run PostgreSQL as");
            chown_recursive(&dir, ids);
            Some(ids)
        } else {
            None
        };
        let cluster = PgCluster {
            bin,
            dir,
            owner,
            port: crate::net::free_port(),
            server: None,
        };
        let mut initdb = cluster.command("initdb");
        initdb
            .arg("-D")
            .arg(cluster.dir.join("data"))
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .stdout(Stdio::null());
        let out = initdb.output().expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        cluster
    }

    /// A PostgreSQL program of the cluster's installation, run as the cluster's owner.
    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin.join(program));
        if let Some((uid, gid)) = self.owner {
            std::os::unix::process::CommandExt::uid(&mut command, uid);
            std::os::unix::process::CommandExt::gid(&mut command, gid);
        }
        command
    }

    /// Starts the server and waits until it accepts connections.
    pub fn start(&mut self) {
        assert!(
            self.server.is_none(),
            "the test PostgreSQL is already running"
        );
        let log = self.dir.join("log");
        let mut postgres = self.command("postgres");
        postgres
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(&self.dir)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
            ])
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .map_or(Stdio::null(), Stdio::from),
            );
        // SIGINT is PostgreSQL's fast shutdown.
        die_with_parent(&mut postgres, libc::SIGINT);

        // The kernel signals the child when the spawning *thread* ends, so spawn from a
        // thread that lives as long as the server.
        let (started_tx, started) = std::sync::mpsc::channel();
        let keeper = thread::Builder::new()
            .name("test-postgres".into())
            .spawn(move || match postgres.spawn() {
                Ok(mut child) => {
                    let _ = started_tx.send(Ok(child.id()));
                    let _ = child.wait();
                }
                Err(e) => {
                    let _ = started_tx.send(Err(e.to_string()));
                }
            })
            .expect("spawn the postgres keeper thread");
        let pid = started
            .recv()
            .expect("keeper thread reports")
            .unwrap_or_else(|e| panic!("start postgres: {e}"));
        self.server = Some(RunningServer { pid, keeper });

        let admin_url = self.admin_url();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match postgres::Client::connect(&admin_url, postgres::NoTls) {
                Ok(_) => break,
                Err(e) if Instant::now() > deadline => panic!(
                    "private PostgreSQL did not start: {e}\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                ),
                Err(_) => thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Stops the server (fast shutdown: sessions are ended, committed data kept) and
    /// waits until it has exited.
    pub fn stop(&mut self) {
        let server = self
            .server
            .take()
            .expect("the test PostgreSQL is not running");
        crate::process::kill(server.pid, libc::SIGINT).expect("signal postgres");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !server.keeper.is_finished() {
            assert!(
                Instant::now() < deadline,
                "postgres did not exit within a minute of SIGINT"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A URL of the superuser on `database`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    pub fn admin_url(&self) -> String {
        self.url("postgres")
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.server.is_some() {
            self.stop();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn chown_recursive(path: &Path, (uid, gid): (u32, u32)) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown the PostgreSQL dir");
    if path.is_dir() {
        for entry in std::fs::read_dir(path).into_iter().flatten().flatten() {
            chown_recursive(&entry.path(), (uid, gid));
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn database_name_is_replaced() {
        use super::with_database as w;
        assert_eq!(
            w("postgres://u:p@h:5/postgres", "x"),
            "postgres://u:p@h:5/x"
        );
        assert_eq!(w("postgres://h", "x"), "postgres://h/x");
        assert_eq!(
            w("postgres://h/db?sslmode=disable", "x"),
            "postgres://h/x?sslmode=disable"
        );
    }
}
