//! Bots against the fake Telegram DC, end to end, with the `telegram-bots` binary.
telegram_bots_tests::e2e_suite!(env!("CARGO_BIN_EXE_telegram-bots"));
telegram_bots_tests::e2e_store_suite!(env!("CARGO_BIN_EXE_telegram-bots"));
telegram_bots_tests::demo_suite!(env!("CARGO_BIN_EXE_telegram-bots"));
