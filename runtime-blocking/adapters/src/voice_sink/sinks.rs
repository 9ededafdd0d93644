//! Which sinks the configuration names.
//!
//! - With `DATABASE_URL` (production): S3 and Inngest, both fully configured, or the
//!   start fails with one line naming every missing variable. Never a silent fallback:
//!   a fleet that quietly kept voice messages on one pod's disk would lose them.
//! - Without it (the embedded store): S3 when its variables are all set, otherwise the
//!   directory `DATA_DIR/voice`; Inngest when `INNGEST_EVENT_KEY` is set, otherwise the
//!   file `DATA_DIR/events.jsonl`. Half a configuration (some S3 variables but not all,
//!   `INNGEST_BASE_URL` without a key) is a mistake in both modes, not a wish for the
//!   default.
//!
//! The start-up log says where voice files and events go, one line each, without secrets.

use std::os::unix::fs::DirBuilderExt as _;
use std::path::Path;
use std::sync::Arc;

use telegram_bots_core::config::{Config, DEFAULT_INNGEST_BASE_URL};

use super::events_file::EVENTS_FILE;
use super::local_dir::VOICE_DIR;
use super::{EventSink, EventsFile, InngestSink, LocalDirStore, ObjectStore, S3Settings, S3Store};

/// Where voice messages go.
#[derive(Clone, Debug)]
pub struct Sinks {
    pub objects: Arc<dyn ObjectStore>,
    pub events: Arc<dyn EventSink>,
}

impl Sinks {
    /// The sinks the configuration names, logged. An error is one line for the operator
    /// (the runtime exits with code 2), naming the variables to set.
    pub fn from_config(config: &Config) -> Result<Sinks, String> {
        let s3 = S3Variables::of(config);
        let inngest_key = config.inngest_event_key.as_ref();
        // INNGEST_BASE_URL has a default, so "set" can only mean "set to another URL".
        let inngest_base_set = config.inngest_base_url != DEFAULT_INNGEST_BASE_URL;
        if config.database_url.is_some() {
            let mut missing = s3.missing.clone();
            if inngest_key.is_none() {
                missing.push("INNGEST_EVENT_KEY");
            }
            if !missing.is_empty() {
                return Err(format!(
                    "{}: required with DATABASE_URL (voice messages go to S3 and Inngest; the local directory and events file are only for the embedded store)",
                    missing.join(", ")
                ));
            }
        } else {
            let mut problems = Vec::new();
            if !s3.set.is_empty() && !s3.missing.is_empty() {
                problems.push(format!(
                    "{}: required with {} (S3 is partly configured; unset them all to keep voice files in DATA_DIR/{VOICE_DIR})",
                    s3.missing.join(", "),
                    s3.set.join(", ")
                ));
            }
            if inngest_base_set && inngest_key.is_none() {
                problems.push(format!(
                    "INNGEST_EVENT_KEY: required with INNGEST_BASE_URL (unset it to keep events in DATA_DIR/{EVENTS_FILE})"
                ));
            }
            if !problems.is_empty() {
                return Err(problems.join("; "));
            }
        }

        let data_dir = Path::new(&config.data_dir);
        let objects: Arc<dyn ObjectStore> = match s3.settings(config) {
            Some(settings) => {
                let store = S3Store::new(&settings)?;
                tracing::info!("voice files go to {}", store.describe());
                Arc::new(store)
            }
            None => {
                let store = LocalDirStore::new(&data_dir.join(VOICE_DIR))?;
                tracing::info!(
                    "voice files go to {} (the embedded store's default: S3_BUCKET, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set)",
                    store.describe()
                );
                Arc::new(store)
            }
        };
        let events: Arc<dyn EventSink> = match inngest_key {
            Some(key) => {
                let sink = InngestSink::new(&config.inngest_base_url, key, InngestSink::TIMEOUT);
                tracing::info!("voice events go to {}", sink.describe());
                Arc::new(sink)
            }
            None => {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(data_dir)
                    .map_err(|e| format!("DATA_DIR {}: {e}", data_dir.display()))?;
                let sink = EventsFile::open(&data_dir.join(EVENTS_FILE))?;
                tracing::info!(
                    "voice events go to {} (the embedded store's default: INNGEST_EVENT_KEY is not set)",
                    sink.describe()
                );
                Arc::new(sink)
            }
        };
        Ok(Sinks { objects, events })
    }
}

/// Which of the S3 variables are set, and which of the required ones are not.
struct S3Variables {
    set: Vec<&'static str>,
    missing: Vec<&'static str>,
}

impl S3Variables {
    fn of(config: &Config) -> S3Variables {
        let required = [
            ("S3_BUCKET", config.s3_bucket.is_some()),
            ("AWS_ACCESS_KEY_ID", config.aws_access_key_id.is_some()),
            (
                "AWS_SECRET_ACCESS_KEY",
                config.aws_secret_access_key.is_some(),
            ),
        ];
        let optional = [("S3_ENDPOINT", config.s3_endpoint.is_some())];
        S3Variables {
            set: required
                .iter()
                .chain(&optional)
                .filter(|(_, set)| *set)
                .map(|(name, _)| *name)
                .collect(),
            missing: required
                .iter()
                .filter(|(_, set)| !*set)
                .map(|(name, _)| *name)
                .collect(),
        }
    }

    /// The settings, when every required variable is set.
    fn settings(&self, config: &Config) -> Option<S3Settings> {
        Some(S3Settings {
            bucket: config.s3_bucket.clone()?,
            region: config.s3_region.clone(),
            endpoint: config.s3_endpoint.clone(),
            access_key_id: config.aws_access_key_id.clone()?,
            secret_access_key: config.aws_secret_access_key.clone()?,
            timeout: S3Settings::TIMEOUT,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use std::os::unix::fs::PermissionsExt as _;
    use std::path::PathBuf;
    use std::sync::{Mutex, PoisonError};

    const SECRETS: [&str; 2] = ["aws-secret-value-1", "inngest-key-value-2"];

    fn s3_vars() -> Vec<(&'static str, &'static str)> {
        vec![
            ("S3_BUCKET", "voice"),
            ("S3_ENDPOINT", "http://127.0.0.1:9000"),
            ("AWS_ACCESS_KEY_ID", "access"),
            ("AWS_SECRET_ACCESS_KEY", SECRETS[0]),
        ]
    }

    const DATABASE: (&str, &str) = ("DATABASE_URL", "postgres://app:pw@db/bots");
    const INNGEST: (&str, &str) = ("INNGEST_EVENT_KEY", SECRETS[1]);

    fn data_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sinks-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    /// The sinks for `vars` (with `DATA_DIR` set to `dir`) and what was logged.
    fn choose(vars: &[(&str, &str)], dir: &Path) -> (Result<Sinks, String>, String) {
        let dir = dir.display().to_string();
        let config =
            Config::from_env(vars.iter().copied().chain([("DATA_DIR", dir.as_str())])).unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let subscriber = tracing_subscriber::fmt()
            .with_writer({
                let log = log.clone();
                move || Capture(log.clone())
            })
            .with_ansi(false)
            .without_time()
            .with_target(false)
            .finish();
        let sinks = tracing::subscriber::with_default(subscriber, || Sinks::from_config(&config));
        let log = String::from_utf8(log.lock().unwrap().clone()).unwrap();
        for secret in SECRETS {
            assert!(!log.contains(secret), "{log}");
            if let Err(e) = &sinks {
                assert!(!e.contains(secret), "{e}");
            }
            if let Ok(s) = &sinks {
                assert!(!format!("{s:?}").contains(secret));
            }
        }
        (sinks, log)
    }

    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let mut log = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            log.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn with_a_database_s3_and_inngest_are_required() {
        let dir = data_dir("required");
        let (sinks, log) = choose(&[DATABASE], &dir);
        assert_eq!(
            sinks.unwrap_err(),
            "S3_BUCKET, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, INNGEST_EVENT_KEY: required with DATABASE_URL (voice messages go to S3 and Inngest; the local directory and events file are only for the embedded store)"
        );
        assert!(log.is_empty(), "{log}");
        assert!(!dir.exists(), "nothing is created for a refused start");

        let mut vars = s3_vars();
        vars.push(DATABASE);
        let (sinks, _) = choose(&vars, &dir);
        assert!(
            sinks
                .unwrap_err()
                .starts_with("INNGEST_EVENT_KEY: required with DATABASE_URL"),
        );
        vars.retain(|(name, _)| *name != "AWS_ACCESS_KEY_ID");
        vars.push(INNGEST);
        let (sinks, _) = choose(&vars, &dir);
        assert!(
            sinks
                .unwrap_err()
                .starts_with("AWS_ACCESS_KEY_ID: required with DATABASE_URL"),
        );
    }

    #[test]
    fn fully_configured_means_s3_and_inngest() {
        let dir = data_dir("full");
        let mut vars = s3_vars();
        vars.extend([
            DATABASE,
            INNGEST,
            ("INNGEST_BASE_URL", "http://127.0.0.1:8288/"),
        ]);
        let (sinks, log) = choose(&vars, &dir);
        let sinks = sinks.unwrap();
        assert_eq!(
            sinks.objects.describe(),
            "S3 bucket voice at http://127.0.0.1:9000 (region us-east-1, path-style)"
        );
        assert_eq!(
            sinks.events.describe(),
            "Inngest at http://127.0.0.1:8288/e/***"
        );
        let lines: Vec<&str> = log.lines().map(str::trim).collect();
        assert_eq!(
            lines,
            [
                "INFO voice files go to S3 bucket voice at http://127.0.0.1:9000 (region us-east-1, path-style)",
                "INFO voice events go to Inngest at http://127.0.0.1:8288/e/***",
            ],
            "{log}"
        );
        assert!(!dir.exists(), "no local file when S3 and Inngest are used");
    }

    #[test]
    fn the_embedded_store_defaults_to_local_files() {
        let dir = data_dir("local");
        let (sinks, log) = choose(&[], &dir);
        let sinks = sinks.unwrap();
        let voice = std::fs::canonicalize(dir.join("voice")).unwrap();
        assert_eq!(
            sinks.objects.describe(),
            format!("the local directory {}", voice.display())
        );
        assert_eq!(
            sinks.events.describe(),
            format!("the local file {}", dir.join("events.jsonl").display())
        );
        let lines: Vec<&str> = log.lines().map(str::trim).collect();
        assert_eq!(lines.len(), 2, "{log}");
        assert!(lines[0].starts_with("INFO voice files go to the local directory "));
        assert!(lines[0].ends_with("(the embedded store's default: S3_BUCKET, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set)"));
        assert!(lines[1].starts_with("INFO voice events go to the local file "));
        assert!(lines[1].ends_with("(the embedded store's default: INNGEST_EVENT_KEY is not set)"));
        for path in [dir.clone(), voice] {
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700, "{}", path.display());
        }
        std::fs::remove_dir_all(dir).unwrap();

        // Each sink on its own: S3 configured, Inngest not.
        let dir = data_dir("mixed");
        let sinks = choose(&s3_vars(), &dir).0.unwrap();
        assert!(sinks.objects.describe().starts_with("S3 bucket voice"));
        assert!(sinks.events.describe().starts_with("the local file "));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn half_a_configuration_is_an_error_in_both_modes() {
        let dir = data_dir("partial");
        let (sinks, _) = choose(
            &[("S3_BUCKET", "voice"), ("S3_ENDPOINT", "http://minio:9000")],
            &dir,
        );
        assert_eq!(
            sinks.unwrap_err(),
            "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY: required with S3_BUCKET, S3_ENDPOINT (S3 is partly configured; unset them all to keep voice files in DATA_DIR/voice)"
        );
        let (sinks, _) = choose(
            &[
                ("AWS_SECRET_ACCESS_KEY", SECRETS[0]),
                ("INNGEST_BASE_URL", "http://127.0.0.1:8288"),
            ],
            &dir,
        );
        let error = sinks.unwrap_err();
        assert_eq!(error.lines().count(), 1);
        assert!(
            error.starts_with("S3_BUCKET, AWS_ACCESS_KEY_ID: required with AWS_SECRET_ACCESS_KEY"),
            "{error}"
        );
        assert!(
            error.ends_with("; INNGEST_EVENT_KEY: required with INNGEST_BASE_URL (unset it to keep events in DATA_DIR/events.jsonl)"),
            "{error}"
        );
        let (sinks, _) = choose(&[("S3_BUCKET", "voice"), DATABASE, INNGEST], &dir);
        assert!(
            sinks.unwrap_err().starts_with(
                "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY: required with DATABASE_URL"
            )
        );
        assert!(!dir.exists());
    }
}
