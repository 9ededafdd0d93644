//! `telegram-bots-blocking`: the fleet on OS threads, for local debugging.

use std::net::TcpListener;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Instant;

use telegram_bots_blocking::server::HealthServer;
use telegram_bots_blocking::shared::SharedHealth;
use telegram_bots_blocking::{signal, start};

fn main() -> ExitCode {
    let config = match start(
        "telegram-bots-blocking",
        "Telegram bot fleet on OS threads (one per bot), for local debugging",
    ) {
        Ok(config) => config,
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
    // No bots source yet: the fleet is empty, and /readyz says so.
    health.lock().set_serving();
    tracing::info!(
        "serving /healthz, /readyz and /metrics on {}; {} bots",
        server.local_addr(),
        health.lock().fleet.len()
    );

    let _ = stop_rx.recv();
    let stop_started = Instant::now();
    health.begin_stop();
    server.stop();
    tracing::info!("stopped in {} ms", stop_started.elapsed().as_millis());
    ExitCode::SUCCESS
}
