//! The production store: PostgreSQL through the blocking `postgres` crate, one
//! connection per user (the state writer, the store watcher, an admin command).
//! Migrations run in one transaction under an advisory transaction lock, so that two
//! pods migrating at once take turns. A batch of commits is one transaction of a few
//! statements whatever its size (rows go as arrays through `unnest`).

use std::time::Duration;

use telegram_bots_core::record::Commit;
use telegram_bots_core::secret::{Secret, SecretUrl};

use super::{Integration, Migrated, Sealer, Store, StoreError};

pub struct PostgresStore {
    url: SecretUrl,
    sealer: Sealer,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("url", &self.url.redacted())
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// A store on `url`; connects on first use (and again after the connection is lost).
    pub fn new(url: SecretUrl, sealer: Sealer) -> PostgresStore {
        PostgresStore { url, sealer }
    }
}

impl Store for PostgresStore {
    fn migrate(&mut self) -> Result<Migrated, StoreError> {
        let _ = (&self.url, &self.sealer);
        todo!("PostgreSQL migrations")
    }

    fn check_schema(&mut self) -> Result<(), StoreError> {
        todo!("PostgreSQL schema check")
    }

    fn integrations(&mut self) -> Result<Vec<Integration>, StoreError> {
        todo!("PostgreSQL integrations")
    }

    fn integrations_version(&mut self) -> Result<i64, StoreError> {
        todo!("PostgreSQL change counter")
    }

    fn write(&mut self, _batch: &[(String, Commit)]) -> Result<(), StoreError> {
        todo!("PostgreSQL commits")
    }

    fn note_error(&mut self, _notes: &[(String, Option<String>)]) -> Result<(), StoreError> {
        todo!("PostgreSQL last errors")
    }

    fn add(&mut self, _workspace_id: &str, _token: &Secret<String>) -> Result<(), StoreError> {
        todo!("PostgreSQL add")
    }

    fn set_enabled(&mut self, _workspace_id: &str, _enabled: bool) -> Result<(), StoreError> {
        todo!("PostgreSQL enable")
    }

    fn remove(&mut self, _workspace_id: &str) -> Result<(), StoreError> {
        todo!("PostgreSQL remove")
    }

    fn set_token(
        &mut self,
        _workspace_id: &str,
        _token: &Secret<String>,
    ) -> Result<(), StoreError> {
        todo!("PostgreSQL set token")
    }

    fn rotate_key(&mut self) -> Result<usize, StoreError> {
        todo!("PostgreSQL rotate key")
    }

    fn wait_for_change(&mut self, timeout: Duration) -> Result<(), StoreError> {
        std::thread::sleep(timeout);
        Ok(())
    }
}
