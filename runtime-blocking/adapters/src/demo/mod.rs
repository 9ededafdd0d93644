//! `demo`: the whole service against a fake Telegram in this process, with nothing to
//! configure. Three demo bots in the embedded store, voice files in `DIR/voice`, events
//! in `DIR/events.jsonl`, health on `HEALTH_ADDR`; the fake Telegram's users send the
//! bots real Ogg/Opus voice messages (a few kept in this crate, see `samples/README.md`),
//! now and then a text, and one in a supergroup.
//!
//! The fake Telegram's world is kept in `DIR/fake-telegram.json` (the bots, their
//! message boxes and files, the auth keys and their logins), so a second run resumes
//! every stored session without a login, as the service does against Telegram itself.
//!
//! The demo is the fake DC of the tests (`telegram-bots-fake-telegram`), compiled in
//! only with the `demo` feature (on by default; the production image leaves it out).

#[cfg(feature = "demo")]
mod running;
#[cfg(feature = "demo")]
mod world;

#[cfg(feature = "demo")]
pub use running::Demo;

/// Where the demo keeps everything unless `--dir` says otherwise.
pub const DEFAULT_DIR: &str = "demo-data";

/// A build without the `demo` feature has no demo to run.
#[cfg(not(feature = "demo"))]
#[derive(Debug)]
pub enum Demo {}

#[cfg(not(feature = "demo"))]
impl Demo {
    pub fn start(
        _config: &mut telegram_bots_core::config::Config,
        _dir: &std::path::Path,
    ) -> Result<Demo, String> {
        Err("this build has no demo: it was built without the `demo` feature".into())
    }

    pub fn finish(self) {
        match self {}
    }
}
