//! The voice pipeline's chaos test (`telegram_bots_tests::chaos`) on the blocking binary
//! (a thread per bot), in both settings.

use std::path::Path;

use telegram_bots_tests::chaos::{Setting, voice_messages_survive_chaos};

const BINARY: &str = env!("CARGO_BIN_EXE_telegram-bots-blocking");

#[test]
fn voice_messages_survive_chaos_on_postgres_s3_and_inngest() {
    voice_messages_survive_chaos(Path::new(BINARY), Setting::Production);
}

#[test]
fn voice_messages_survive_chaos_on_the_embedded_store() {
    voice_messages_survive_chaos(Path::new(BINARY), Setting::Embedded);
}
