//! The admin commands, so that an operator never writes SQL: `migrate`,
//! `integrations add | set-token | list | enable | disable | remove | rotate-key |
//! import-state`, and `outbox list [--failed] | retry`, against whichever store the
//! configuration names. A token is read from standard input (never from the command
//! line, where `ps` shows it) and never printed. Exit codes: 0 done, 1 refused (an
//! unknown or duplicate workspace, a malformed token, an unreachable database), 2 a bad
//! command line or configuration.

use std::io::{IsTerminal as _, Read as _};
use std::process::ExitCode;

use clap::Subcommand;
use telegram_bots_core::bots_file::check_token;
use telegram_bots_core::config::Config;
use telegram_bots_core::record::Commit;
use telegram_bots_core::secret::Secret;
use telegram_bots_core::state_file;

use crate::store::{Place, Store, StorePlace, VoiceRow, now_ms};

#[derive(Debug, Subcommand)]
pub enum IntegrationsCommand {
    /// Add an integration; the bot token is read from standard input.
    Add {
        #[arg(long, value_name = "ID")]
        workspace: String,
    },
    /// Give an integration a new bot token, read from standard input.
    SetToken {
        #[arg(long, value_name = "ID")]
        workspace: String,
    },
    /// List the integrations (no secrets).
    List,
    /// Let an integration's bot run.
    Enable {
        #[arg(long, value_name = "ID")]
        workspace: String,
    },
    /// Stop an integration's bot, keeping its session.
    Disable {
        #[arg(long, value_name = "ID")]
        workspace: String,
    },
    /// Remove an integration with its session and state.
    Remove {
        #[arg(long, value_name = "ID")]
        workspace: String,
    },
    /// Re-seal every token and auth key under ENCRYPTION_KEY (reading with
    /// ENCRYPTION_KEY_PREVIOUS).
    RotateKey,
    /// Import sessions and update state from a state file of an earlier version, for
    /// the integrations the store has.
    ImportState {
        #[arg(value_name = "FILE")]
        file: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum OutboxCommand {
    /// List the voice messages in the outbox, oldest first: workspace, chat, message,
    /// status, attempts, age, object key, last error.
    List {
        /// Only the failed ones (`outbox retry` requeues them).
        #[arg(long)]
        failed: bool,
    },
    /// Make every failed voice message pending again (attempts from zero, the last
    /// error kept for the record).
    Retry,
}

/// `migrate`.
pub fn migrate(binary: &str, config: &Config) -> ExitCode {
    with_store(binary, config, |store, place| {
        let migrated = store.migrate().map_err(|e| e.to_string())?;
        if migrated.from == migrated.to {
            println!(
                "{}: schema at version {}, nothing to do",
                place.describe(),
                migrated.to
            );
        } else {
            println!(
                "{}: schema migrated from version {} to {}",
                place.describe(),
                migrated.from,
                migrated.to
            );
        }
        Ok(())
    })
}

/// `integrations ...`.
pub fn integrations(binary: &str, config: &Config, command: IntegrationsCommand) -> ExitCode {
    with_store(binary, config, |store, place| {
        schema(store, place)?;
        match command {
            IntegrationsCommand::Add { workspace } => {
                check_workspace(&workspace)?;
                let token = read_token()?;
                store.add(&workspace, &token).map_err(|e| e.to_string())?;
                println!("added workspace {workspace}; a running service starts its bot");
            }
            IntegrationsCommand::SetToken { workspace } => {
                let token = read_token()?;
                store
                    .set_token(&workspace, &token)
                    .map_err(|e| e.to_string())?;
                println!("new token for workspace {workspace}");
            }
            IntegrationsCommand::List => list(store)?,
            IntegrationsCommand::Enable { workspace } => {
                store
                    .set_enabled(&workspace, true)
                    .map_err(|e| e.to_string())?;
                println!("enabled workspace {workspace}");
            }
            IntegrationsCommand::Disable { workspace } => {
                store
                    .set_enabled(&workspace, false)
                    .map_err(|e| e.to_string())?;
                println!("disabled workspace {workspace}");
            }
            IntegrationsCommand::Remove { workspace } => {
                store.remove(&workspace).map_err(|e| e.to_string())?;
                println!("removed workspace {workspace}");
            }
            IntegrationsCommand::RotateKey => {
                let n = store.rotate_key().map_err(|e| e.to_string())?;
                println!("re-sealed {n} values under the current ENCRYPTION_KEY");
            }
            IntegrationsCommand::ImportState { file } => import_state(store, &file)?,
        }
        Ok(())
    })
}

/// `outbox ...`.
pub fn outbox(binary: &str, config: &Config, command: OutboxCommand) -> ExitCode {
    with_store(binary, config, |store, place| {
        schema(store, place)?;
        match command {
            OutboxCommand::List { failed } => {
                let rows = store.voice_list(failed).map_err(|e| e.to_string())?;
                outbox_table(&rows, now_ms());
            }
            OutboxCommand::Retry => {
                let n = store.voice_retry_failed().map_err(|e| e.to_string())?;
                println!("requeued {n} failed voice messages");
            }
        }
        Ok(())
    })
}

/// The embedded store is this process's own file: its schema is made on first use, as
/// `run` makes it. A shared PostgreSQL is migrated on purpose (`migrate`, the init
/// container), so a command against an unmigrated one says so.
fn schema(store: &mut dyn Store, place: &StorePlace) -> Result<(), String> {
    match place.place {
        Place::Sqlite(_) => store.migrate().map(drop),
        Place::Postgres(_) => store.check_schema(),
    }
    .map_err(|e| e.to_string())
}

fn with_store(
    binary: &str,
    config: &Config,
    run: impl FnOnce(&mut dyn Store, &StorePlace) -> Result<(), String>,
) -> ExitCode {
    let place = match StorePlace::from_config(config) {
        Ok(place) => place,
        Err(line) => {
            eprintln!("{binary}: {line}");
            return ExitCode::from(2);
        }
    };
    let result = place
        .connect()
        .map_err(|e| format!("{}: {e}", place.describe()))
        .and_then(|mut store| run(store.as_mut(), &place));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(line) => {
            eprintln!("{binary}: {line}");
            ExitCode::FAILURE
        }
    }
}

fn check_workspace(workspace: &str) -> Result<(), String> {
    if workspace.is_empty() || workspace.len() > 200 || workspace.chars().any(char::is_control) {
        return Err(
            "--workspace must be 1 to 200 characters, none of them control characters".into(),
        );
    }
    Ok(())
}

/// The token on standard input, checked; never echoed back.
fn read_token() -> Result<Secret<String>, String> {
    if std::io::stdin().is_terminal() {
        eprintln!("bot token (then Enter and Ctrl-D):");
    }
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read the token from standard input: {e}"))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(
            "no bot token on standard input (echo \"$TOKEN\" | telegram-bots integrations ...)"
                .into(),
        );
    }
    check_token(token).map_err(|e| format!("malformed token: {e}"))?;
    Ok(Secret::new(token.to_owned()))
}

fn list(store: &mut dyn Store) -> Result<(), String> {
    let integrations = store.integrations().map_err(|e| e.to_string())?;
    let rows: Vec<[String; 5]> = integrations
        .iter()
        .map(|i| {
            let state = match (&i.token, i.record.session.authorized) {
                (Err(_), _) => "token unreadable",
                (Ok(_), true) => "logged in",
                (Ok(_), false) => "no login yet",
            };
            let error = match &i.token {
                Err(why) => why.clone(),
                Ok(_) => i.last_error.clone().unwrap_or_else(|| "-".into()),
            };
            [
                i.workspace_id.clone(),
                i.record
                    .session
                    .username
                    .as_ref()
                    .map_or("-".into(), |u| format!("@{u}")),
                if i.enabled { "yes" } else { "no" }.into(),
                state.into(),
                error,
            ]
        })
        .collect();
    print_table(
        ["WORKSPACE", "USERNAME", "ENABLED", "STATE", "LAST ERROR"],
        &rows,
    );
    Ok(())
}

/// The outbox's rows as a table, their age as of `now_ms`. The file reference is left
/// out: no secret, but noise.
fn outbox_table(rows: &[VoiceRow], now_ms: i64) {
    let rows: Vec<[String; 8]> = rows
        .iter()
        .map(|r| {
            let key = &r.job.key;
            [
                key.workspace_id.clone(),
                key.chat.to_string(),
                key.message_id.to_string(),
                r.status.clone(),
                r.job.attempts.to_string(),
                age(now_ms - r.job.received_at_ms),
                r.object_key.clone().unwrap_or_else(|| "-".into()),
                r.last_error
                    .as_deref()
                    .map_or("-".into(), |e| e.replace(char::is_control, " ")),
            ]
        })
        .collect();
    print_table(
        [
            "WORKSPACE",
            "CHAT",
            "MESSAGE",
            "STATUS",
            "ATTEMPTS",
            "AGE",
            "OBJECT KEY",
            "LAST ERROR",
        ],
        &rows,
    );
}

/// `ms` as a person reads an age: `42s`, `17m`, `5h`, `3d`.
fn age(ms: i64) -> String {
    let s = ms.max(0) / 1_000;
    match s {
        0..120 => format!("{s}s"),
        120..7_200 => format!("{}m", s / 60),
        7_200..172_800 => format!("{}h", s / 3_600),
        _ => format!("{}d", s / 86_400),
    }
}

/// Prints `header` and `rows` in columns; the last column, the one of unbounded width,
/// is not padded.
fn print_table<const N: usize>(header: [&str; N], rows: &[[String; N]]) {
    let header = header.map(String::from);
    let widths: Vec<usize> = (0..N - 1)
        .map(|c| {
            rows.iter()
                .chain([&header])
                .map(|r| r[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (c, width) in widths.iter().enumerate() {
            line.push_str(&format!("{:<width$}  ", row[c]));
        }
        line.push_str(&row[N - 1]);
        println!("{line}");
    }
}

/// Imports an earlier version's state file: sessions, update state and channels of the
/// workspaces the store has integrations for.
fn import_state(store: &mut dyn Store, file: &str) -> Result<(), String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{file}: {e}"))?;
    let records = state_file::decode(&text).map_err(|e| format!("{file}: {e}"))?;
    let known: Vec<String> = store
        .integrations()
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|i| i.workspace_id)
        .collect();
    let mut batch = Vec::new();
    for (ws, record) in records {
        if !known.contains(&ws) {
            println!("skipped workspace {ws}: no integration (add it first)");
            continue;
        }
        batch.push((
            ws,
            Commit {
                id: 0,
                session: Some(record.session),
                updates: record.updates,
                channels: Some(record.channels),
                messages: vec![],
            },
        ));
    }
    store.write(&batch).map_err(|e| e.to_string())?;
    println!(
        "imported the sessions and state of {} workspaces from {file}",
        batch.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::age;

    #[test]
    fn ages_read_at_a_glance() {
        let cases = [
            (-5_000, "0s"),
            (59_999, "59s"),
            (119_000, "119s"),
            (120_000, "2m"),
            (7_199_000, "119m"),
            (7_200_000, "2h"),
            (172_799_000, "47h"),
            (172_800_000, "2d"),
        ];
        for (ms, shown) in cases {
            assert_eq!(age(ms), shown, "{ms} ms");
        }
    }
}
