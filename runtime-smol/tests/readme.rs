//! Every command of README.md, run as a reader would run it (tests/src/readme.rs).

#[test]
fn every_command_of_the_readme_works() {
    telegram_bots_tests::readme::run_every_command(std::path::Path::new(env!(
        "CARGO_BIN_EXE_telegram-bots"
    )));
}
