//! The schema, as numbered migrations embedded in the binary, in each back end's dialect.
//! `telegram_bots_schema` holds the version reached; a migration is applied in the same
//! transaction that records it. Tables carry a `telegram_bots_` prefix: the database may
//! be shared with other services (the TypeScript service had an `integrations` table).
//!
//! Version 1: integrations (a sealed token per workspace), bot sessions and their sealed
//! auth keys, update state, channels, and a counter of integration changes (bumped by a
//! trigger, so that even a change made by hand in SQL is picked up by running
//! processes; PostgreSQL also notifies `telegram_bots_integrations`).
//!
//! Version 2: the voice outbox, a row per voice message written in the same transaction
//! as the update state that covers it (see [`super::Store::write`]), keyed by the
//! message's identity ([`telegram_bots_core::voice::VoiceKey`]); what `upload.getFile`
//! needs to download it; its status (`pending`, `done` or `failed`), attempts, last error
//! and object key. Rows are read oldest first: by `received_at_ms`, then in the order
//! they were written (PostgreSQL's `seq`; SQLite's `rowid`, which every index entry
//! ends with), so that the messages of one batch keep their order. A partial index over
//! the pending rows in that order keeps "the oldest pending rows" cheap however many
//! done rows pile up.
//!
//! Later versions add the ownership leases.

/// The schema version this build knows.
pub const VERSION: i64 = 2;

/// The PostgreSQL `NOTIFY` channel of integration changes.
pub const NOTIFY_CHANNEL: &str = "telegram_bots_integrations";

/// Migration `n` (1-based) for PostgreSQL.
pub const POSTGRES: &[&str] = &[
    r#"
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
"#,
    r#"
CREATE TABLE telegram_bots_voice_outbox (
    workspace_id text NOT NULL REFERENCES telegram_bots_integrations ON DELETE CASCADE,
    chat_kind text NOT NULL CHECK (chat_kind IN ('user', 'chat', 'channel')),
    chat_id bigint NOT NULL,
    message_id integer NOT NULL,
    from_user_id bigint,
    date integer NOT NULL,
    document_id bigint NOT NULL,
    access_hash bigint NOT NULL,
    file_reference bytea NOT NULL,
    dc_id integer NOT NULL,
    size bigint NOT NULL,
    mime_type text NOT NULL,
    duration_seconds integer NOT NULL,
    media_kind text NOT NULL DEFAULT 'voice' CHECK (media_kind IN ('voice', 'audio', 'video_note')),
    received_at_ms bigint NOT NULL,
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'failed')),
    attempts integer NOT NULL DEFAULT 0,
    last_error text,
    object_key text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    seq bigint GENERATED ALWAYS AS IDENTITY,
    PRIMARY KEY (workspace_id, chat_kind, chat_id, message_id)
);
CREATE INDEX telegram_bots_voice_outbox_pending
    ON telegram_bots_voice_outbox (received_at_ms, seq) WHERE status = 'pending';
"#,
];

/// Migration `n` (1-based) for SQLite.
pub const SQLITE: &[&str] = &[
    r#"
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
"#,
    r#"
CREATE TABLE telegram_bots_voice_outbox (
    workspace_id TEXT NOT NULL REFERENCES telegram_bots_integrations ON DELETE CASCADE,
    chat_kind TEXT NOT NULL CHECK (chat_kind IN ('user', 'chat', 'channel')),
    chat_id INTEGER NOT NULL,
    message_id INTEGER NOT NULL,
    from_user_id INTEGER,
    date INTEGER NOT NULL,
    document_id INTEGER NOT NULL,
    access_hash INTEGER NOT NULL,
    file_reference BLOB NOT NULL,
    dc_id INTEGER NOT NULL,
    size INTEGER NOT NULL,
    mime_type TEXT NOT NULL,
    duration_seconds INTEGER NOT NULL,
    media_kind TEXT NOT NULL DEFAULT 'voice' CHECK (media_kind IN ('voice', 'audio', 'video_note')),
    received_at_ms INTEGER NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    object_key TEXT,
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (workspace_id, chat_kind, chat_id, message_id)
);
CREATE INDEX telegram_bots_voice_outbox_pending
    ON telegram_bots_voice_outbox (received_at_ms) WHERE status = 'pending';
"#,
];

#[cfg(test)]
mod tests {
    #[test]
    fn every_version_has_a_migration_in_each_dialect() {
        assert_eq!(super::POSTGRES.len() as i64, super::VERSION);
        assert_eq!(super::SQLITE.len() as i64, super::VERSION);
    }
}
