//! The events in a local JSON-lines file, for the embedded mode: `DATA_DIR/events.jsonl`,
//! one event per line, byte for byte what Inngest would have received, each line on
//! disk before [`EventSink::send`] returns.
//!
//! A line cut short by a crash or a full disk is ended before the next one is written,
//! so that it spoils only itself. Like Inngest, the file may hold an event twice (a
//! retry after a crash): readers keep the first line of each `id`.

use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use serde_json::Value;

use super::{EventSink, SinkError, event_bytes};

/// The file's name in `DATA_DIR`.
pub const EVENTS_FILE: &str = "events.jsonl";

/// An append-only events file, owner-only (0600).
#[derive(Debug)]
pub struct EventsFile {
    path: PathBuf,
    /// The file, and whether its last write may have been cut short.
    file: Mutex<(File, bool)>,
}

impl EventsFile {
    /// Opens `path` for appending, creating it if missing.
    pub fn open(path: &Path) -> Result<EventsFile, String> {
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .and_then(|file| end_cut_line(&file).map(|()| file))
            .and_then(|file| {
                // A new file's name is durable once its directory is.
                let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
                File::open(dir.unwrap_or(Path::new(".")))?.sync_all()?;
                Ok(file)
            })
            .map_err(|e| format!("events file {}: {e}", path.display()))?;
        Ok(EventsFile {
            path: path.to_owned(),
            file: Mutex::new((file, false)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl EventSink for EventsFile {
    fn send(&self, event: &Value) -> Result<(), SinkError> {
        let mut line = event_bytes(event);
        line.push(b'\n');
        let mut guard = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        let (file, maybe_cut) = &mut *guard;
        let written = (if *maybe_cut {
            end_cut_line(file)
        } else {
            Ok(())
        })
        .and_then(|()| file.write_all(&line))
        .and_then(|()| file.sync_data());
        *maybe_cut = written.is_err();
        written
            .map_err(|e| SinkError::transient(format!("events file {}: {e}", self.path.display())))
    }

    fn describe(&self) -> String {
        format!("the local file {}", self.path.display())
    }
}

/// Ends the file's last line if it was cut short (it lacks its newline).
fn end_cut_line(file: &File) -> io::Result<()> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(());
    }
    let mut last = [0u8];
    file.read_exact_at(&mut last, len - 1)?;
    if last[0] != b'\n' {
        (&*file).write_all(b"\n")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::os::unix::fs::PermissionsExt as _;

    fn temp_file(name: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("{name}-{}.jsonl", std::process::id()));
        let _ = std::fs::remove_file(&path);
        path
    }

    #[test]
    fn each_event_is_one_line_as_it_would_be_sent() {
        let path = temp_file("events-file");
        let sink = EventsFile::open(&path).unwrap();
        let events: Vec<Value> = (0..3)
            .map(|i| json!({"name": "telegram/voice.received", "id": format!("tg-voice:ws:user:1:{i}"), "data": {"text": "a\nb", "n": i}}))
            .collect();
        for event in &events {
            sink.send(event).unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        for (line, event) in lines.iter().zip(&events) {
            assert_eq!(line.as_bytes(), event_bytes(event));
            assert_eq!(&serde_json::from_str::<Value>(line).unwrap(), event);
        }
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // Reopened (a restart), it appends.
        drop(sink);
        EventsFile::open(&path).unwrap().send(&events[0]).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 4);
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn a_line_cut_by_a_crash_spoils_only_itself() {
        let path = temp_file("events-file-cut");
        std::fs::write(&path, "{\"name\":\"telegram/voice.rec").unwrap();
        let event = json!({"name": "telegram/voice.received", "data": {}});
        EventsFile::open(&path).unwrap().send(&event).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "{\"name\":\"telegram/voice.rec");
        assert_eq!(serde_json::from_str::<Value>(lines[1]).unwrap(), event);
        std::fs::remove_file(path).unwrap();
    }
}
