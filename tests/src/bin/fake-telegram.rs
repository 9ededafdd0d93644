//! `fake-telegram`: a fake Telegram DC set on loopback, for tests, benchmarks and demos.
//!
//! fake-telegram [--listen HOST:PORT] [--dcs N] [--control HOST:PORT]
//!
//! The first DC listens on `--listen` (default 127.0.0.1:0), the others on the following
//! ports (or free ports when the first is 0). When ready it prints one JSON line:
//! `{"dcs":{"1":"127.0.0.1:PORT",...},"control":"http://127.0.0.1:PORT","rsa_public_key_pem":...}`
//! and then serves until killed. tests/README.md documents the control API.

use std::net::{SocketAddr, TcpListener};
use std::process::ExitCode;

use telegram_bots_tests::fake_dc::{FakeTelegram, control};

fn main() -> ExitCode {
    let mut listen: SocketAddr = "127.0.0.1:0".parse().expect("valid");
    let mut control_addr: SocketAddr = "127.0.0.1:0".parse().expect("valid");
    let mut dcs = 2usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        let parsed = match arg.as_str() {
            "--listen" => value("--listen")
                .and_then(|v| v.parse().map_err(|e| format!("--listen: {e}")))
                .map(|v| listen = v),
            "--control" => value("--control")
                .and_then(|v| v.parse().map_err(|e| format!("--control: {e}")))
                .map(|v| control_addr = v),
            "--dcs" => value("--dcs")
                .and_then(|v| v.parse::<usize>().map_err(|e| format!("--dcs: {e}")))
                .and_then(|n| {
                    if (1..=5).contains(&n) {
                        let _: () = dcs = n;
                        Ok(())
                    } else {
                        Err("--dcs: 1 to 5".into())
                    }
                }),
            "-h" | "--help" => {
                println!(
                    "usage: fake-telegram [--listen HOST:PORT] [--dcs N (2)] [--control HOST:PORT]"
                );
                return ExitCode::SUCCESS;
            }
            other => Err(format!("unknown argument {other:?}")),
        };
        if let Err(e) = parsed {
            eprintln!("fake-telegram: {e}");
            return ExitCode::from(2);
        }
    }
    let addrs: Option<Vec<SocketAddr>> = (0..dcs)
        .map(|i| {
            let mut a = listen;
            if a.port() != 0 {
                a.set_port(a.port().checked_add(i as u16)?);
            }
            Some(a)
        })
        .collect();
    let Some(addrs) = addrs else {
        eprintln!("fake-telegram: --listen port too high for {dcs} DCs on the following ports");
        return ExitCode::from(2);
    };
    let telegram = match FakeTelegram::start_on(&addrs) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("fake-telegram: cannot listen on {addrs:?}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let server = match TcpListener::bind(control_addr)
        .and_then(|l| control::serve(l, telegram.shared().clone()))
    {
        Ok(server) => server,
        Err(e) => {
            eprintln!("fake-telegram: cannot serve the control API on {control_addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("{}", control::info(telegram.shared(), Some(server.addr())));
    loop {
        std::thread::park();
    }
}
