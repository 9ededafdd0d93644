//! A bots file as the declaration of the integrations: at start-up, and whenever the file
//! changes, the store is made to match it. Every workspace in the file gets an enabled
//! integration with the file's token (a changed token replaces the stored one; the
//! session and state stay); an integration the file does not list is disabled, not
//! removed, so its session survives if it comes back. While a bots file is in use it
//! wins; without one, the store alone says which bots run.

use telegram_bots_core::bots_file::{self, BotEntry};

use crate::store::{Store, StoreError};

/// Reads and checks the file. An error names the file and the line, never a token.
pub fn read(path: &str) -> Result<Vec<BotEntry>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("BOTS_FILE {path}: {e}"))?;
    bots_file::parse(&text).map_err(|e| format!("{path}: {e}"))
}

/// What a sync changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Synced {
    pub added: usize,
    pub updated: usize,
    pub disabled: usize,
}

/// Makes the store match `declared`.
pub fn sync(store: &mut dyn Store, declared: &[BotEntry]) -> Result<Synced, StoreError> {
    let existing = store.integrations()?;
    let mut synced = Synced::default();
    for entry in declared {
        let ws = &entry.workspace_id;
        match existing.iter().find(|i| &i.workspace_id == ws) {
            None => {
                store.add(ws, &entry.token)?;
                synced.added += 1;
            }
            Some(found) => {
                let same_token = found.token.as_ref().is_ok_and(|t| t == &entry.token);
                if !same_token {
                    store.set_token(ws, &entry.token)?;
                }
                if !found.enabled {
                    store.set_enabled(ws, true)?;
                }
                if !same_token || !found.enabled {
                    synced.updated += 1;
                }
            }
        }
    }
    for undeclared in existing
        .iter()
        .filter(|i| i.enabled && !declared.iter().any(|e| e.workspace_id == i.workspace_id))
    {
        store.set_enabled(&undeclared.workspace_id, false)?;
        synced.disabled += 1;
    }
    Ok(synced)
}
