//! The fleet benchmark: `fake-telegram` and the service as separate processes, bots
//! whose sessions (the fake DC's pre-shared keys) are in the store, and what a fleet of
//! 100 to 10,000 bots costs: resident memory per idle bot, threads, restart to ready, a
//! first start with a handshake per bot, idle CPU, `/metrics`, SIGTERM to exit; with the
//! embedded SQLite store (a temp `DATA_DIR`) and with PostgreSQL (a private cluster, a
//! fresh database per run); and the fake DC's and the PostgreSQL server's own CPU beside
//! them, so that neither is the unseen bottleneck. `tests/bench-fleet` builds the
//! release binaries and runs it.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use telegram_bots_adapters::store::{Store as _, StorePlace};
use telegram_bots_core::config::Config;
use telegram_bots_core::record::{BotRecord, Commit, SessionRecord};
use telegram_bots_core::secret::Secret;
use telegram_bots_core::updates::UpdateState;

use crate::http;
use crate::postgres::{PgCluster, describe};
use crate::process::temp_dir;
use crate::service::Service;

/// The binaries under test.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub smol: PathBuf,
    pub blocking: PathBuf,
    pub fake: PathBuf,
}

/// `/proc/PID` figures.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcStat {
    pub rss_kib: u64,
    pub threads: u64,
    pub cpu_seconds: f64,
}

/// The fields of `/proc/PID/stat` after the command: the first is field 3 (the state).
fn stat_fields(pid: u32) -> Vec<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(')').map_or(vec![], |(_, rest)| {
        rest.split_whitespace().map(str::to_owned).collect()
    })
}

/// Field `n` of `/proc/PID/stat` (numbered as in proc(5)) as a number.
fn stat_field(fields: &[String], n: usize) -> f64 {
    fields
        .get(n - 3)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

pub fn proc_stat(pid: u32) -> ProcStat {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |key: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0)
    };
    let fields = stat_fields(pid);
    ProcStat {
        rss_kib: field("VmRSS:"),
        threads: field("Threads:"),
        cpu_seconds: (stat_field(&fields, 14) + stat_field(&fields, 15)) / 100.0,
    }
}

/// The CPU time of `root` and its children, the live ones and those it has reaped (a
/// PostgreSQL server: the postmaster, a process per connection, the background
/// workers).
fn tree_cpu_seconds(root: u32) -> f64 {
    // utime, stime, and the reaped children's cutime and cstime.
    let cpu = |fields: &[String]| (14..=17).map(|n| stat_field(fields, n)).sum::<f64>();
    let mut ticks = cpu(&stat_fields(root));
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let fields = stat_fields(pid);
        if stat_field(&fields, 4) == f64::from(root) {
            ticks += cpu(&fields);
        }
    }
    ticks / 100.0
}

/// Which store a run uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    /// The embedded SQLite file in a temp `DATA_DIR`.
    Sqlite,
    /// A fresh database on the private PostgreSQL cluster (`DATABASE_URL`).
    Postgres,
}

impl StoreKind {
    pub fn name(self) -> &'static str {
        match self {
            StoreKind::Sqlite => "SQLite",
            StoreKind::Postgres => "PostgreSQL",
        }
    }
}

/// A bot of the fake DC; with `record`, its session as a previous run would have
/// stored it.
#[derive(Clone, Debug)]
struct Bot {
    workspace: String,
    token: String,
    record: Option<BotRecord>,
}

/// A private PostgreSQL cluster (the test harness's [`PgCluster`]) and its
/// postmaster's pid, for the server's CPU; with the S3 server and the Inngest receiver
/// that a service with `DATABASE_URL` requires (idle here: no voice messages).
struct Postgres {
    cluster: PgCluster,
    sinks: crate::e2e_store::VoiceSinks,
    postmaster: u32,
    next_db: usize,
}

impl Postgres {
    fn start() -> Postgres {
        let mut cluster = PgCluster::init();
        cluster.start();
        let mut admin = Self::admin(&cluster);
        // The connection's own process is a child of the postmaster.
        let backend: i32 = admin
            .query_one("SELECT pg_backend_pid()", &[])
            .unwrap_or_else(|e| panic!("pg_backend_pid(): {}", describe(&e)))
            .get(0);
        let postmaster = stat_field(&stat_fields(backend.unsigned_abs()), 4) as u32;
        assert!(postmaster > 1, "the postmaster of backend {backend}");
        Postgres {
            cluster,
            sinks: crate::e2e_store::VoiceSinks::start(),
            postmaster,
            next_db: 0,
        }
    }

    fn admin(cluster: &PgCluster) -> postgres::Client {
        postgres::Client::connect(&cluster.admin_url(), postgres::NoTls)
            .unwrap_or_else(|e| panic!("connect to the private PostgreSQL: {}", describe(&e)))
    }

    fn execute(&self, database: &str, sql: &str) {
        postgres::Client::connect(&self.cluster.url(database), postgres::NoTls)
            .and_then(|mut c| c.batch_execute(sql))
            .unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)));
    }

    /// A new, empty database: its name and URL.
    fn create_database(&mut self) -> (String, String) {
        self.next_db += 1;
        let name = format!("fleet_bench_{}", self.next_db);
        self.execute("postgres", &format!("CREATE DATABASE {name}"));
        let url = self.cluster.url(&name);
        (name, url)
    }

    fn drop_database(&self, name: &str) {
        self.execute(
            "postgres",
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        );
    }

    fn cpu_seconds(&self) -> f64 {
        tree_cpu_seconds(self.postmaster)
    }
}

/// `fake-telegram` as its own process.
struct FakeDc {
    child: Child,
    control: String,
    dcs: String,
    pem: String,
    api_id: String,
    api_hash: String,
    next_bot: usize,
}

impl FakeDc {
    /// Started at a lower CPU priority: on a 2-core machine the fake DC's handshakes
    /// would otherwise take the service's CPU, which Telegram's servers never do.
    fn start(binary: &Path) -> FakeDc {
        let mut child = Command::new("nice")
            .args(["-n", "10"])
            .arg(binary)
            .args(["--dcs", "2"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start fake-telegram");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let info: Value = serde_json::from_str(&line).expect("the ready line");
        let dcs = info["dcs"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(id, addr)| format!("{id}={}", addr.as_str().unwrap()))
            .collect::<Vec<_>>()
            .join(",");
        FakeDc {
            control: info["control"].as_str().unwrap().to_owned(),
            pem: info["rsa_public_key_pem"].as_str().unwrap().to_owned(),
            api_id: info["api_id"].as_i64().unwrap_or(12345).to_string(),
            api_hash: info["api_hash"]
                .as_str()
                .unwrap_or(crate::e2e::API_HASH)
                .to_owned(),
            dcs,
            child,
            next_bot: 0,
        }
    }

    fn post(&self, path: &str, body: Value) -> Value {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        agent
            .post(format!("{}{path}", self.control))
            .send_json(&body)
            .unwrap_or_else(|e| panic!("POST {path}: {e}"))
            .body_mut()
            .read_json()
            .unwrap()
    }

    fn stats(&self) -> Value {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        agent
            .get(format!("{}/stats", self.control))
            .call()
            .unwrap()
            .body_mut()
            .read_json()
            .unwrap()
    }

    /// `n` new bots; with `sessions`, each also gets a key logged in as it, and its
    /// record (as a previous run would have saved it).
    fn provision(&mut self, n: usize, sessions: bool) -> Vec<Bot> {
        (0..n)
            .map(|_| {
                self.next_bot += 1;
                let i = self.next_bot;
                let token = format!("{}:AAbench-{i}", 8_000_000 + i);
                let username = format!("bench{i}");
                self.post("/bots", json!({"token": token, "username": username}));
                let record = sessions.then(|| {
                    let mut key = [0u8; 256];
                    getrandom::fill(&mut key).expect("randomness");
                    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
                    self.post(
                        "/auth_keys",
                        json!({"dc": 1, "auth_key_hex": hex, "bot": username}),
                    );
                    let mut session = SessionRecord {
                        home_dc: Some(1),
                        authorized: true,
                        user_id: Some(8_000_000 + i as i64),
                        username: Some(username.clone()),
                        ..SessionRecord::default()
                    };
                    session.auth_keys.insert(1, Secret::new(key));
                    BotRecord {
                        session,
                        updates: Some(UpdateState {
                            pts: 1,
                            ..UpdateState::default()
                        }),
                        channels: Vec::new(),
                    }
                });
                Bot {
                    workspace: format!("ws_{i}"),
                    token,
                    record,
                }
            })
            .collect()
    }
}

impl Drop for FakeDc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Commits per [`Store::write`](telegram_bots_adapters::store::Store::write) when
/// provisioning: one transaction per thousand bots, as the service's state writer
/// batches them.
const PROVISION_BATCH: usize = 1000;

/// Puts `bots` into the store that the service's environment `env` names, through the
/// `Store` API with the service's `ENCRYPTION_KEY`: `migrate`, an integration per bot
/// (`add`), and for a bot with a session one commit carrying it (the pre-shared key,
/// logged in) and its update state, written [`PROVISION_BATCH`] at a time. Checks that
/// the store then declares every bot, each stored session opening with the key.
fn provision(env: &[(&str, &str)], bots: &[Bot]) -> Duration {
    let t = Instant::now();
    let config = Config::from_env(env.iter().copied()).unwrap_or_else(|e| panic!("{e}"));
    let place = StorePlace::from_config(&config).unwrap_or_else(|e| panic!("{e}"));
    let fail = |what: &str, e: &dyn std::fmt::Display| -> ! {
        panic!("{what} ({}): {e}", place.describe())
    };
    let mut store = place.connect().unwrap_or_else(|e| fail("connect", &e));
    store.migrate().unwrap_or_else(|e| fail("migrate", &e));
    for bot in bots {
        store
            .add(&bot.workspace, &Secret::new(bot.token.clone()))
            .unwrap_or_else(|e| fail("add", &e));
    }
    let commits: Vec<(String, Commit)> = bots
        .iter()
        .filter_map(|bot| {
            let record = bot.record.as_ref()?;
            Some((
                bot.workspace.clone(),
                Commit {
                    id: 1,
                    session: Some(record.session.clone()),
                    updates: record.updates,
                    channels: None,
                    messages: Vec::new(),
                },
            ))
        })
        .collect();
    for batch in commits.chunks(PROVISION_BATCH) {
        store.write(batch).unwrap_or_else(|e| fail("write", &e));
    }
    let integrations = store
        .integrations()
        .unwrap_or_else(|e| fail("integrations", &e));
    assert_eq!(integrations.len(), bots.len(), "integrations in the store");
    let logged_in = integrations
        .iter()
        .filter(|i| i.enabled && i.token.is_ok() && i.record.session.authorized)
        .count();
    assert_eq!(logged_in, commits.len(), "stored sessions that open");
    t.elapsed()
}

/// What one run of the service measured.
#[derive(Debug, Default, Clone)]
pub struct Case {
    pub runtime: &'static str,
    pub store: &'static str,
    pub bots: usize,
    pub handshakes: bool,
    pub provision: Duration,
    pub to_ready: Duration,
    pub to_all_running: Duration,
    pub rss_kib: u64,
    pub threads: u64,
    pub idle_cpu_percent: f64,
    pub metrics_millis: f64,
    pub metrics_bytes: usize,
    pub healthz_max_millis: f64,
    pub sigterm_to_exit: Duration,
    pub cpu_seconds_start: f64,
    pub idle_seconds: f64,
    pub fake_cpu_seconds_start: f64,
    pub fake_rss_kib: u64,
    /// The PostgreSQL server's CPU from the spawn until every bot runs, and over the
    /// idle window (percent of one core); `None` with SQLite (in the service's process).
    pub db_cpu_seconds_start: Option<f64>,
    pub db_idle_cpu_percent: Option<f64>,
    pub logins: u64,
    pub new_handshakes: u64,
    /// The fake DC's auth-key conflicts (one key used from two connections) during the
    /// run.
    pub auth_key_conflicts: u64,
}

/// One run of the service.
struct Run<'a> {
    runtime: &'static str,
    binary: &'a Path,
    store: StoreKind,
    bots: &'a [Bot],
    idle: Duration,
}

/// One run: a fresh store holding `bots`, start the binary on it, wait for all of
/// them, measure, SIGTERM.
fn run(plan: &Run<'_>, fake: &FakeDc, pg: Option<&mut Postgres>, key: &str) -> Case {
    let dir = temp_dir("fleet-bench");
    std::fs::write(dir.join("dc.pem"), &fake.pem).unwrap();
    let path = |f: &str| dir.join(f).to_string_lossy().into_owned();
    let env = vec![
        ("TELEGRAM_RSA_PUBLIC_KEY", path("dc.pem")),
        ("TELEGRAM_DC_ADDRS", fake.dcs.clone()),
        ("TELEGRAM_API_ID", fake.api_id.clone()),
        ("TELEGRAM_API_HASH", fake.api_hash.clone()),
        ("ENCRYPTION_KEY", key.to_owned()),
        ("LOG_LEVEL", "warn".into()),
    ];
    let mut env: Vec<(String, String)> = env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    let (database, pg) = match (plan.store, pg) {
        (StoreKind::Sqlite, _) => {
            env.push(("DATA_DIR".into(), path("data")));
            (None, None)
        }
        (StoreKind::Postgres, Some(pg)) => {
            let (name, url) = pg.create_database();
            env.push(("DATABASE_URL".into(), url));
            env.extend(pg.sinks.env());
            (Some(name), Some(&*pg))
        }
        (StoreKind::Postgres, None) => unreachable!("a PostgreSQL run without its server"),
    };
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let provisioned = provision(&env, plan.bots);
    if let (Some(pg), Some(name)) = (pg, &database) {
        // A database that has been in use has been vacuumed and analysed: autovacuum
        // must not wake up for the new rows in the middle of the measurements.
        pg.execute(name, "VACUUM ANALYZE");
    }
    let stats_before = fake.stats();
    let fake_cpu = proc_stat(fake.child.id()).cpu_seconds;
    let db_cpu = pg.map(Postgres::cpu_seconds);

    let t0 = Instant::now();
    let mut service = Service::start(plan.binary, &env);
    // /healthz is polled throughout the start: the executor must never stall on it.
    let polling = Arc::new(AtomicBool::new(true));
    let health_addr = service.health_addr;
    let poller = std::thread::spawn({
        let polling = polling.clone();
        move || {
            let mut worst = Duration::ZERO;
            while polling.load(Ordering::SeqCst) {
                let t = Instant::now();
                if http::request(health_addr, "GET", "/healthz").is_ok_and(|r| r.status == 200) {
                    worst = worst.max(t.elapsed());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            worst
        }
    });
    service.wait_ready(Duration::from_secs(300));
    let to_ready = t0.elapsed();
    loop {
        let ready = http::get(service.health_addr, "/readyz").json();
        if ready["bots"].as_u64() == Some(plan.bots.len() as u64) {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(300),
            "not all running: {ready}\n{}",
            service.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let to_all_running = t0.elapsed();
    let cpu_start = proc_stat(service.pid()).cpu_seconds;
    let db_cpu_start = pg.zip(db_cpu).map(|(pg, before)| pg.cpu_seconds() - before);
    polling.store(false, Ordering::SeqCst);
    let healthz_max = poller.join().unwrap();
    let fake_cpu_start = proc_stat(fake.child.id()).cpu_seconds - fake_cpu;

    // Idle: let the start settle, then measure memory and CPU over `idle`.
    std::thread::sleep(Duration::from_secs(3));
    let before = proc_stat(service.pid());
    let db_before = pg.map(Postgres::cpu_seconds);
    std::thread::sleep(plan.idle);
    let after = proc_stat(service.pid());
    let db_idle = pg
        .zip(db_before)
        .map(|(pg, before)| (pg.cpu_seconds() - before) / plan.idle.as_secs_f64() * 100.0);
    let mut metrics = Vec::new();
    let mut metrics_bytes = 0;
    for _ in 0..5 {
        let t = Instant::now();
        let reply = http::get(service.health_addr, "/metrics");
        metrics.push(t.elapsed());
        metrics_bytes = reply.body.len();
    }
    metrics.sort();
    let stats_after = fake.stats();
    let total = |stats: &Value, key: &str| -> u64 {
        match &stats[key] {
            Value::Object(map) => map.values().filter_map(Value::as_u64).sum(),
            v => v.as_u64().unwrap_or(0),
        }
    };
    let t = Instant::now();
    service.signal(libc::SIGTERM);
    let status = service
        .wait_exit(Duration::from_secs(60))
        .expect("exits after SIGTERM");
    let sigterm_to_exit = t.elapsed();
    let logs = service.logs();
    assert_eq!(status.code(), Some(0), "{logs}");
    if !logs.trim().is_empty() {
        eprintln!(
            "{} with {} bots ({}) logged:\n{logs}",
            plan.runtime,
            plan.bots.len(),
            plan.store.name()
        );
    }
    if let (Some(pg), Some(name)) = (pg, &database) {
        pg.drop_database(name);
    }
    let _ = std::fs::remove_dir_all(&dir);
    Case {
        runtime: plan.runtime,
        store: plan.store.name(),
        bots: plan.bots.len(),
        handshakes: !plan.bots.is_empty() && plan.bots.iter().all(|b| b.record.is_none()),
        provision: provisioned,
        to_ready,
        to_all_running,
        rss_kib: after.rss_kib,
        threads: after.threads,
        idle_cpu_percent: (after.cpu_seconds - before.cpu_seconds) / plan.idle.as_secs_f64()
            * 100.0,
        metrics_millis: metrics[metrics.len() / 2].as_secs_f64() * 1000.0,
        metrics_bytes,
        healthz_max_millis: healthz_max.as_secs_f64() * 1000.0,
        sigterm_to_exit,
        cpu_seconds_start: cpu_start,
        idle_seconds: plan.idle.as_secs_f64(),
        fake_cpu_seconds_start: fake_cpu_start,
        fake_rss_kib: proc_stat(fake.child.id()).rss_kib,
        db_cpu_seconds_start: db_cpu_start,
        db_idle_cpu_percent: db_idle,
        logins: total(&stats_after, "logins") - total(&stats_before, "logins"),
        new_handshakes: total(&stats_after, "handshakes") - total(&stats_before, "handshakes"),
        auth_key_conflicts: total(&stats_after, "auth_key_conflicts")
            - total(&stats_before, "auth_key_conflicts"),
    }
}

/// Runs every case, prints the table, writes the JSON to `json_out`.
pub fn main(binaries: &Binaries, json_out: &Path, quick: bool) {
    let mut fake = FakeDc::start(&binaries.fake);
    // The key the service gets as ENCRYPTION_KEY, and provisioning seals with.
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).expect("randomness");
    let key = base64::engine::general_purpose::STANDARD.encode(key);
    // Long enough to include every bot's keep-alive ping (one a minute) in the largest
    // runs; shorter for the others.
    let (idle, idle_long) = if quick {
        (Duration::from_secs(5), Duration::from_secs(5))
    } else {
        (Duration::from_secs(10), Duration::from_secs(65))
    };
    let (sizes, pg_sizes): (&[usize], &[usize]) = if quick {
        (&[100, 1000], &[1000])
    } else {
        (&[100, 1000, 10_000], &[1000, 10_000])
    };
    let largest = *sizes.last().unwrap();
    let stored = fake.provision(largest, true);
    let fresh = fake.provision(2000, false);

    let windows = (idle, idle_long);
    // A first start: every bot makes a key and logs in (each bot once per runtime).
    let first_start = |runtime, binary, bots| Run {
        runtime,
        binary,
        store: StoreKind::Sqlite,
        bots,
        idle,
    };
    let mut plans = stored_runs(
        "smol",
        &binaries.smol,
        StoreKind::Sqlite,
        sizes,
        &stored,
        windows,
    );
    plans.push(first_start("smol", &binaries.smol, &fresh[..1000]));
    plans.extend(stored_runs(
        "smol",
        &binaries.smol,
        StoreKind::Postgres,
        pg_sizes,
        &stored,
        windows,
    ));
    // A thread per bot: the debugging runtime is not for ten thousand.
    let small: Vec<usize> = sizes.iter().copied().filter(|&n| n <= 1000).collect();
    plans.extend(stored_runs(
        "blocking",
        &binaries.blocking,
        StoreKind::Sqlite,
        &small,
        &stored,
        windows,
    ));
    plans.push(first_start("blocking", &binaries.blocking, &fresh[1000..]));

    // FLEET_BENCH_ONLY="smol Sqlite 10000" keeps the runs whose "runtime store bots"
    // contains it (a profile of one case).
    if let Ok(only) = std::env::var("FLEET_BENCH_ONLY") {
        plans.retain(|p| format!("{} {:?} {}", p.runtime, p.store, p.bots.len()).contains(&only));
    }
    let mut cases = Vec::new();
    // The PostgreSQL server runs only during its runs.
    let mut pg: Option<Postgres> = None;
    for plan in &plans {
        if plan.store == StoreKind::Postgres {
            pg.get_or_insert_with(Postgres::start);
        } else {
            pg = None;
        }
        let case = run(plan, &fake, pg.as_mut(), &key);
        eprintln!(
            "{} {} {} bots: all running in {:.2} s",
            case.runtime,
            case.store,
            case.bots,
            case.to_all_running.as_secs_f64()
        );
        cases.push(case);
    }
    drop(pg);
    print(&cases);
    println!(
        "auth-key conflicts at the fake DC: {}",
        cases.iter().map(|c| c.auth_key_conflicts).sum::<u64>()
    );
    let json: Vec<Value> = cases
        .iter()
        .map(|c| {
            json!({
                "runtime": c.runtime,
                "store": c.store,
                "bots": c.bots,
                "first_start_with_handshakes": c.handshakes,
                "provision_ms": c.provision.as_millis(),
                "start_to_ready_ms": c.to_ready.as_millis(),
                "start_to_all_running_ms": c.to_all_running.as_millis(),
                "rss_kib": c.rss_kib,
                "rss_per_bot_kib": per_bot_kib(&cases, c),
                "threads": c.threads,
                "idle_cpu_percent_of_one_core": c.idle_cpu_percent,
                "idle_window_seconds": c.idle_seconds,
                "cpu_seconds_until_all_running": c.cpu_seconds_start,
                "metrics_render_ms": c.metrics_millis,
                "metrics_bytes": c.metrics_bytes,
                "healthz_worst_during_start_ms": c.healthz_max_millis,
                "sigterm_to_exit_ms": c.sigterm_to_exit.as_millis(),
                "logins": c.logins,
                "handshakes": c.new_handshakes,
                "auth_key_conflicts": c.auth_key_conflicts,
                "fake_dc_cpu_seconds_during_start": c.fake_cpu_seconds_start,
                "fake_dc_rss_kib": c.fake_rss_kib,
                "postgres_cpu_seconds_until_all_running": c.db_cpu_seconds_start,
                "postgres_idle_cpu_percent_of_one_core": c.db_idle_cpu_percent,
            })
        })
        .collect();
    let report = json!({ "cases": json, "machine": machine() });
    std::fs::write(json_out, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    println!("\nJSON: {}", json_out.display());
}

/// An empty fleet, then the first `n` of `stored` for each of `sizes`; the largest
/// with the long idle window.
fn stored_runs<'a>(
    runtime: &'static str,
    binary: &'a Path,
    store: StoreKind,
    sizes: &[usize],
    stored: &'a [Bot],
    (idle, idle_long): (Duration, Duration),
) -> Vec<Run<'a>> {
    std::iter::once(0)
        .chain(sizes.iter().copied())
        .map(|n| Run {
            runtime,
            binary,
            store,
            bots: &stored[..n],
            idle: if n > 0 && Some(&n) == sizes.last() {
                idle_long
            } else {
                idle
            },
        })
        .collect()
}

/// Resident memory per bot: the run's minus that of the same runtime and store with no
/// bots.
fn per_bot_kib(cases: &[Case], c: &Case) -> Option<f64> {
    let empty = cases
        .iter()
        .find(|e| e.runtime == c.runtime && e.store == c.store && e.bots == 0)
        .map_or(0, |e| e.rss_kib);
    (c.bots > 0).then(|| c.rss_kib.saturating_sub(empty) as f64 / c.bots as f64)
}

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    json!({ "cpu": cpu, "cores": cores })
}

fn print(cases: &[Case]) {
    println!(
        "\n{:<9} {:<10} {:>6} {:>5} {:>9} {:>9} {:>7} {:>9} {:>9} {:>7} {:>8} {:>9} {:>9} {:>8} {:>8} {:>7} {:>9} {:>9} {:>8} {:>8}",
        "runtime",
        "store",
        "bots",
        "hs",
        "ready ms",
        "all ms",
        "CPU s",
        "RSS KiB",
        "KiB/bot",
        "threads",
        "idle %",
        "metrics",
        "metr. KB",
        "healthz",
        "stop ms",
        "logins",
        "fakeCPU s",
        "fake KiB",
        "pgCPU s",
        "pg idle%"
    );
    let optional = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.2}"));
    for c in cases {
        let per_bot = per_bot_kib(cases, c).map_or("-".into(), |v| format!("{v:.1}"));
        println!(
            "{:<9} {:<10} {:>6} {:>5} {:>9} {:>9} {:>7.2} {:>9} {:>9} {:>7} {:>8.2} {:>8.1}ms {:>9.1} {:>6.1}ms {:>8} {:>7} {:>9.2} {:>9} {:>8} {:>8}",
            c.runtime,
            c.store,
            c.bots,
            if c.handshakes { "yes" } else { "no" },
            c.to_ready.as_millis(),
            c.to_all_running.as_millis(),
            c.cpu_seconds_start,
            c.rss_kib,
            per_bot,
            c.threads,
            c.idle_cpu_percent,
            c.metrics_millis,
            c.metrics_bytes as f64 / 1000.0,
            c.healthz_max_millis,
            c.sigterm_to_exit.as_millis(),
            c.logins,
            c.fake_cpu_seconds_start,
            c.fake_rss_kib,
            optional(c.db_cpu_seconds_start),
            optional(c.db_idle_cpu_percent),
        );
    }
}
