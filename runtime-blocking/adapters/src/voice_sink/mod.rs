//! Where a voice message goes once its audio is downloaded: the audio to an object store
//! (S3, or a directory in `DATA_DIR` with the embedded store) and then its event to an
//! event sink (Inngest, or a JSON-lines file in `DATA_DIR`).
//!
//! Every call here blocks, and makes one attempt: whether and when to try again is the
//! core's decision, from the [`SinkError`] it gets back (transient or permanent, with the
//! server's `Retry-After`). The calls run on the [`pool`]'s few threads, never on the
//! executor. The object key and the event come from `telegram_bots_core::voice`; the
//! sinks add nothing to them, so that a retry writes the same key and sends the same
//! event id.
//!
//! - [`sinks`]: which sinks the configuration names.
//! - [`s3`] and [`local_dir`]: the object stores.
//! - [`inngest`] and [`events_file`]: the event sinks.
//! - [`pool`]: the worker threads and their bounded queue.
//! - [`carry_out`]: the fleet's voice effects, the same in both runtimes.

use std::fmt;

use serde_json::Value;
use telegram_bots_core::fleet::Effect;
use telegram_bots_core::voice::VoiceJob;

use crate::state_writer::StateWriter;

mod error;
pub mod events_file;
mod http;
pub mod inngest;
pub mod local_dir;
pub mod pool;
mod retry_after;
pub mod s3;
pub mod sinks;
mod tls;

pub use error::SinkError;
pub use events_file::EventsFile;
pub use inngest::InngestSink;
pub use local_dir::LocalDirStore;
pub use pool::{PoolFull, SinkDone, SinkPool, SinkTask};
pub use s3::{S3Settings, S3Store};
pub use sinks::Sinks;

/// Where an object was stored: the bucket (a local store's directory) and the key, for
/// the event's `s3.bucket` and `s3.key`.
pub use telegram_bots_core::voice::ObjectLocation;

/// Carries out one of the fleet's voice effects: the audio and the event go to the pool,
/// the outcome to the state writer (when there is none, the process is stopping and the
/// row stays pending). An answer to feed back at once (the pool was full) is returned.
/// Only for the voice effects (the runtimes carry out the others).
pub fn carry_out(
    effect: Effect,
    pool: &SinkPool,
    writer: Option<&StateWriter>,
) -> Option<SinkDone> {
    let task = match effect {
        Effect::StoreVoice { job, voice, bytes } => SinkTask::Store {
            id: job,
            job: voice,
            bytes,
        },
        Effect::PublishVoice { job, event } => SinkTask::Publish { id: job, event },
        Effect::FinishVoice { job, key, outcome } => {
            if let Some(writer) = writer {
                writer.finish(job, key, outcome);
            }
            return None;
        }
        _ => unreachable!("not a voice effect"),
    };
    pool.submit(task).err().map(PoolFull::into_done)
}

/// Stores the audio of voice messages.
pub trait ObjectStore: Send + Sync + fmt::Debug {
    /// Stores `bytes`, the audio of `job`, under `job.object_key()`. Storing the same
    /// job again writes the same key: the object is replaced, never doubled.
    fn put(&self, job: &VoiceJob, bytes: &[u8]) -> Result<ObjectLocation, SinkError>;

    /// What and where, for the start-up log: no secret.
    fn describe(&self) -> String;
}

/// Delivers the events that announce stored voice messages.
pub trait EventSink: Send + Sync + fmt::Debug {
    /// Delivers one event (an object built by `VoiceJob::event`). Delivering it again is
    /// harmless: it carries its deterministic id, by which Inngest drops a repeat.
    fn send(&self, event: &Value) -> Result<(), SinkError>;

    /// What and where, for the start-up log: no secret.
    fn describe(&self) -> String;
}

/// An event as it travels: compact JSON, its fields in the order the core built them.
/// Inngest receives these bytes, and the local events file holds them as its lines.
fn event_bytes(event: &Value) -> Vec<u8> {
    serde_json::to_vec(event).expect("a JSON value always serializes")
}
