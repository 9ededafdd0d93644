//! Connections between the core's state machines and the fake DC, in memory: no sockets,
//! no threads; the fake DC's own connection code answers each frame at once. Tests that
//! drive the core with a fake clock use it as their network.

use std::collections::BTreeMap;

use smol::channel::Receiver;
use telegram_bots_core::session::Now;

use crate::fake_dc::FakeTelegram;
use crate::fake_dc::session::Connection;
use crate::fake_dc::world::{Conn, Push};

/// What the DC did with what it was given.
#[derive(Debug, Default)]
pub struct Answer {
    /// Frames for the client, in order.
    pub frames: Vec<Vec<u8>>,
    /// The DC closed the connection after them.
    pub closed: bool,
}

/// Open connections to the fake DC, named by the client's `K`.
#[derive(Debug)]
pub struct MemoryNet<K> {
    conns: BTreeMap<K, (u64, Connection, Receiver<Push>)>,
    next_id: u64,
}

impl<K: Ord + Clone> Default for MemoryNet<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Ord + Clone> MemoryNet<K> {
    pub fn new() -> Self {
        MemoryNet {
            conns: BTreeMap::new(),
            next_id: 1_000_000,
        }
    }

    /// Opens `key` to `dc`, replacing a connection of the same name.
    pub fn connect(&mut self, telegram: &FakeTelegram, key: K, dc: i32) {
        self.disconnect(telegram, &key);
        self.next_id += 1;
        let (push, pushes) = smol::channel::unbounded();
        telegram
            .world()
            .conns
            .insert(self.next_id, Conn::new(dc, push));
        self.conns.insert(
            key,
            (self.next_id, Connection::new(self.next_id, dc), pushes),
        );
    }

    pub fn is_open(&self, key: &K) -> bool {
        self.conns.contains_key(key)
    }

    /// Closes `key` from the client's side.
    pub fn disconnect(&mut self, telegram: &FakeTelegram, key: &K) {
        if let Some((id, _, _)) = self.conns.remove(key) {
            telegram.world().conns.remove(&id);
        }
    }

    /// Closes every connection (the process died).
    pub fn close_all(&mut self, telegram: &FakeTelegram) {
        let keys: Vec<K> = self.conns.keys().cloned().collect();
        for key in keys {
            self.disconnect(telegram, &key);
        }
    }

    /// Delivers bytes to the DC; `None` when `key` is not open (a failed write).
    pub fn send(&mut self, telegram: &FakeTelegram, key: &K, bytes: &[u8]) -> Option<Answer> {
        let shared = telegram.shared().clone();
        let (_, conn, _) = self.conns.get_mut(key)?;
        let out = conn.handle_read(bytes, &shared);
        let answer = Answer {
            frames: out.frames,
            closed: out.close,
        };
        if answer.closed {
            self.disconnect(telegram, key);
        }
        Some(answer)
    }

    /// The next thing the DC pushes on its own (an update, a close), on any connection.
    pub fn poll_push(&mut self, telegram: &FakeTelegram) -> Option<(K, Answer)> {
        let shared = telegram.shared().clone();
        let (key, push) = self
            .conns
            .iter()
            .find_map(|(key, (_, _, pushes))| Some((key.clone(), pushes.try_recv().ok()?)))?;
        let (_, conn, _) = self.conns.get_mut(&key).expect("found above");
        let out = conn.handle_push(push, &shared);
        let answer = Answer {
            frames: out.frames,
            closed: out.close,
        };
        if answer.closed {
            self.disconnect(telegram, &key);
        }
        Some((key, answer))
    }
}

/// The start of a fake clock. Unix time must be real: grammers' session reads the real
/// clock for message ids, and the DC checks them against its own.
pub fn real_now() -> Now {
    let unix_secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64;
    Now {
        instant: std::time::Instant::now(),
        unix_secs,
    }
}
