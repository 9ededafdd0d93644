//! Every command of README.md, run as a reader would run them: each ```sh block in order,
//! in one scratch directory, as one terminal session (a block sees the `export`s of the
//! blocks before it), against real parts: the fake Telegram (with a bot whose token is
//! `$BOT_TOKEN`), PostgreSQL, `s3s-fs` and the Inngest receiver.
//!
//! The comment `<!-- readme-test: MODE -->` before each block says what it is:
//! - `run`: the commands finish, with exit code 0;
//! - `until-ready`: its last command is the service: it must answer `/readyz` 200 on port
//!   8002 (the README's), a voice message sent to the bot must then land (a file and an
//!   event, or an event in the Inngest receiver), and Ctrl-C (SIGINT to the block's
//!   process group, as a terminal sends it) must end the block with exit code 0;
//! - `demo`: likewise for the demo, while the `while-demo` blocks after it run;
//! - `skip: why`: not run, with the reason in the README (only `tests/run`, the command
//!   that runs this).
//!
//! What stands in for the reader's machine, and nothing else:
//! - `cargo` is a shim: `cargo build --release` finds the binaries built (by `cargo
//!   test`) in `./target/release/`, and `cargo run --release --bin NAME -- ARGS` runs
//!   `./target/release/NAME ARGS`;
//! - a README line that exports a variable of PostgreSQL, S3 or Inngest exports the test's
//!   server's instead, with the rest of that server's set (`S3_ENDPOINT`,
//!   `INNGEST_BASE_URL`), and
//!   `TELEGRAM_DC_ADDRS` / `TELEGRAM_RSA_PUBLIC_KEY` point at the fake Telegram, whose
//!   test app has the README's example API id and hash.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use telegram_bots_adapters::voice_sink::local_dir::stored_keys;

use crate::fake_dc::FakeTelegram;
use crate::fake_dc::world::{Content, NewMessage, VoiceForm};
use crate::inngest::InngestReceiver;
use crate::postgres::TestDb;
use crate::s3::TestS3;
use crate::service::scratch_data_dir;

/// The README's health port.
const PORT: u16 = 8002;
const BOT_TOKEN: &str = "5550001:AAreadmeTestTokenOfTheFakeTelegram00";
const BOT: &str = "readme_bot";
const USER: i64 = 4242;

/// One ```sh block and what the comment before it says.
#[derive(Debug)]
struct Block {
    mode: String,
    line: usize,
    commands: Vec<String>,
}

fn blocks(readme: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut mode: Option<String> = None;
    let mut lines = readme.lines().enumerate();
    while let Some((n, line)) = lines.next() {
        if let Some(rest) = line.strip_prefix("<!-- readme-test:") {
            mode = Some(rest.trim_end_matches("-->").trim().to_owned());
            continue;
        }
        if line.trim() == "```sh" {
            let commands = lines
                .by_ref()
                .map(|(_, l)| l)
                .take_while(|l| l.trim() != "```")
                .map(str::to_owned)
                .collect();
            let mode = mode.take().unwrap_or_else(|| {
                panic!(
                    "README.md:{}: a sh block without <!-- readme-test: MODE -->",
                    n + 1
                )
            });
            blocks.push(Block {
                mode,
                line: n + 1,
                commands,
            });
        } else if !line.trim().is_empty() {
            mode = None;
        }
    }
    blocks
}

/// The servers that stand in for the reader's.
struct World {
    dir: PathBuf,
    telegram: FakeTelegram,
    _db: TestDb,
    s3: TestS3,
    inngest: InngestReceiver,
    env: Vec<(String, String)>,
    /// The variables of each of the test's servers (PostgreSQL, S3, Inngest): a README
    /// line that exports one of them exports its server's whole set instead.
    servers: Vec<Vec<(String, String)>>,
}

impl World {
    fn start(binary: &Path) -> World {
        let dir = scratch_data_dir();
        let release = dir.join("target/release");
        std::fs::create_dir_all(&release).expect("scratch directory");
        for name in ["telegram-bots", "telegram-bots-blocking"] {
            let built = binary.with_file_name(name);
            assert!(built.exists(), "{} is not built", built.display());
            std::os::unix::fs::symlink(&built, release.join(name)).expect("symlink");
        }
        let shims = dir.join("shims");
        std::fs::create_dir_all(&shims).expect("shims");
        let cargo = shims.join("cargo");
        std::fs::write(
            &cargo,
            format!(
                "#!/bin/sh\n# The README test's cargo: the binaries are built already.\n\
                 case \"$1 $2 $3\" in\n\
                 \"build --release \") exit 0 ;;\n\
                 \"run --release --bin\") name=$4; shift 4; [ \"$1\" = -- ] && shift; exec \"{}/$name\" \"$@\" ;;\n\
                 esac\necho \"readme test: unexpected cargo $*\" >&2; exit 64\n",
                release.display()
            ),
        )
        .expect("cargo shim");
        std::fs::set_permissions(&cargo, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");

        let telegram = FakeTelegram::start(1).expect("fake Telegram");
        telegram.add_bot(BOT_TOKEN, BOT).expect("bot");
        let pem = dir.join("fake-telegram.pem");
        std::fs::write(&pem, telegram.rsa_public_key_pem()).expect("pem");
        let db = TestDb::new();
        let s3 = TestS3::start("voice");
        let inngest = InngestReceiver::start("readme-event-key");
        let servers = vec![
            vec![("DATABASE_URL".to_owned(), db.url().to_owned())],
            s3.env(),
            inngest.env(),
        ];
        let path = format!(
            "{}:{}",
            shims.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let dcs: Vec<String> = telegram
            .dcs()
            .iter()
            .map(|(id, addr)| format!("{id}={addr}"))
            .collect();
        let env = vec![
            ("PATH".into(), path),
            ("HOME".into(), dir.display().to_string()),
            ("BOT_TOKEN".into(), BOT_TOKEN.into()),
            ("TELEGRAM_DC_ADDRS".into(), dcs.join(",")),
            ("TELEGRAM_RSA_PUBLIC_KEY".into(), pem.display().to_string()),
        ];
        World {
            dir,
            telegram,
            _db: db,
            s3,
            inngest,
            env,
            servers,
        }
    }

    /// The block's commands, with the test's values for the README's examples.
    fn script(&self, block: &Block) -> Vec<String> {
        block
            .commands
            .iter()
            .map(|line| {
                let Some((name, _)) = line
                    .strip_prefix("export ")
                    .and_then(|rest| rest.split_once('='))
                else {
                    return line.clone();
                };
                let server = self
                    .servers
                    .iter()
                    .find(|vars| vars.iter().any(|(n, _)| n == name));
                match server {
                    Some(vars) => {
                        let vars: Vec<String> =
                            vars.iter().map(|(n, v)| format!("{n}={v}")).collect();
                        format!("export {}", vars.join(" "))
                    }
                    None => line.clone(),
                }
            })
            .collect()
    }

    /// Starts a block (after the exports of the blocks before it) in its own process
    /// group, as a terminal runs a command line.
    fn spawn(&self, exports: &[String], script: &[String]) -> Child {
        let text = [exports, script].concat().join("\n");
        Command::new("bash")
            .args(["-e", "-o", "pipefail", "-c", &text])
            .current_dir(&self.dir)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("bash")
    }

    /// A voice message from a user to the README's bot.
    fn send_voice(&self) -> String {
        let sent = self
            .telegram
            .send_message(NewMessage {
                bot: BOT.into(),
                chat_id: USER,
                from_user_id: USER,
                content: Content::Voice {
                    size: 9000,
                    duration: 3,
                    mime_type: "audio/ogg".into(),
                    seed: 7,
                    bytes: None,
                    dc: None,
                    form: VoiceForm::Voice,
                },
            })
            .expect("send a voice message");
        sent.sha256.expect("a voice message has a sha256")
    }
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        thread::sleep(Duration::from_millis(50));
    }
    eprintln!("readme test: not within {timeout:?}: {what}");
    false
}

fn ready() -> bool {
    let addr = ([127, 0, 0, 1], PORT).into();
    crate::http::request(addr, "GET", "/readyz").is_ok_and(|r| r.status == 200)
}

/// SIGINT to the block's process group (Ctrl-C), then its output; panics unless it
/// ends with exit code 0.
fn interrupt(child: Child, block: &Block) -> String {
    // The whole group, as a terminal does: bash and the service.
    crate::process::kill_group(child.id(), libc::SIGINT).expect("SIGINT the block");
    let out = child.wait_with_output().expect("wait for the block");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "README.md:{}: {:?} after Ctrl-C:\n{text}",
        block.line,
        out.status
    );
    text
}

fn output_of(child: Child) -> (bool, String) {
    let out = child.wait_with_output().expect("wait for the block");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

pub fn run_every_command(binary: &Path) {
    let readme_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let readme = std::fs::read_to_string(&readme_path).expect("README.md");
    let blocks = blocks(&readme);
    assert!(blocks.len() >= 5, "too few sh blocks: {blocks:?}");
    assert!(
        std::net::TcpListener::bind(("0.0.0.0", PORT)).is_ok(),
        "port {PORT} (the README's) is taken on this machine"
    );
    let world = World::start(binary);
    let mut exports: Vec<String> = Vec::new();
    let mut demo: Option<(Child, &Block)> = None;
    for block in &blocks {
        let script = world.script(block);
        eprintln!("readme test: README.md:{} ({})", block.line, block.mode);
        match block.mode.as_str() {
            mode if mode.starts_with("skip:") => {}
            "run" => {
                let (ok, out) = output_of(world.spawn(&exports, &script));
                assert!(ok, "README.md:{}: failed:\n{out}", block.line);
            }
            "demo" => {
                let child = world.spawn(&exports, &script);
                assert!(
                    wait_until("the demo ready", Duration::from_secs(30), ready),
                    "README.md:{}: the demo is not ready",
                    block.line
                );
                demo = Some((child, block));
            }
            "while-demo" => {
                assert!(demo.is_some(), "README.md:{}: no demo runs", block.line);
                let voice = world.dir.join("demo-data/voice");
                wait_until("a demo voice file", Duration::from_secs(20), || {
                    stored_keys(&voice).is_ok_and(|keys| !keys.is_empty())
                });
                let (ok, out) = output_of(world.spawn(&exports, &script));
                assert!(ok, "README.md:{}: failed:\n{out}", block.line);
                for expected in ["\"status\":\"ready\"", ".ogg", "telegram/voice.received"] {
                    assert!(out.contains(expected), "no {expected} in:\n{out}");
                }
            }
            "until-ready" => {
                if let Some((child, demo_block)) = demo.take() {
                    interrupt(child, demo_block);
                }
                let child = world.spawn(&exports, &script);
                let production = script.iter().any(|l| l.starts_with("export DATABASE_URL="));
                let became_ready = wait_until("ready", Duration::from_secs(30), ready);
                let landed = became_ready && {
                    let events_before = world.inngest.events().len();
                    let sha = world.send_voice();
                    let events = world.dir.join("telegram-bots-data/events.jsonl");
                    wait_until("the voice message lands", Duration::from_secs(20), || {
                        if production {
                            world
                                .inngest
                                .events_from(events_before)
                                .iter()
                                .any(|e| e.data["sha256"] == sha.as_str())
                        } else {
                            std::fs::read_to_string(&events).is_ok_and(|t| t.contains(&sha))
                        }
                    })
                };
                let out = interrupt(child, block);
                assert!(became_ready, "README.md:{}: not ready:\n{out}", block.line);
                assert!(
                    landed,
                    "README.md:{}: the voice message did not land:\n{out}",
                    block.line
                );
                if production {
                    let stored = world.s3.bucket().list("".into(), None).expect("list");
                    assert!(
                        stored.iter().any(|page| !page.contents.is_empty()),
                        "nothing in S3"
                    );
                }
                assert!(!out.contains(BOT_TOKEN.split(':').nth(1).expect("secret")));
            }
            other => panic!(
                "README.md:{}: unknown readme-test mode {other:?}",
                block.line
            ),
        }
        exports.extend(script.into_iter().filter(|l| l.starts_with("export ")));
    }
    if let Some((child, block)) = demo.take() {
        interrupt(child, block);
    }
    let _ = std::fs::remove_dir_all(&world.dir);
}
