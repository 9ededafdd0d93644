//! The audio in a local directory, for the embedded mode: `DATA_DIR/voice/{object key}`,
//! the same layout as in S3.
//!
//! A file appears under its final name only whole: it is written to a temporary file
//! beside it (`.{name}.{pid}-{n}.part`), flushed to disk, renamed over the final name,
//! and the directory is flushed, so that a crash at any moment leaves either no file or
//! the whole one (and at worst a `.part` file nobody reads).

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use telegram_bots_core::voice::VoiceJob;

use super::{ObjectLocation, ObjectStore, SinkError};

/// The folder of `DATA_DIR` that holds the audio.
pub const VOICE_DIR: &str = "voice";

/// A directory of voice messages, owner-only (directories 0700, files 0600).
#[derive(Debug)]
pub struct LocalDirStore {
    dir: PathBuf,
    next_temp: AtomicU64,
}

impl LocalDirStore {
    /// The store in `dir`, created if missing. Its absolute path is what events name as
    /// the bucket, so that `{bucket}/{key}` is the file.
    pub fn new(dir: &Path) -> Result<LocalDirStore, String> {
        let shown = dir.display();
        create_dirs(dir).map_err(|e| format!("voice directory {shown}: {e}"))?;
        let dir = fs::canonicalize(dir).map_err(|e| format!("voice directory {shown}: {e}"))?;
        Ok(LocalDirStore {
            dir,
            next_temp: AtomicU64::new(0),
        })
    }

    /// Where the object `key` is (or would be).
    pub fn path_of(&self, key: &str) -> PathBuf {
        self.dir.join(key)
    }

    fn write(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let parent = path.parent().expect("an object key has a file name");
        create_dirs(parent)?;
        let name = path.file_name().expect("checked").to_string_lossy();
        let n = self.next_temp.fetch_add(1, Ordering::Relaxed);
        let temp = parent.join(format!(".{name}.{}-{n}.{PART}", std::process::id()));
        replace_file(path, &temp, bytes)
    }
}

/// The extension of a hidden file being written (or cut short by a crash).
const PART: &str = "part";

/// Writes `bytes` to `path` whole or not at all: into `temp` beside it (owner-only),
/// flushed to disk, renamed over `path`, and the directory flushed so that the rename
/// is durable. On an error `temp` is removed and `path` is as it was.
pub fn replace_file(path: &Path, temp: &Path, bytes: &[u8]) -> io::Result<()> {
    let written = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(temp)
        .and_then(|mut file| {
            file.write_all(bytes)?;
            file.sync_all()
        })
        .and_then(|()| fs::rename(temp, path));
    if written.is_err() {
        let _ = fs::remove_file(temp);
    }
    written?;
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    File::open(parent.unwrap_or(Path::new(".")))?.sync_all()
}

/// The keys of the objects stored in the voice directory `dir`, sorted: every file under
/// it but a hidden `.*.part` one (a write in progress, or cut short by a crash). A
/// directory not made yet holds none.
pub fn stored_keys(dir: &Path) -> io::Result<Vec<String>> {
    let mut keys = Vec::new();
    let mut dirs = vec![dir.to_owned()];
    while let Some(at) = dirs.pop() {
        let entries = match fs::read_dir(&at) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            entries => entries?,
        };
        for entry in entries {
            let path = entry?.path();
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            if path.is_dir() {
                dirs.push(path);
            } else if !(name.starts_with('.') && name.ends_with(&format!(".{PART}"))) {
                let key = path.strip_prefix(dir).expect("found under dir");
                keys.push(key.to_string_lossy().into_owned());
            }
        }
    }
    keys.sort();
    Ok(keys)
}

impl ObjectStore for LocalDirStore {
    fn put(&self, job: &VoiceJob, bytes: &[u8]) -> Result<ObjectLocation, SinkError> {
        let key = job.object_key();
        // The core's keys are relative and plain; refuse anything that would leave the
        // directory rather than trust that forever.
        let plain = Path::new(&key)
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
        if !plain || key.ends_with('/') {
            return Err(SinkError::permanent(format!(
                "local store: {key:?} is not a plain relative key"
            )));
        }
        let path = self.path_of(&key);
        self.write(&path, bytes)
            .map_err(|e| SinkError::transient(format!("local store {}: {e}", path.display())))?;
        Ok(ObjectLocation::of(
            self.dir.display().to_string(),
            key,
            bytes,
        ))
    }

    fn describe(&self) -> String {
        format!("the local directory {}", self.dir.display())
    }
}

/// `dir` and its missing parents, owner-only.
fn create_dirs(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    use telegram_bots_core::updates::{Peer, VoiceFile};
    use telegram_bots_core::voice::VoiceKey;

    fn job(workspace: &str, message_id: i32) -> VoiceJob {
        VoiceJob {
            key: VoiceKey {
                workspace_id: workspace.into(),
                chat: Peer::Channel(555),
                message_id,
            },
            from_user_id: None,
            date: 1_795_651_200, // 2026-11-26
            file: VoiceFile {
                kind: telegram_bots_core::updates::MediaKind::Voice,
                document_id: 1,
                access_hash: 2,
                file_reference: vec![],
                dc_id: 2,
                size: 0,
                mime_type: "audio/ogg".into(),
                duration_seconds: 3,
            },
            received_at_ms: 0,
            attempts: 0,
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    /// Every file under `dir`, relative.
    fn files(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for entry in fs::read_dir(d).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    out.push(path.strip_prefix(dir).unwrap().display().to_string());
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn stored_keys_are_the_objects_not_the_writes_in_progress() {
        let root = temp_dir("local-dir-store-keys");
        assert_eq!(
            stored_keys(&root.join("none")).unwrap(),
            Vec::<String>::new()
        );
        let store = LocalDirStore::new(&root).unwrap();
        store.put(&job("ws_1", 456), b"audio").unwrap();
        let cut_short = root.join("ws_1/2026/11/26/channel-555/.457.ogg.1-0.part");
        fs::write(&cut_short, b"au").unwrap();
        assert_eq!(files(&root).len(), 2);
        assert_eq!(
            stored_keys(&root).unwrap(),
            ["ws_1/2026/11/26/channel-555/456.ogg"]
        );
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn files_land_whole_under_the_key_owner_only() {
        let root = temp_dir("local-dir-store");
        let store = LocalDirStore::new(&root.join(VOICE_DIR)).unwrap();
        let audio: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        let location = store.put(&job("ws_1", 456), &audio).unwrap();
        assert_eq!(location.key, "ws_1/2026/11/26/channel-555/456.ogg");
        let path = Path::new(&location.bucket).join(&location.key);
        assert_eq!(fs::read(&path).unwrap(), audio);
        assert_eq!(mode(&path), 0o600);
        for dir in ["", "ws_1", "ws_1/2026/11/26/channel-555"] {
            assert_eq!(mode(&root.join(VOICE_DIR).join(dir)), 0o700, "{dir}");
        }
        // The same message again is the same file, replaced; nothing else is left.
        store.put(&job("ws_1", 456), b"second").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        assert_eq!(
            files(&root.join(VOICE_DIR)),
            ["ws_1/2026/11/26/channel-555/456.ogg"]
        );
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn a_reader_never_sees_a_partial_file() {
        let root = temp_dir("local-dir-store-atomic");
        let store = Arc::new(LocalDirStore::new(&root).unwrap());
        let (a, b) = (vec![b'a'; 256 * 1024], vec![b'b'; 256 * 1024]);
        let path = store.path_of(&store.put(&job("ws", 1), &a).unwrap().key);
        let done = Arc::new(AtomicBool::new(false));
        let reader = std::thread::spawn({
            let (done, path) = (done.clone(), path.clone());
            move || {
                let mut reads = 0;
                while !done.load(Ordering::SeqCst) {
                    let seen = fs::read(&path).unwrap();
                    assert_eq!(seen.len(), 256 * 1024, "a short file after {reads} reads");
                    assert!(
                        seen.iter().all(|&c| c == seen[0]),
                        "a mixed file after {reads} reads"
                    );
                    reads += 1;
                }
                reads
            }
        });
        for i in 0..40 {
            store
                .put(&job("ws", 1), if i % 2 == 0 { &b } else { &a })
                .unwrap();
        }
        done.store(true, Ordering::SeqCst);
        assert!(reader.join().unwrap() > 0);
        assert_eq!(files(&root).len(), 1, "{:?}", files(&root));
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn a_failed_write_leaves_nothing_under_the_name() {
        let root = temp_dir("local-dir-store-readonly");
        let store = LocalDirStore::new(&root).unwrap();
        // A file where the workspace's directory should be: the write cannot happen.
        fs::write(root.join("ws_9"), b"in the way").unwrap();
        let error = store.put(&job("ws_9", 1), b"audio").unwrap_err();
        assert!(error.is_transient(), "{error}");
        assert!(error.reason().starts_with("local store "), "{error}");
        assert_eq!(files(&root), ["ws_9"]);
        fs::remove_dir_all(root).unwrap();
    }
}
