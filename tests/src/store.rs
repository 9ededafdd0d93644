//! The store's two back ends for the shared store suite (`tests/tests/store.rs`): each a
//! fresh, empty database (a SQLite file in a temp dir, a PostgreSQL database of its own)
//! that opens stores on it with any keys, several at once as several processes would,
//! runs SQL on it behind the stores' backs (an earlier schema, a table that refuses a
//! row), and shows what it holds at rest.

use std::path::PathBuf;

use telegram_bots_adapters::store::postgres::PostgresStore;
use telegram_bots_adapters::store::schema;
use telegram_bots_adapters::store::sqlite::SqliteStore;
use telegram_bots_adapters::store::{Sealer, Store};
use telegram_bots_core::seal::Keyring;
use telegram_bots_core::secret::SecretUrl;

use crate::postgres::{TestDb, describe};
use crate::process::temp_dir;

/// A database a store runs on.
pub trait StoreDb {
    /// "SQLite" or "PostgreSQL", for messages.
    fn name(&self) -> &'static str;
    /// A store on this database that seals with `keyring` (a process of its own).
    fn open(&self, keyring: Keyring) -> Box<dyn Store>;
    /// Runs SQL directly, as an operator or another build of the service would.
    fn execute(&self, sql: &str);
    /// The schema's migrations in this database's dialect (to build an earlier version
    /// as an earlier build left it).
    fn migrations(&self) -> &'static [&'static str];
    /// Makes every insert into `table` of a row for which `condition` (an SQL expression
    /// on `NEW`) holds fail, as a full disk or a broken constraint would fail a write.
    fn refuse_inserts(&self, table: &str, condition: &str);
    /// The value of a query of one integer.
    fn query_i64(&self, sql: &str) -> i64;
    /// Everything the database holds, as it holds it: the SQLite files' bytes, or every
    /// row of every PostgreSQL table as text.
    fn at_rest(&self) -> Vec<u8>;
}

/// A SQLite file in a temp dir of its own, removed with this value.
#[derive(Debug)]
pub struct SqliteDb {
    dir: PathBuf,
}

impl SqliteDb {
    pub fn new() -> SqliteDb {
        SqliteDb {
            dir: temp_dir("telegram-bots-store"),
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join("telegram-bots.sqlite")
    }

    fn connect(&self) -> rusqlite::Connection {
        let conn = rusqlite::Connection::open(self.path()).expect("open the SQLite file");
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .expect("set a busy timeout");
        conn
    }
}

impl Default for SqliteDb {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for SqliteDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl StoreDb for SqliteDb {
    fn name(&self) -> &'static str {
        "SQLite"
    }

    fn open(&self, keyring: Keyring) -> Box<dyn Store> {
        Box::new(
            SqliteStore::open(&self.path(), Sealer::new(keyring))
                .unwrap_or_else(|e| panic!("open the SQLite store: {e}")),
        )
    }

    fn execute(&self, sql: &str) {
        self.connect()
            .execute_batch(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    fn migrations(&self) -> &'static [&'static str] {
        schema::SQLITE
    }

    fn refuse_inserts(&self, table: &str, condition: &str) {
        self.execute(&format!(
            "CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} WHEN {condition}
             BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;"
        ));
    }

    fn query_i64(&self, sql: &str) -> i64 {
        self.connect()
            .query_row(sql, [], |r| r.get(0))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// The database file with its write-ahead log (where recent commits live until a
    /// checkpoint) and any journal.
    fn at_rest(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut path = self.path().into_os_string();
            path.push(suffix);
            if let Ok(file) = std::fs::read(&path) {
                bytes.extend(file);
            }
        }
        bytes
    }
}

/// A PostgreSQL database of its own ([`TestDb`]).
#[derive(Debug)]
pub struct PostgresDb {
    db: TestDb,
}

impl PostgresDb {
    pub fn new() -> PostgresDb {
        PostgresDb { db: TestDb::new() }
    }

    pub fn url(&self) -> &str {
        self.db.url()
    }
}

impl Default for PostgresDb {
    fn default() -> Self {
        Self::new()
    }
}

impl StoreDb for PostgresDb {
    fn name(&self) -> &'static str {
        "PostgreSQL"
    }

    fn open(&self, keyring: Keyring) -> Box<dyn Store> {
        Box::new(PostgresStore::new(
            SecretUrl::new(self.db.url().to_owned()),
            Sealer::new(keyring),
        ))
    }

    fn execute(&self, sql: &str) {
        self.db
            .connect()
            .batch_execute(sql)
            .unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)));
    }

    fn migrations(&self) -> &'static [&'static str] {
        schema::POSTGRES
    }

    fn refuse_inserts(&self, table: &str, condition: &str) {
        self.execute(&format!(
            "CREATE FUNCTION refuse_{table}() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN RAISE EXCEPTION 'refused by the test'; END $$;
             CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} FOR EACH ROW
             WHEN ({condition}) EXECUTE FUNCTION refuse_{table}();"
        ));
    }

    fn query_i64(&self, sql: &str) -> i64 {
        self.db
            .connect()
            .query_one(sql, &[])
            .unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)))
            .get(0)
    }

    fn at_rest(&self) -> Vec<u8> {
        let mut client = self.db.connect();
        let tables: Vec<String> = client
            .query(
                "SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema()",
                &[],
            )
            .expect("list the tables")
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut text = String::new();
        for table in tables {
            let sql = format!("SELECT t::text FROM {table} AS t");
            for row in client
                .query(&sql, &[])
                .unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)))
            {
                text.push_str(&format!("{table}: {}\n", row.get::<_, String>(0)));
            }
        }
        text.into_bytes()
    }
}
