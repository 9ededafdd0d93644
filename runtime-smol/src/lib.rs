//! The production runtime of telegram-bots on smol: one executor thread runs every bot
//! task and the health server; blocking IO (PostgreSQL, S3, Inngest) goes to smol's
//! blocking pool through the adapters in `telegram-bots-blocking`.

pub mod bot_task;
pub mod server;
