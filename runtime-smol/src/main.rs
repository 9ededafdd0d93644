//! `telegram-bots`: the fleet on smol, for production.

use std::net::TcpListener;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant};

use async_io::{Async, Timer};
use smol::future::FutureExt as _;
use smol::{LocalExecutor, channel};
use telegram_bots_adapters::clock::{OsRandom, now};
use telegram_bots_adapters::state_writer::StateWriter;
use telegram_bots_adapters::store_watch::{self, Report, StoreWatch};
use telegram_bots_adapters::voice_sink::{SinkPool, pool};
use telegram_bots_adapters::{prepare, signal};
use telegram_bots_core::fleet::{Fleet, FleetSettings};
use telegram_bots_smol::driver::Runtime;
use telegram_bots_smol::server;

const BINARY: &str = "telegram-bots";
/// How long a stop waits for the bots' last commits before it exits anyway (nothing is
/// lost: what was not committed is fetched again after the restart).
const STOP_GRACE: Duration = Duration::from_millis(1500);

fn main() -> ExitCode {
    let prepared = match prepare(
        BINARY,
        "Telegram bot fleet over MTProto: voice messages to S3 and Inngest",
    ) {
        Ok(prepared) => prepared,
        Err(code) => return code,
    };
    let (config, plan, demo) = (prepared.config, prepared.plan, prepared.demo);
    let (stop_tx, stop_rx) = channel::bounded::<()>(1);
    if let Err(e) = signal::on_stop(move || {
        let _ = stop_tx.try_send(());
    }) {
        tracing::error!("cannot install the signal handler: {e}");
        return ExitCode::FAILURE;
    }
    let listener = match TcpListener::bind(config.health_addr).and_then(Async::new) {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!("HEALTH_ADDR {}: cannot listen: {e}", config.health_addr);
            return ExitCode::FAILURE;
        }
    };
    let addr = server::local_addr(&listener).unwrap_or(config.health_addr);
    let writer_store = match plan.store.connect() {
        Ok(store) => store,
        Err(e) => {
            tracing::error!("{}: {e}", plan.store.describe());
            return ExitCode::FAILURE;
        }
    };

    let ex = Rc::new(LocalExecutor::new());
    let fleet = Fleet::new(FleetSettings::default(), plan.session_config.clone());
    let (sinks, sink_threads) = (plan.sinks, plan.sink_threads);
    let rt = match Runtime::new(
        ex.clone(),
        fleet,
        plan.dcs,
        plan.bind,
        |on_written| StateWriter::start(writer_store, on_written),
        |on_done| SinkPool::start(sinks, sink_threads, pool::CAPACITY, on_done),
    ) {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the state writer or the voice sinks' threads: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The store's reports come from the watcher's thread; the executor applies them.
    let (reports_tx, reports) = channel::unbounded::<Report>();
    tracing::info!("store: {}", plan.store.describe());
    let watch = StoreWatch::start(
        plan.store,
        plan.bots,
        plan.bots_file,
        rt.voice_room.clone(),
        move |r| {
            let _ = reports_tx.try_send(r);
        },
    );
    let watch = match watch {
        Ok(watch) => watch,
        Err(e) => {
            tracing::error!("cannot start the store watcher: {e}");
            return ExitCode::FAILURE;
        }
    };
    smol::block_on(ex.run(async {
        tracing::info!("serving /healthz, /readyz and /metrics on {addr}");
        ex.spawn({
            let rt = rt.clone();
            async move {
                while let Ok(report) = reports.recv().await {
                    rt.feed(|f| store_watch::apply(f, report, now(), &mut OsRandom));
                }
            }
        })
        .detach();
        let stop_started = std::cell::Cell::new(None);
        let driver = ex.spawn({
            let rt = rt.clone();
            async move { rt.drive().await }
        });
        let stop = async {
            let _ = stop_rx.recv().await;
            stop_started.set(Some(Instant::now()));
            rt.feed(|f| f.stop(now()));
            rt.kick();
            tracing::info!("stop signal received (SIGTERM/SIGINT), stopping bots...");
            let grace = async {
                Timer::after(STOP_GRACE).await;
            };
            driver.or(grace).await;
            if !rt.fleet.borrow().is_stopped() {
                tracing::warn!(
                    "stopping without the last commits of some bots (they are fetched again at the next start)"
                );
            }
            rt.stop_writer();
        };
        server::serve(&ex, listener, rt.clone(), stop).await;
        if let Some(t) = stop_started.get() {
            tracing::info!("stopped in {} ms", t.elapsed().as_millis());
        }
    }));
    drop(watch);
    if let Some(demo) = demo {
        demo.finish();
    }
    ExitCode::SUCCESS
}
