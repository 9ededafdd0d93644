//! Voice latency (Telegram's push to the accepted event) at a steady 100 messages a
//! second and the highest rate whose p99 stays within a second, with PostgreSQL, S3 and
//! Inngest, then with the embedded store: `cargo bench -p telegram-bots-blocking --bench voice`
//! (`QUICK=1` for shorter steps).
use telegram_bots_tests::chaos::Setting;

fn main() {
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_telegram-bots-blocking"));
    let quick = std::env::var_os("QUICK").is_some();
    for setting in [Setting::Production, Setting::Embedded] {
        telegram_bots_tests::voice_bench::run(binary, setting, quick);
    }
}
