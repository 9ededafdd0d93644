//! `telegram-bots`: the fleet on smol (one task per bot), for production.

use std::net::TcpListener;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use async_io::Async;
use smol::future::FutureExt as _;
use smol::{LocalExecutor, channel};
use telegram_bots_blocking::shared::SharedHealth;
use telegram_bots_blocking::{fleet, prepare, signal};
use telegram_bots_core::bot::Bot;
use telegram_bots_core::fleet::BotStatus;
use telegram_bots_smol::{bot_task, server};

const BINARY: &str = "telegram-bots";

fn main() -> ExitCode {
    let (config, plan) = match prepare(
        BINARY,
        "Telegram bot fleet over MTProto: voice messages to S3 and Inngest",
    ) {
        Ok(prepared) => prepared,
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
        // Closing this channel stops every bot task.
        let (bots_stop_tx, bots_stop_rx) = channel::bounded::<()>(1);
        let dcs = Arc::new(plan.dcs);
        let mut tasks = Vec::new();
        for (bot_config, snapshot) in plan.bots {
            let now_unix = fleet::now().unix_secs.max(0) as u64;
            health
                .lock()
                .fleet
                .upsert(BotStatus::new(&bot_config.workspace_id, now_unix));
            let ws = bot_config.workspace_id.clone();
            let bot = Bot::new(bot_config, plan.session_config.clone(), snapshot);
            let run = bot_task::run(
                bot,
                dcs.clone(),
                health.clone(),
                plan.state.clone(),
                bots_stop_rx.clone(),
            );
            let health = health.clone();
            // A panic ends this bot only, marked failed; the process and the others go on.
            tasks.push(ex.spawn(async move {
                if std::panic::AssertUnwindSafe(run)
                    .catch_unwind()
                    .await
                    .is_err()
                {
                    fleet::bot_panicked(&ws, &health);
                }
            }));
        }
        health.lock().set_serving();
        tracing::info!(
            "serving /healthz, /readyz and /metrics on {addr}; {} bots",
            tasks.len()
        );
        let stop_started = std::cell::Cell::new(None);
        let stop = async {
            let _ = stop_rx.recv().await;
            stop_started.set(Some(Instant::now()));
            health.begin_stop();
            bots_stop_tx.close();
            for task in tasks {
                task.await;
            }
        };
        server::serve(&ex, listener, health.clone(), stop).await;
        if let Some(t) = stop_started.get() {
            tracing::info!("stopped in {} ms", t.elapsed().as_millis());
        }
    }));
    ExitCode::SUCCESS
}
