//! `telegram-bots`: the fleet on smol, for production.

use std::net::TcpListener;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant};

use async_io::{Async, Timer};
use smol::future::FutureExt as _;
use smol::{LocalExecutor, channel};
use telegram_bots_adapters::clock::now;
use telegram_bots_adapters::state_writer::StateWriter;
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
    let (config, plan) = (prepared.config, prepared.plan);
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

    let ex = Rc::new(LocalExecutor::new());
    let fleet = Fleet::new(FleetSettings::default(), plan.session_config.clone());
    let state = prepared.state;
    let rt = match Runtime::new(ex.clone(), fleet, plan.dcs, plan.bind, |on_written| {
        StateWriter::start(state, on_written)
    }) {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the state writer: {e}");
            return ExitCode::FAILURE;
        }
    };
    let bots = plan.wanted.len();
    smol::block_on(ex.run(async {
        rt.feed(|f| {
            f.set_wanted(plan.wanted, now());
            f.health_mut().set_serving();
        });
        tracing::info!("serving /healthz, /readyz and /metrics on {addr}; {bots} bots");
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
                tracing::warn!("stopping without the last commits of some bots (they are fetched again at the next start)");
            }
            rt.stop_writer();
        };
        server::serve(&ex, listener, rt.clone(), stop).await;
        if let Some(t) = stop_started.get() {
            tracing::info!("stopped in {} ms", t.elapsed().as_millis());
        }
    }));
    ExitCode::SUCCESS
}
