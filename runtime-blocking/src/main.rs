//! `telegram-bots-blocking`: the fleet on OS threads (one per bot), for local debugging.

use std::net::TcpListener;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use telegram_bots_blocking::server::HealthServer;
use telegram_bots_blocking::shared::SharedHealth;
use telegram_bots_blocking::{bot_thread, fleet, prepare, signal};
use telegram_bots_core::bot::Bot;
use telegram_bots_core::fleet::BotStatus;

const BINARY: &str = "telegram-bots-blocking";

fn main() -> ExitCode {
    let (config, plan) = match prepare(
        BINARY,
        "Telegram bot fleet on OS threads (one per bot), for local debugging",
    ) {
        Ok(prepared) => prepared,
        Err(code) => return code,
    };
    let (stop_tx, stop_rx) = mpsc::channel();
    if let Err(e) = signal::on_stop(move || {
        let _ = stop_tx.send(());
    }) {
        tracing::error!("cannot install the signal handler: {e}");
        return ExitCode::FAILURE;
    }

    let health = SharedHealth::new();
    let listener = match TcpListener::bind(config.health_addr) {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!("HEALTH_ADDR {}: cannot listen: {e}", config.health_addr);
            return ExitCode::FAILURE;
        }
    };
    let server = match HealthServer::start(listener, health.clone()) {
        Ok(server) => server,
        Err(e) => {
            tracing::error!("cannot start the health server: {e}");
            return ExitCode::FAILURE;
        }
    };

    let stop = Arc::new(AtomicBool::new(false));
    let dcs = Arc::new(plan.dcs);
    let mut threads = Vec::new();
    for (bot_config, snapshot) in plan.bots {
        let now_unix = fleet::now().unix_secs.max(0) as u64;
        health
            .lock()
            .fleet
            .upsert(BotStatus::new(&bot_config.workspace_id, now_unix));
        let bot = Bot::new(bot_config, plan.session_config.clone(), snapshot);
        match bot_thread::spawn(
            bot,
            dcs.clone(),
            health.clone(),
            plan.state.clone(),
            stop.clone(),
        ) {
            Ok(thread) => threads.push(thread),
            Err(e) => tracing::error!("cannot start a bot thread: {e}"),
        }
    }
    health.lock().set_serving();
    tracing::info!(
        "serving /healthz, /readyz and /metrics on {}; {} bots",
        server.local_addr(),
        threads.len()
    );

    let _ = stop_rx.recv();
    let stop_started = Instant::now();
    health.begin_stop();
    stop.store(true, Ordering::SeqCst);
    for thread in threads {
        let _ = thread.join();
    }
    server.stop();
    tracing::info!("stopped in {} ms", stop_started.elapsed().as_millis());
    ExitCode::SUCCESS
}
