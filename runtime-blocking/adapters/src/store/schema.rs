//! The schema, as numbered migrations embedded in the binary, in each back end's dialect.
//! `telegram_bots_schema` holds the version reached; a migration is applied in the same
//! transaction that records it. Tables carry a `telegram_bots_` prefix: the database may
//! be shared with other services (the TypeScript service had an `integrations` table).
//!
//! Version 1: integrations (a sealed token per workspace), bot sessions and their sealed
//! auth keys, update state, channels, and a counter of integration changes (bumped by a
//! trigger, so that even a change made by hand in SQL is picked up by running
//! processes; PostgreSQL also notifies `telegram_bots_integrations`). Later versions add
//! the voice outbox and the ownership leases.

/// The schema version this build knows.
pub const VERSION: i64 = 1;

/// The PostgreSQL `NOTIFY` channel of integration changes.
pub const NOTIFY_CHANNEL: &str = "telegram_bots_integrations";

/// Migration `n` (1-based) for PostgreSQL.
pub const POSTGRES: &[&str] = &[r#"
CREATE TABLE telegram_bots_integrations (
    workspace_id text PRIMARY KEY,
    token_sealed text NOT NULL,
    enabled boolean NOT NULL DEFAULT true,
    last_error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE telegram_bots_sessions (
    workspace_id text PRIMARY KEY
        REFERENCES telegram_bots_integrations ON DELETE CASCADE,
    home_dc integer,
    authorized boolean NOT NULL,
    user_id bigint,
    username text
);
CREATE TABLE telegram_bots_auth_keys (
    workspace_id text NOT NULL REFERENCES telegram_bots_integrations ON DELETE CASCADE,
    dc integer NOT NULL,
    key_sealed text NOT NULL,
    PRIMARY KEY (workspace_id, dc)
);
CREATE TABLE telegram_bots_update_state (
    workspace_id text PRIMARY KEY
        REFERENCES telegram_bots_integrations ON DELETE CASCADE,
    pts integer NOT NULL,
    qts integer NOT NULL,
    date integer NOT NULL,
    seq integer NOT NULL
);
CREATE TABLE telegram_bots_channels (
    workspace_id text NOT NULL REFERENCES telegram_bots_integrations ON DELETE CASCADE,
    channel_id bigint NOT NULL,
    access_hash bigint NOT NULL,
    pts integer NOT NULL,
    PRIMARY KEY (workspace_id, channel_id)
);
CREATE TABLE telegram_bots_changes (
    id integer PRIMARY KEY CHECK (id = 1),
    integrations bigint NOT NULL
);
INSERT INTO telegram_bots_changes VALUES (1, 0);
CREATE FUNCTION telegram_bots_integrations_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE telegram_bots_changes SET integrations = integrations + 1 WHERE id = 1;
    PERFORM pg_notify('telegram_bots_integrations', '');
    RETURN NULL;
END $$;
CREATE TRIGGER telegram_bots_integrations_changed
    AFTER INSERT OR DELETE OR UPDATE OF token_sealed, enabled
    ON telegram_bots_integrations
    FOR EACH STATEMENT EXECUTE FUNCTION telegram_bots_integrations_changed();
"#];

/// Migration `n` (1-based) for SQLite.
pub const SQLITE: &[&str] = &[r#"
CREATE TABLE telegram_bots_integrations (
    workspace_id TEXT PRIMARY KEY,
    token_sealed TEXT NOT NULL,
    enabled INTEGER NOT NULL DEFAULT 1,
    last_error TEXT,
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE TABLE telegram_bots_sessions (
    workspace_id TEXT PRIMARY KEY
        REFERENCES telegram_bots_integrations ON DELETE CASCADE,
    home_dc INTEGER,
    authorized INTEGER NOT NULL,
    user_id INTEGER,
    username TEXT
);
CREATE TABLE telegram_bots_auth_keys (
    workspace_id TEXT NOT NULL REFERENCES telegram_bots_integrations ON DELETE CASCADE,
    dc INTEGER NOT NULL,
    key_sealed TEXT NOT NULL,
    PRIMARY KEY (workspace_id, dc)
);
CREATE TABLE telegram_bots_update_state (
    workspace_id TEXT PRIMARY KEY
        REFERENCES telegram_bots_integrations ON DELETE CASCADE,
    pts INTEGER NOT NULL,
    qts INTEGER NOT NULL,
    date INTEGER NOT NULL,
    seq INTEGER NOT NULL
);
CREATE TABLE telegram_bots_channels (
    workspace_id TEXT NOT NULL REFERENCES telegram_bots_integrations ON DELETE CASCADE,
    channel_id INTEGER NOT NULL,
    access_hash INTEGER NOT NULL,
    pts INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, channel_id)
);
CREATE TABLE telegram_bots_changes (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    integrations INTEGER NOT NULL
);
INSERT INTO telegram_bots_changes VALUES (1, 0);
CREATE TRIGGER telegram_bots_integrations_inserted AFTER INSERT ON telegram_bots_integrations
BEGIN UPDATE telegram_bots_changes SET integrations = integrations + 1 WHERE id = 1; END;
CREATE TRIGGER telegram_bots_integrations_deleted AFTER DELETE ON telegram_bots_integrations
BEGIN UPDATE telegram_bots_changes SET integrations = integrations + 1 WHERE id = 1; END;
CREATE TRIGGER telegram_bots_integrations_updated
AFTER UPDATE OF token_sealed, enabled ON telegram_bots_integrations
BEGIN UPDATE telegram_bots_changes SET integrations = integrations + 1 WHERE id = 1; END;
"#];

#[cfg(test)]
mod tests {
    #[test]
    fn every_version_has_a_migration_in_each_dialect() {
        assert_eq!(super::POSTGRES.len() as i64, super::VERSION);
        assert_eq!(super::SQLITE.len() as i64, super::VERSION);
    }
}
