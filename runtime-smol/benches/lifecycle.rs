//! Start-up, health latency, memory and SIGTERM-to-exit of `telegram-bots`:
//! `cargo bench -p telegram-bots-smol --bench lifecycle`.
fn main() {
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_telegram-bots"));
    telegram_bots_tests::bench::health_and_lifecycle(binary, 20, 200);
}
