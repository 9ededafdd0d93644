//! Telethon (an independent MTProto client, from PyPI) against the `fake-telegram`
//! binary: handshake, bot login, a pushed voice message and its download (also on a second
//! session of the same key), a text as a short update, supergroup messages, a missed message
//! caught up through getDifference and a missed supergroup message through
//! getChannelDifference, and one key used from two addresses at once. The scenario is
//! tests/interop/telethon_interop.py.
//!
//! The Python interpreter comes from `TELETHON_PYTHON` (tests/run sets it to a venv with
//! Telethon 1.45.0 installed), else `python3`; without Telethon the test fails and says how
//! to install it.

use std::process::Command;

#[test]
fn telethon_logs_in_receives_downloads_and_catches_up() {
    let python = std::env::var("TELETHON_PYTHON").unwrap_or_else(|_| "python3".into());
    let probe = Command::new(&python)
        .args([
            "-c",
            "import telethon, sys; sys.exit(telethon.__version__ != '1.45.0')",
        ])
        .status();
    assert!(
        probe.is_ok_and(|s| s.success()),
        "{python} lacks Telethon 1.45.0: run tests/run, or `pip install telethon==1.45.0` and set TELETHON_PYTHON"
    );
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/interop/telethon_interop.py");
    let out = Command::new(&python)
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_fake-telegram"))
        .output()
        .expect("run the Telethon scenario");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "Telethon scenario failed:\n{text}");
    assert!(text.contains("telethon: 15 passed, 0 failed"), "{text}");
}
