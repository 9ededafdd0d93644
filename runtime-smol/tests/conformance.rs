//! The health-surface conformance suite against the `telegram-bots` binary.
telegram_bots_tests::conformance_suite!(env!("CARGO_BIN_EXE_telegram-bots"));
