//! One OS thread per bot: a blocking socket, read timeouts from the core's deadlines.

use std::collections::BTreeMap;
use std::io::{self, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use telegram_bots_core::bot::{Bot, BotAction};

use crate::fleet::{OsRandom, StateStore, bot_panicked, now, record};
use crate::shared::SharedHealth;

/// How often a blocked read wakes to check for a stop.
const STOP_POLL: Duration = Duration::from_millis(100);
/// Generated TL types are large and deserialized on the stack: debug builds need room.
const STACK_SIZE: usize = 4 * 1024 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `bot` on its own thread until `stop` is set; the bot is stopped (and its state
/// saved) before the thread ends. A panic ends this bot only, marked failed.
pub fn spawn(
    bot: Bot,
    dcs: Arc<BTreeMap<i32, SocketAddr>>,
    health: SharedHealth,
    state: Arc<StateStore>,
    stop: Arc<AtomicBool>,
) -> io::Result<JoinHandle<()>> {
    let ws = bot.workspace_id().to_owned();
    thread::Builder::new()
        .name(format!("bot-{ws}"))
        .stack_size(STACK_SIZE)
        .spawn(move || {
            let run = std::panic::AssertUnwindSafe(|| drive(bot, &dcs, &health, &state, &stop));
            if std::panic::catch_unwind(run).is_err() {
                bot_panicked(&ws, &health);
            }
        })
}

fn drive(
    mut bot: Bot,
    dcs: &BTreeMap<i32, SocketAddr>,
    health: &SharedHealth,
    state: &StateStore,
    stop: &AtomicBool,
) {
    let ws = bot.workspace_id().to_owned();
    let mut random = OsRandom;
    let mut stream: Option<TcpStream> = None;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        // Carry out what the bot asked for and book what it reported.
        while let Some(action) = bot.poll_action() {
            match action {
                BotAction::Connect { dc } => {
                    let connected = dcs
                        .get(&dc)
                        .ok_or_else(|| io::Error::other(format!("no address for DC {dc}")))
                        .and_then(|addr| TcpStream::connect_timeout(addr, CONNECT_TIMEOUT));
                    match connected {
                        Ok(s) => {
                            let _ = s.set_nodelay(true);
                            // A peer that stops reading must not hold the bot (or a stop).
                            let _ = s.set_write_timeout(Some(WRITE_TIMEOUT));
                            stream = Some(s);
                            bot.handle_connected(now(), &mut random);
                        }
                        Err(e) => {
                            tracing::debug!("workspace {ws}: DC {dc}: {e}");
                            stream = None;
                            bot.handle_disconnected(now(), &mut random);
                        }
                    }
                }
                BotAction::Send(bytes) => {
                    // Without a connection (a write already failed) the bot has been told.
                    if let Some(s) = stream.as_mut()
                        && s.write_all(&bytes).is_err()
                    {
                        stream = None;
                        bot.handle_disconnected(now(), &mut random);
                    }
                }
                BotAction::Disconnect => stream = None,
            }
        }
        while let Some(event) = bot.poll_event() {
            record(&ws, &event, health, state);
        }
        if stop.load(Ordering::SeqCst) {
            bot.stop();
            while let Some(event) = bot.poll_event() {
                record(&ws, &event, health, state);
            }
            return;
        }
        // Wait for bytes, the next deadline, or a stop.
        let deadline = bot.poll_timeout();
        let wait = deadline
            .map_or(STOP_POLL, |d| d.saturating_duration_since(Instant::now()))
            .clamp(Duration::from_millis(1), STOP_POLL);
        match stream.as_mut() {
            Some(s) => {
                let _ = s.set_read_timeout(Some(wait));
                match s.read(&mut buf) {
                    Ok(0) => {
                        stream = None;
                        bot.handle_disconnected(now(), &mut random);
                    }
                    Ok(n) => bot.handle_input(&buf[..n], now(), &mut random),
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock
                                | io::ErrorKind::TimedOut
                                | io::ErrorKind::Interrupted
                        ) => {}
                    Err(_) => {
                        stream = None;
                        bot.handle_disconnected(now(), &mut random);
                    }
                }
            }
            None => thread::sleep(wait),
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            bot.handle_timeout(now(), &mut random);
        }
    }
}
