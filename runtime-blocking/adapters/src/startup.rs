//! What both binaries do before they run: parse the command line, parse the
//! configuration from the environment, set up logging, and either carry out an admin
//! command (`migrate`, `integrations ...`, `outbox ...`) or prepare the fleet's plan (for
//! `demo`, after starting the demo's fake Telegram).

use std::io::IsTerminal as _;
use std::process::ExitCode;

use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};
use telegram_bots_core::config::{self, Config, LogFormat, LogLevel};

use crate::admin::{self, IntegrationsCommand, OutboxCommand};
use crate::demo::Demo;
use crate::plan::{Plan, plan};

#[derive(Debug, Parser)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// TOML file of bots (one [[bot]] table with workspace_id and token each) that
    /// declares the integrations; overrides BOTS_FILE.
    #[arg(long, global = true, value_name = "FILE")]
    bots: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the bots and serve /healthz, /readyz and /metrics (the default).
    Run,
    /// See it work with nothing to set up: three bots against a fake Telegram in this
    /// process, voice messages landing in DIR/voice and events in DIR/events.jsonl.
    Demo {
        /// Where the demo keeps its store, voice files, events and fake Telegram.
        #[arg(long, value_name = "DIR", default_value = crate::demo::DEFAULT_DIR)]
        dir: std::path::PathBuf,
    },
    /// Create or upgrade the store's schema (idempotent; safe from two pods at once).
    Migrate,
    /// Manage integrations (one bot per workspace) without writing SQL.
    #[command(subcommand)]
    Integrations(IntegrationsCommand),
    /// See the voice messages on their way to S3 and Inngest, and requeue the failed ones.
    #[command(subcommand)]
    Outbox(OutboxCommand),
}

/// What both binaries run from.
#[derive(Debug)]
pub struct Prepared {
    pub config: Config,
    pub plan: Plan,
    /// The demo around this run, for `demo`: [`Demo::finish`] once the fleet stopped.
    pub demo: Option<Demo>,
}

/// Start-up as both binaries do it: the command line and the environment, then for `run` the fleet's plan (RSA key,
/// store, bots file); any other command is carried out here and its exit code returned
/// as the error. A problem prints one line and gives exit code 2.
pub fn prepare(binary: &'static str, about: &'static str) -> Result<Prepared, ExitCode> {
    let (mut config, cli) = parse(binary, about)?;
    let mut bots_file = cli.bots.as_deref();
    let mut demo = None;
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => {}
        Command::Demo { dir } => {
            let started = Demo::start(&mut config, &dir).map_err(|line| {
                eprintln!("{binary}: {line}");
                ExitCode::from(2)
            })?;
            demo = Some(started);
            bots_file = None;
        }
        Command::Migrate => return Err(admin::migrate(binary, &config)),
        Command::Integrations(command) => {
            return Err(admin::integrations(binary, &config, command));
        }
        Command::Outbox(command) => return Err(admin::outbox(binary, &config, command)),
    }
    match plan(&config, bots_file) {
        Ok(plan) => Ok(Prepared { config, plan, demo }),
        Err(line) => {
            eprintln!("{binary}: {line}");
            Err(ExitCode::from(2))
        }
    }
}

/// Parses the command line and the environment and sets up logging. On `--help` or
/// `--version` clap prints and exits 0; on a bad command line it exits 2. A bad
/// configuration prints one line per bad variable and returns exit code 2.
fn parse(binary: &'static str, about: &'static str) -> Result<(Config, Cli), ExitCode> {
    let mut variables = String::from("Environment:\n");
    for (name, what) in config::VARIABLES {
        variables.push_str(&format!("  {name:<22} {what}\n"));
    }
    let command = Cli::command()
        .name(binary)
        .bin_name(binary)
        .about(about)
        .version(env!("CARGO_PKG_VERSION"))
        .after_help(variables);
    let cli = Cli::from_arg_matches(&command.get_matches()).unwrap_or_else(|e| e.exit());

    // Not `std::env::vars()`: it panics on a value that is not UTF-8, even in a variable
    // the service never reads.
    let env = std::env::vars_os().map(|(k, v)| {
        (
            k.to_string_lossy().into_owned(),
            v.to_string_lossy().into_owned(),
        )
    });
    let config = Config::from_env(env).map_err(|errors| {
        for line in errors.to_string().lines() {
            eprintln!("{binary}: {line}");
        }
        ExitCode::from(2)
    })?;
    init_logging(config.log_level, config.log_format);
    Ok((config, cli))
}

/// Logging to standard error at `level`, as text or as JSON lines.
///
/// Log lines carry their facts twice: in the message, a sentence a person reads
/// ("workspace ws_1: running"), and as fields (`workspace_id`, `state`, ...) that a log
/// collector indexes. The text format writes the message only, so the fields do not
/// clutter it; the JSON format writes one object per line with `timestamp`, `level`,
/// `message` and every field as its own key (no target, no spans).
fn init_logging(level: LogLevel, format: LogFormat) {
    let level = match level {
        LogLevel::Error => tracing::Level::ERROR,
        LogLevel::Warn => tracing::Level::WARN,
        LogLevel::Info => tracing::Level::INFO,
        LogLevel::Debug => tracing::Level::DEBUG,
        LogLevel::Trace => tracing::Level::TRACE,
    };
    use tracing_subscriber::fmt;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    // grammers logs routine protocol steps (salts, acks) at info: keep them at warn.
    let filter = tracing_subscriber::filter::Targets::new()
        .with_default(level)
        .with_target("grammers_mtproto", tracing::Level::WARN.min(level));
    let text = (format == LogFormat::Text).then(|| {
        fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .with_target(false)
            .fmt_fields(fmt::format::debug_fn(|writer, field, value| {
                if field.name() == "message" {
                    write!(writer, "{value:?}")
                } else {
                    Ok(())
                }
            }))
    });
    let json = (format == LogFormat::Json).then(|| {
        fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_target(false)
            .with_writer(std::io::stderr)
    });
    tracing_subscriber::registry()
        .with(text)
        .with(json)
        .with(filter)
        .init();
    if format == LogFormat::Json {
        // A panic's message would be a line of plain text among the JSON ones: log it as
        // an event instead (the bot it happened in restarts; see `log::fleet_event`).
        std::panic::set_hook(Box::new(|info| {
            let payload = info
                .payload()
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| info.payload().downcast_ref::<String>().map(String::as_str))
                .unwrap_or("(no message)");
            let location = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()))
                .unwrap_or_default();
            let thread = std::thread::current();
            let thread = thread.name().unwrap_or("unnamed");
            tracing::error!(
                panic = payload,
                location = %location,
                thread,
                "panic in thread {thread} at {location}: {payload}"
            );
        }));
    }
}
