//! Start-up, health latency, memory and SIGTERM-to-exit of `telegram-bots-blocking`:
//! `cargo bench -p telegram-bots-blocking --bench lifecycle`.
fn main() {
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_telegram-bots-blocking"));
    telegram_bots_tests::bench::health_and_lifecycle(binary, 20, 200);
}
