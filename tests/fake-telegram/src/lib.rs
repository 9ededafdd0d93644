//! A fake Telegram data centre set: real MTProto servers on loopback, speaking Telegram's
//! wire protocol well enough that independent clients (Telethon, grammers) work against
//! them unchanged, with a world that tests script and observe.
//!
//! - [`crypto`], [`transport`], [`handshake`], [`session`]: the protocol, server side.
//! - [`rpc`]: the API methods, over the [`world`] (bots, users, updates, files, keys).
//! - [`fault`]: scripted failures.
//! - [`snapshot`]: the world's durable part, to stop and start again.
//! - [`control`]: the JSON-over-HTTP control API of the `fake-telegram` binary.
//!
//! [`FakeTelegram`] is the Rust API for in-process tests and the service's demo; the
//! `fake-telegram` binary (in telegram-bots-tests) serves it to other processes.

pub mod channels;
pub mod client;
pub mod control;
pub mod crypto;
pub mod difference;
pub mod envelope;
pub mod fault;
pub mod files;
pub mod handshake;
pub mod json_server;
pub mod messages;
pub mod raw_client;
pub mod received;
pub mod rpc;
pub mod salts;
pub mod session;
pub mod settings;
pub mod snapshot;
pub mod tl_defaults;
pub mod transport;
pub mod world;
pub mod wrappers;

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread;

use async_io::{Async, Timer};
use smol::channel;
use smol::future::FutureExt as _;
use smol::io::{AsyncReadExt as _, AsyncWriteExt as _};

use self::channels::ChannelPost;
use self::crypto::RsaKey;
use self::fault::{Fault, FaultKind};
use self::session::Connection;
use self::settings::Settings;
use self::world::{Conn, NewMessage, Push, Sent, UserId, World};

/// Read buffer per connection: small, as 10,000 idle sessions must fit.
const READ_BUFFER: usize = 4096;

/// The test application every fake DC set accepts: its `api_id` and `api_hash` are in the
/// ready line and `GET /info`.
pub const TEST_API_ID: i32 = 12345;
pub const TEST_API_HASH: &str = "0123456789abcdef0123456789abcdef";

/// What every connection shares.
#[derive(Debug)]
pub struct Shared {
    pub world: Mutex<World>,
    pub rsa: RsaKey,
    next_conn: AtomicU64,
}

impl Shared {
    pub fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A core session configuration that trusts the fake DC's RSA key, for tests that drive
/// the core against it.
pub fn session_config() -> Arc<telegram_bots_core::session::SessionConfig> {
    let client = telegram_bots_core::session::ClientInfo {
        api_id: TEST_API_ID,
        device_model: "test".into(),
        system_version: "test".into(),
        app_version: "0".into(),
        lang_code: "en".into(),
    };
    Arc::new(telegram_bots_core::session::SessionConfig::new(
        vec![RsaKey::test_key().public()],
        client,
    ))
}

/// Protocol diagnostics on stderr when `FAKE_TELEGRAM_LOG` is set.
pub fn log(message: &str) {
    static ON: OnceLock<bool> = OnceLock::new();
    if *ON.get_or_init(|| std::env::var_os("FAKE_TELEGRAM_LOG").is_some()) {
        eprintln!("fake-telegram: {message}");
    }
}

/// A running set of fake DCs; stops on drop.
#[derive(Debug)]
pub struct FakeTelegram {
    shared: Arc<Shared>,
    /// Dropped last: with it go every task, listener and connection.
    executor: Option<Arc<smol::Executor<'static>>>,
    stop: channel::Sender<()>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl FakeTelegram {
    /// Starts `dcs` DCs (ids 1, 2, ...) on free loopback ports.
    pub fn start(dcs: usize) -> io::Result<FakeTelegram> {
        let addrs = vec!["127.0.0.1:0".parse().expect("valid"); dcs];
        Self::start_on(&addrs)
    }

    /// Starts one DC per address (ids 1, 2, ...; port 0 picks a free port).
    pub fn start_on(addrs: &[SocketAddr]) -> io::Result<FakeTelegram> {
        let mut world = World::default();
        world.apps.insert(TEST_API_ID, TEST_API_HASH.to_owned());
        let mut listeners = Vec::new();
        for (i, addr) in addrs.iter().enumerate() {
            let listener = TcpListener::bind(addr)?;
            let dc = i as i32 + 1;
            world.dcs.insert(dc, listener.local_addr()?);
            listeners.push((dc, Async::new(listener)?));
        }
        let shared = Arc::new(Shared {
            world: Mutex::new(world),
            rsa: RsaKey::test_key(),
            next_conn: AtomicU64::new(1),
        });
        let ex = Arc::new(smol::Executor::new());
        for (dc, listener) in listeners {
            // A weak handle: the executor owns the task, and the task must not keep the
            // executor (and with it every socket) alive after the DC set is dropped.
            ex.spawn(accept_loop(
                Arc::downgrade(&ex),
                shared.clone(),
                dc,
                listener,
            ))
            .detach();
        }
        let (stop, stopped) = channel::bounded::<()>(1);
        let threads = (0..2)
            .map(|i| {
                let (ex, stopped) = (ex.clone(), stopped.clone());
                thread::Builder::new()
                    .name(format!("fake-telegram-{i}"))
                    .spawn(move || {
                        smol::block_on(ex.run(async { stopped.recv().await.ok() })).unwrap_or(())
                    })
            })
            .collect::<io::Result<_>>()?;
        Ok(FakeTelegram {
            shared,
            executor: Some(ex),
            stop,
            threads,
        })
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The world, locked: for reading what happened, or scripting what happens.
    pub fn world(&self) -> MutexGuard<'_, World> {
        self.shared.world()
    }

    /// Addresses by DC id.
    pub fn dcs(&self) -> BTreeMap<i32, SocketAddr> {
        self.world().dcs.clone()
    }

    pub fn addr(&self, dc: i32) -> SocketAddr {
        self.world().dcs[&dc]
    }

    pub fn rsa_public_key_pem(&self) -> String {
        self.shared.rsa.public_pem()
    }

    /// Registers another application (`api_id` and `api_hash` a client may log in with).
    pub fn add_app(&self, api_id: i32, api_hash: &str) -> Result<(), String> {
        self.world().add_app(api_id, api_hash)
    }

    pub fn add_bot(&self, token: &str, username: &str) -> Result<UserId, String> {
        self.world().add_bot(token, username, None)
    }

    /// A bot whose home is `dc`: logging in elsewhere answers USER_MIGRATE.
    pub fn add_bot_on(&self, token: &str, username: &str, dc: i32) -> Result<UserId, String> {
        self.world().add_bot(token, username, Some(dc))
    }

    pub fn send_message(&self, message: NewMessage) -> Result<Sent, String> {
        self.world().send_message(message)
    }

    /// A text message to `bot` in the private chat of user `from_user_id`.
    pub fn send_text(&self, bot: &str, from_user_id: i64, text: &str) -> Result<Sent, String> {
        self.send_message(NewMessage {
            bot: bot.to_owned(),
            chat_id: from_user_id,
            from_user_id,
            content: world::Content::Text(text.to_owned()),
        })
    }

    /// Changes timeouts and limits (tests shorten Telegram's so nothing waits for minutes).
    /// Connections take them up with their next message.
    pub fn configure(&self, change: impl FnOnce(&mut Settings)) {
        change(&mut self.world().settings);
    }

    /// Several messages to one bot at once (pushed as one `updatesCombined`).
    pub fn send_messages(&self, messages: Vec<NewMessage>) -> Result<Vec<Sent>, String> {
        self.world().send_messages(messages)
    }

    /// Deletes messages of the bot's private chats and basic groups (an `updateShort`).
    pub fn delete_messages(&self, bot: &str, message_ids: Vec<i32>) -> Result<i32, String> {
        self.world().delete_messages(bot, message_ids)
    }

    /// A supergroup (`megagroup`) or broadcast channel with these bots in it; its id.
    pub fn add_channel(&self, title: &str, megagroup: bool, bots: &[&str]) -> Result<i64, String> {
        self.world().add_channel(title, megagroup, bots)
    }

    /// A message into a supergroup (from a user) or a post in a channel.
    pub fn send_channel_message(&self, post: ChannelPost) -> Result<Sent, String> {
        self.world().send_channel_message(post)
    }

    /// A text message from `from_user_id` in supergroup `channel_id`.
    pub fn send_group_text(
        &self,
        channel_id: i64,
        from_user_id: i64,
        text: &str,
    ) -> Result<Sent, String> {
        self.send_channel_message(ChannelPost {
            channel_id,
            from_user_id: Some(from_user_id),
            content: world::Content::Text(text.to_owned()),
        })
    }

    pub fn add_fault(&self, fault: Fault) -> Result<(), String> {
        self.world().add_fault(fault)
    }

    /// Registers an auth key as if a handshake had made it (a stored session), logged
    /// in as `bot` when given. Returns its key id.
    pub fn add_auth_key(&self, dc: i32, key: [u8; 256], bot: Option<&str>) -> Result<i64, String> {
        let mut world = self.world();
        if !world.dcs.contains_key(&dc) {
            return Err(format!("no DC {dc}"));
        }
        let bot = match bot {
            Some(name) => Some(
                world
                    .bot_by_username(name)
                    .ok_or_else(|| format!("no bot @{name}"))?
                    .user_id,
            ),
            None => None,
        };
        Ok(world.add_auth_key(dc, key, bot))
    }

    pub fn stats(&self) -> serde_json::Value {
        self.world().stats_json()
    }
}

impl Drop for FakeTelegram {
    fn drop(&mut self) {
        for _ in &self.threads {
            let _ = self.stop.try_send(());
        }
        self.stop.close();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        drop(self.executor.take());
    }
}

async fn accept_loop(
    ex: std::sync::Weak<smol::Executor<'static>>,
    shared: Arc<Shared>,
    dc: i32,
    listener: Async<TcpListener>,
) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let Some(ex) = ex.upgrade() else { return };
                ex.spawn(serve(shared.clone(), dc, peer.ip(), stream))
                    .detach();
            }
            Err(e) => {
                log(&format!("dc {dc}: accept: {e}"));
                Timer::after(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

enum Event {
    Read(io::Result<usize>),
    Push(Push),
    Timer,
}

/// Drives one connection until either side closes it.
async fn serve(shared: Arc<Shared>, dc: i32, peer: IpAddr, mut stream: Async<TcpStream>) {
    let id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
    let (push, pushed) = channel::unbounded();
    let (refuse, settings) = {
        let mut world = shared.world();
        world.stats.connections_total += 1;
        world.conns.insert(id, Conn::from_peer(dc, peer, push));
        let refuse = world
            .take_fault(FaultKind::TooManyConnections, None, None)
            .is_some();
        (refuse, world.settings.clone())
    };
    let mut conn = Connection::with_settings(id, dc, settings);
    let mut buf = [0u8; READ_BUFFER];
    let mut reset = false;
    'serve: loop {
        let wake = conn.poll_timeout();
        let event = async { Event::Read(stream.read(&mut buf).await) }
            .or(async {
                // The world holds the sender while the connection is registered.
                match pushed.recv().await {
                    Ok(push) => Event::Push(push),
                    Err(_) => Event::Push(Push::Close { reset: false }),
                }
            })
            .or(async {
                match wake {
                    Some(at) => Timer::at(at).await,
                    None => std::future::pending().await,
                };
                Event::Timer
            })
            .await;
        let output = match event {
            Event::Read(Ok(0)) | Event::Read(Err(_)) => break,
            Event::Read(Ok(n)) if refuse => {
                let _ = stream.write_all(&conn.refuse(&buf[..n], 429)).await;
                break;
            }
            Event::Read(Ok(n)) => conn.handle_read(&buf[..n], &shared),
            Event::Push(Push::Close { reset: r }) => {
                reset = r;
                break;
            }
            Event::Push(p) => conn.handle_push(p, &shared),
            Event::Timer => conn.handle_timeout(&shared),
        };
        for frame in output.frames {
            if stream.write_all(&frame).await.is_err() {
                break 'serve;
            }
        }
        if output.close {
            break;
        }
    }
    shared.world().conns.remove(&id);
    if reset {
        reset_on_close(stream.get_ref());
    }
}

/// Makes closing `socket` send a reset (RST) instead of a FIN: SO_LINGER with a zero
/// timeout, which std does not offer on stable.
#[allow(unsafe_code)]
pub fn reset_on_close(socket: &impl std::os::fd::AsRawFd) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid fd and a pointer to a live `linger` of the size given.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}
