//! `telegram-bots`: the fleet on smol, for production.

use std::net::TcpListener;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Instant;

use async_io::Async;
use smol::{LocalExecutor, channel};
use telegram_bots_blocking::shared::SharedHealth;
use telegram_bots_blocking::{signal, start};
use telegram_bots_smol::server;

fn main() -> ExitCode {
    let config = match start(
        "telegram-bots",
        "Telegram bot fleet over MTProto: voice messages to S3 and Inngest",
    ) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let (stop_tx, stop_rx) = channel::bounded::<()>(1);
    if let Err(e) = signal::on_stop(move || {
        let _ = stop_tx.try_send(());
    }) {
        tracing::error!("cannot install the signal handler: {e}");
        return ExitCode::FAILURE;
    }

    let health = SharedHealth::new();
    let listener = match TcpListener::bind(config.health_addr).and_then(Async::new) {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!("HEALTH_ADDR {}: cannot listen: {e}", config.health_addr);
            return ExitCode::FAILURE;
        }
    };
    let addr = server::local_addr(&listener).unwrap_or(config.health_addr);

    let ex = Rc::new(LocalExecutor::new());
    smol::block_on(ex.run(async {
        // No bots source yet: the fleet is empty, and /readyz says so.
        health.lock().set_serving();
        tracing::info!(
            "serving /healthz, /readyz and /metrics on {addr}; {} bots",
            health.lock().fleet.len()
        );
        let stop_started = std::cell::Cell::new(None);
        let stop = async {
            let _ = stop_rx.recv().await;
            stop_started.set(Some(Instant::now()));
            health.begin_stop();
        };
        server::serve(&ex, listener, health.clone(), stop).await;
        if let Some(t) = stop_started.get() {
            tracing::info!("stopped in {} ms", t.elapsed().as_millis());
        }
    }));
    ExitCode::SUCCESS
}
