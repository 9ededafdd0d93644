//! fleet-bench --smol BIN --blocking BIN --fake BIN [--json FILE] [--quick]
//!
//! The fleet benchmark (`telegram_bots_tests::fleet_bench`) with the embedded SQLite store
//! and with PostgreSQL (a private cluster it starts: the server binaries must be
//! installed); `tests/bench-fleet` builds the release binaries and runs it.

use std::path::PathBuf;

use telegram_bots_tests::fleet_bench::{Binaries, main as bench};

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut smol, mut blocking, mut fake) = (None, None, None);
    let mut json = PathBuf::from("target/fleet-bench.json");
    let mut quick = false;
    while let Some(arg) = args.next() {
        let mut value = || PathBuf::from(args.next().unwrap_or_else(|| usage()));
        match arg.as_str() {
            "--smol" => smol = Some(value()),
            "--blocking" => blocking = Some(value()),
            "--fake" => fake = Some(value()),
            "--json" => json = value(),
            "--quick" => quick = true,
            _ => usage(),
        }
    }
    let (Some(smol), Some(blocking), Some(fake)) = (smol, blocking, fake) else {
        usage()
    };
    bench(
        &Binaries {
            smol,
            blocking,
            fake,
        },
        &json,
        quick,
    );
}

fn usage() -> ! {
    eprintln!("usage: fleet-bench --smol BIN --blocking BIN --fake BIN [--json FILE] [--quick]");
    std::process::exit(2);
}
