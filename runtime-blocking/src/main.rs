//! `telegram-bots-blocking`: the fleet on OS threads, for local debugging.

use std::net::TcpListener;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use telegram_bots_adapters::clock::{OsRandom, now};
use telegram_bots_adapters::store_watch::{self, StoreWatch};
use telegram_bots_adapters::{prepare, signal};
use telegram_bots_blocking::runner::{Runner, spawn_driver};
use telegram_bots_blocking::server::HealthServer;
use telegram_bots_core::fleet::{Fleet, FleetSettings};

const BINARY: &str = "telegram-bots-blocking";
/// How long a stop waits for the bots' last commits before it exits anyway (nothing is
/// lost: what was not committed is fetched again after the restart).
const STOP_GRACE: Duration = Duration::from_millis(1500);

fn main() -> ExitCode {
    let prepared = match prepare(
        BINARY,
        "Telegram bot fleet on OS threads (a thread per bot), for local debugging",
    ) {
        Ok(prepared) => prepared,
        Err(code) => return code,
    };
    let (config, plan, demo) = (prepared.config, prepared.plan, prepared.demo);
    let (stop_tx, stop_rx) = mpsc::channel();
    if let Err(e) = signal::on_stop(move || {
        let _ = stop_tx.send(());
    }) {
        tracing::error!("cannot install the signal handler: {e}");
        return ExitCode::FAILURE;
    }
    let listener = match TcpListener::bind(config.health_addr) {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!("HEALTH_ADDR {}: cannot listen: {e}", config.health_addr);
            return ExitCode::FAILURE;
        }
    };
    let writer_store = match plan.store.connect() {
        Ok(store) => store,
        Err(e) => {
            tracing::error!("{}: {e}", plan.store.describe());
            return ExitCode::FAILURE;
        }
    };
    let fleet = Fleet::new(FleetSettings::default(), plan.session_config.clone());
    let runner = match Runner::start(
        fleet,
        plan.dcs,
        plan.bind,
        writer_store,
        plan.sinks,
        plan.sink_threads,
    ) {
        Ok(runner) => runner,
        Err(e) => {
            tracing::error!("cannot start the state writer or the voice sinks' threads: {e}");
            return ExitCode::FAILURE;
        }
    };
    let server = match HealthServer::start(listener, runner.clone()) {
        Ok(server) => server,
        Err(e) => {
            tracing::error!("cannot start the health server: {e}");
            return ExitCode::FAILURE;
        }
    };
    let stopping = Arc::new(AtomicBool::new(false));
    let driver = match spawn_driver(runner.clone(), stopping.clone(), STOP_GRACE) {
        Ok(driver) => driver,
        Err(e) => {
            tracing::error!("cannot start the fleet's thread: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!("store: {}", plan.store.describe());
    let watch = StoreWatch::start(
        plan.store,
        plan.bots,
        plan.bots_file,
        runner.voice_room.clone(),
        {
            let runner = runner.clone();
            move |report| runner.feed(|f| store_watch::apply(f, report, now(), &mut OsRandom))
        },
    );
    let watch = match watch {
        Ok(watch) => watch,
        Err(e) => {
            tracing::error!("cannot start the store watcher: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(
        "serving /healthz, /readyz and /metrics on {}",
        server.local_addr()
    );

    let _ = stop_rx.recv();
    let stop_started = Instant::now();
    // Readiness turns 503 now; the log line after it may be relied on.
    runner.feed(|f| f.stop(now()));
    stopping.store(true, Ordering::SeqCst);
    runner.wake();
    tracing::info!("stop signal received (SIGTERM/SIGINT), stopping bots...");
    watch.stop();
    let _ = driver.join();
    runner.finish();
    server.stop();
    tracing::info!("stopped in {} ms", stop_started.elapsed().as_millis());
    if let Some(demo) = demo {
        demo.finish();
    }
    ExitCode::SUCCESS
}
