//! One smol task per bot: an async-io socket, timers from the core's deadlines.

use std::collections::BTreeMap;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use async_io::{Async, Timer};
use smol::channel::Receiver;
use smol::future::FutureExt as _;
use smol::io::{AsyncReadExt as _, AsyncWriteExt as _};
use telegram_bots_blocking::fleet::{OsRandom, StateStore, now, record};
use telegram_bots_blocking::shared::SharedHealth;
use telegram_bots_core::bot::{Bot, BotAction, BotEvent};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Small on purpose: 10,000 bots each hold one.
const READ_BUFFER: usize = 4096;

enum Wake {
    Read(io::Result<usize>),
    Timeout,
    Stop,
}

/// Drives `bot` until `stop` closes; the bot is stopped (and its state saved) first.
pub async fn run(
    mut bot: Bot,
    dcs: Arc<BTreeMap<i32, SocketAddr>>,
    health: SharedHealth,
    state: Arc<StateStore>,
    stop: Receiver<()>,
) {
    let ws = bot.workspace_id().to_owned();
    let mut random = OsRandom;
    let mut stream: Option<Async<TcpStream>> = None;
    let mut buf = vec![0u8; READ_BUFFER];
    loop {
        while let Some(action) = bot.poll_action() {
            match action {
                BotAction::Connect { dc } => match connect(dcs.get(&dc).copied()).await {
                    Ok(s) => {
                        stream = Some(s);
                        bot.handle_connected(now(), &mut random);
                    }
                    Err(e) => {
                        tracing::debug!("workspace {ws}: DC {dc}: {e}");
                        stream = None;
                        bot.handle_disconnected(now(), &mut random);
                    }
                },
                BotAction::Send(bytes) => {
                    // Without a connection (a write already failed) the bot has been told.
                    if let Some(s) = stream.as_mut() {
                        let written = s
                            .write_all(&bytes)
                            .or(async {
                                // A peer that stops reading must not hold the bot (or a stop).
                                Timer::after(WRITE_TIMEOUT).await;
                                Err(io::ErrorKind::TimedOut.into())
                            })
                            .await;
                        if written.is_err() {
                            stream = None;
                            bot.handle_disconnected(now(), &mut random);
                        }
                    }
                }
                BotAction::Disconnect => stream = None,
            }
        }
        while let Some(event) = bot.poll_event() {
            book(&ws, event, &health, &state).await;
        }
        if stop.is_closed() {
            bot.stop();
            while let Some(event) = bot.poll_event() {
                book(&ws, event, &health, &state).await;
            }
            return;
        }
        let deadline = bot.poll_timeout();
        let timer = async {
            match deadline {
                Some(at) => Timer::at(at).await,
                None => std::future::pending().await,
            };
            Wake::Timeout
        };
        let stopped = async {
            let _ = stop.recv().await;
            Wake::Stop
        };
        let wake = match stream.as_mut() {
            Some(s) => {
                async { Wake::Read(s.read(&mut buf).await) }
                    .or(timer)
                    .or(stopped)
                    .await
            }
            None => timer.or(stopped).await,
        };
        match wake {
            Wake::Read(Ok(0)) | Wake::Read(Err(_)) => {
                stream = None;
                bot.handle_disconnected(now(), &mut random);
            }
            Wake::Read(Ok(n)) => {
                bot.handle_input(&buf[..n], now(), &mut random);
                // The race above favours the socket: a bot that never stops receiving
                // must still send its pings and meet its deadlines.
                if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                    bot.handle_timeout(now(), &mut random);
                }
            }
            Wake::Timeout => bot.handle_timeout(now(), &mut random),
            // The stop is carried out at the top of the loop.
            Wake::Stop => continue,
        }
    }
}

/// Books an event; a snapshot is written to the state file on smol's blocking pool, so
/// that the executor (every bot and the health server) never waits for the disk.
async fn book(ws: &str, event: BotEvent, health: &SharedHealth, state: &Arc<StateStore>) {
    if matches!(event, BotEvent::Snapshot(_)) {
        let (ws, health, state) = (ws.to_owned(), health.clone(), state.clone());
        smol::unblock(move || record(&ws, &event, &health, &state)).await;
    } else {
        record(ws, &event, health, state);
    }
}

async fn connect(addr: Option<SocketAddr>) -> io::Result<Async<TcpStream>> {
    let addr = addr.ok_or_else(|| io::Error::other("no address for this DC"))?;
    let stream = Async::<TcpStream>::connect(addr)
        .or(async {
            Timer::after(CONNECT_TIMEOUT).await;
            Err(io::ErrorKind::TimedOut.into())
        })
        .await?;
    stream.get_ref().set_nodelay(true)?;
    Ok(stream)
}
