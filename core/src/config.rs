//! The service's configuration, parsed from its environment.
//!
//! Parsing is pure: a map of variables in, a typed [`Config`] or every problem out, each
//! problem one line that names its variable. Values of secret variables never appear in
//! an error or in `Debug` output.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;

use base64::Engine as _;

use crate::secret::{Secret, SecretUrl};
use crate::updates::MediaKinds;

/// Where the health server listens unless `HEALTH_ADDR` says otherwise.
pub const DEFAULT_HEALTH_ADDR: &str = "0.0.0.0:8002";
/// Where the embedded store lives unless `DATA_DIR` says otherwise.
pub const DEFAULT_DATA_DIR: &str = "telegram-bots-data";
/// Inngest Cloud's event endpoint.
pub const DEFAULT_INNGEST_BASE_URL: &str = "https://inn.gs";
/// Three calls in flight keep up with hundreds of voice messages a second to a nearby S3
/// and Inngest, and keep the production process at eight threads whatever the fleet's
/// size; far-away endpoints (tens of ms a call) want more.
pub const DEFAULT_VOICE_SINK_THREADS: usize = 3;

/// Every variable the service reads, for `--help` and the README.
pub const VARIABLES: &[(&str, &str)] = &[
    (
        "HEALTH_ADDR",
        "address of /healthz, /readyz and /metrics (default 0.0.0.0:8002)",
    ),
    ("LOG_LEVEL", "error, warn, info (default), debug or trace"),
    (
        "LOG_FORMAT",
        "text (default, for people) or json (one object per line, for log collectors)",
    ),
    (
        "DATABASE_URL",
        "PostgreSQL URL of the integrations store (secret)",
    ),
    (
        "ENCRYPTION_KEY",
        "base64 of the 32-byte key that seals bot tokens and auth keys (secret)",
    ),
    (
        "ENCRYPTION_KEY_PREVIOUS",
        "the key before ENCRYPTION_KEY, still read during a rotation (secret)",
    ),
    ("INNGEST_EVENT_KEY", "Inngest event key (secret)"),
    (
        "INNGEST_BASE_URL",
        "Inngest event API base URL (default https://inn.gs)",
    ),
    ("AWS_ACCESS_KEY_ID", "S3 access key id"),
    ("AWS_SECRET_ACCESS_KEY", "S3 secret access key (secret)"),
    ("S3_BUCKET", "bucket for voice messages"),
    ("S3_REGION", "S3 region (default us-east-1)"),
    (
        "MEDIA_KINDS",
        "what counts as a voice message: voice (default), plus audio and video_note, comma-separated",
    ),
    (
        "S3_ENDPOINT",
        "URL of an S3-compatible store instead of AWS",
    ),
    (
        "VOICE_SINK_THREADS",
        "threads making the S3 and Inngest calls, 1 to 64 (default 3)",
    ),
    ("TELEGRAM_API_ID", "Telegram API id (a positive integer)"),
    (
        "TELEGRAM_API_HASH",
        "Telegram API hash, 32 hex digits (secret)",
    ),
    (
        "BOTS_FILE",
        "TOML file with one [[bot]] table (workspace_id, token) per bot",
    ),
    (
        "DATA_DIR",
        "directory of the embedded store when DATABASE_URL is unset (default telegram-bots-data)",
    ),
    (
        "TELEGRAM_DC_ADDRS",
        "DC addresses, e.g. 1=127.0.0.1:4431,2=127.0.0.1:4432 (default Telegram's)",
    ),
    (
        "TELEGRAM_RSA_PUBLIC_KEY",
        "PEM file of an extra RSA key to trust (a test DC's)",
    ),
    (
        "TELEGRAM_BIND_ADDR",
        "local IP address for connections to Telegram (default: the system's choice)",
    ),
];

/// Telegram's production DCs (IPv4), as its clients ship them.
pub const TELEGRAM_DCS: [(i32, &str); 5] = [
    (1, "149.154.175.53:443"),
    (2, "149.154.167.51:443"),
    (3, "149.154.175.100:443"),
    (4, "149.154.167.91:443"),
    (5, "91.108.56.130:443"),
];

/// How much the service logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

/// How log lines are written (to standard error).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// One line of text per event, for a person at a terminal.
    #[default]
    Text,
    /// One JSON object per line, with the event's fields as keys, for a log collector.
    Json,
}

/// The parsed configuration. Optional parts are `None` when their variables are unset;
/// the features that need them say so when they start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub health_addr: SocketAddr,
    pub log_level: LogLevel,
    pub log_format: LogFormat,
    pub database_url: Option<SecretUrl>,
    pub encryption_key: Option<Secret<[u8; 32]>>,
    pub encryption_key_previous: Option<Secret<[u8; 32]>>,
    pub inngest_event_key: Option<Secret<String>>,
    pub inngest_base_url: String,
    pub aws_access_key_id: Option<String>,
    pub aws_secret_access_key: Option<Secret<String>>,
    pub s3_bucket: Option<String>,
    pub s3_region: String,
    pub s3_endpoint: Option<String>,
    /// Which media go through the voice pipeline.
    pub media_kinds: MediaKinds,
    /// Threads making the sinks' blocking calls (S3, Inngest, or the local files).
    pub voice_sink_threads: usize,
    pub telegram_api_id: Option<i32>,
    pub telegram_api_hash: Option<Secret<String>>,
    pub bots_file: Option<String>,
    /// Where the embedded store lives when there is no `DATABASE_URL`.
    pub data_dir: String,
    pub telegram_dc_addrs: BTreeMap<i32, SocketAddr>,
    pub telegram_rsa_public_key: Option<String>,
    /// The local address of outgoing Telegram connections (a multi-homed host).
    pub telegram_bind_addr: Option<std::net::IpAddr>,
}

/// One bad or missing variable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub variable: &'static str,
    /// What is wrong, never quoting a secret's value.
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.variable, self.problem)
    }
}

impl std::error::Error for ConfigError {}

/// All the problems found, one per variable, in the order of [`VARIABLES`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "configuration error: {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl Config {
    /// Parses the environment given as name/value pairs (`std::env::vars()` in a runtime).
    pub fn from_env<I, K, V>(vars: I) -> Result<Config, ConfigErrors>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let env: BTreeMap<String, String> = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        let mut p = Parser {
            env: &env,
            errors: Vec::new(),
        };
        let config = Config {
            health_addr: p
                .parse("HEALTH_ADDR", parse_socket_addr)
                .unwrap_or_else(|| DEFAULT_HEALTH_ADDR.parse().expect("valid default")),
            log_level: p
                .parse("LOG_LEVEL", parse_log_level)
                .unwrap_or(LogLevel::Info),
            log_format: p.parse("LOG_FORMAT", parse_log_format).unwrap_or_default(),
            database_url: p.parse("DATABASE_URL", parse_database_url),
            encryption_key: p.parse("ENCRYPTION_KEY", parse_key32),
            encryption_key_previous: p.parse("ENCRYPTION_KEY_PREVIOUS", parse_key32),
            inngest_event_key: p.parse("INNGEST_EVENT_KEY", |v| Ok(Secret::new(v.to_owned()))),
            inngest_base_url: p
                .parse("INNGEST_BASE_URL", parse_http_url)
                .unwrap_or_else(|| DEFAULT_INNGEST_BASE_URL.to_owned()),
            aws_access_key_id: p.parse("AWS_ACCESS_KEY_ID", |v| Ok(v.to_owned())),
            aws_secret_access_key: p
                .parse("AWS_SECRET_ACCESS_KEY", |v| Ok(Secret::new(v.to_owned()))),
            s3_bucket: p.parse("S3_BUCKET", |v| Ok(v.to_owned())),
            s3_region: p
                .parse("S3_REGION", |v| Ok(v.to_owned()))
                .unwrap_or_else(|| "us-east-1".to_owned()),
            s3_endpoint: p.parse("S3_ENDPOINT", parse_http_url),
            media_kinds: p
                .parse("MEDIA_KINDS", MediaKinds::parse)
                .unwrap_or_default(),
            voice_sink_threads: p
                .parse("VOICE_SINK_THREADS", parse_sink_threads)
                .unwrap_or(DEFAULT_VOICE_SINK_THREADS),
            telegram_api_id: p.parse("TELEGRAM_API_ID", parse_api_id),
            telegram_api_hash: p.parse("TELEGRAM_API_HASH", parse_api_hash),
            bots_file: p.parse("BOTS_FILE", |v| Ok(v.to_owned())),
            data_dir: p
                .parse("DATA_DIR", |v| Ok(v.to_owned()))
                .unwrap_or_else(|| DEFAULT_DATA_DIR.to_owned()),
            telegram_dc_addrs: p
                .parse("TELEGRAM_DC_ADDRS", parse_dc_addrs)
                .unwrap_or_else(|| {
                    TELEGRAM_DCS
                        .iter()
                        .map(|(id, a)| (*id, a.parse().expect("valid constant")))
                        .collect()
                }),
            telegram_rsa_public_key: p.parse("TELEGRAM_RSA_PUBLIC_KEY", |v| Ok(v.to_owned())),
            telegram_bind_addr: p.parse("TELEGRAM_BIND_ADDR", |v| {
                v.parse()
                    .map_err(|_| format!("{v:?} is not an IP address like 127.0.0.2 or ::1"))
            }),
        };
        if p.errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(p.errors))
        }
    }
}

struct Parser<'a> {
    env: &'a BTreeMap<String, String>,
    errors: Vec<ConfigError>,
}

impl Parser<'_> {
    /// Parses `variable` if it is set. A set but empty variable is an error: an empty
    /// value in a Kubernetes secret is a mistake, not a wish for the default.
    fn parse<T>(
        &mut self,
        variable: &'static str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let value = self.env.get(variable)?;
        let result = if value.trim().is_empty() {
            Err("is set but empty".to_owned())
        } else {
            parse(value.trim())
        };
        result
            .map_err(|problem| self.errors.push(ConfigError { variable, problem }))
            .ok()
    }
}

fn parse_socket_addr(v: &str) -> Result<SocketAddr, String> {
    v.parse()
        .map_err(|_| format!("{v:?} is not an address like 0.0.0.0:8002 or [::]:8002"))
}

fn parse_log_level(v: &str) -> Result<LogLevel, String> {
    match v.to_ascii_lowercase().as_str() {
        "error" => Ok(LogLevel::Error),
        "warn" | "warning" => Ok(LogLevel::Warn),
        "info" => Ok(LogLevel::Info),
        "debug" => Ok(LogLevel::Debug),
        "trace" => Ok(LogLevel::Trace),
        _ => Err(format!(
            "{v:?} is not one of error, warn, info, debug, trace"
        )),
    }
}

fn parse_log_format(v: &str) -> Result<LogFormat, String> {
    match v.to_ascii_lowercase().as_str() {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err(format!("{v:?} is not one of text, json")),
    }
}

fn parse_database_url(v: &str) -> Result<SecretUrl, String> {
    let is_url = v.starts_with("postgres://") || v.starts_with("postgresql://");
    let is_keywords = !v.contains("://") && v.contains('=');
    if is_url || is_keywords {
        Ok(SecretUrl::new(v.to_owned()))
    } else {
        Err("is neither a postgres:// URL nor a key=value connection string".to_owned())
    }
}

fn parse_key32(v: &str) -> Result<Secret<[u8; 32]>, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(v)
        .map_err(|_| "is not valid base64 (make one with: openssl rand -base64 32)".to_owned())?;
    let len = bytes.len();
    let key: [u8; 32] = bytes
        .try_into()
        .map_err(|_| format!("decodes to {len} bytes, expected 32 (openssl rand -base64 32)"))?;
    Ok(Secret::new(key))
}

fn parse_http_url(v: &str) -> Result<String, String> {
    let rest = v
        .strip_prefix("https://")
        .or_else(|| v.strip_prefix("http://"))
        .ok_or_else(|| format!("{v:?} is not an http:// or https:// URL"))?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(format!("{v:?} has no host"));
    }
    Ok(v.trim_end_matches('/').to_owned())
}

fn parse_dc_addrs(v: &str) -> Result<BTreeMap<i32, SocketAddr>, String> {
    let mut dcs = BTreeMap::new();
    for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let parsed = part.split_once('=').and_then(|(id, addr)| {
            Some((
                id.trim().parse::<i32>().ok().filter(|id| *id > 0)?,
                addr.trim().parse::<SocketAddr>().ok()?,
            ))
        });
        let Some((id, addr)) = parsed else {
            return Err(format!(
                "{part:?} is not DC=HOST:PORT (e.g. 2=127.0.0.1:4432)"
            ));
        };
        if dcs.insert(id, addr).is_some() {
            return Err(format!("DC {id} is given twice"));
        }
    }
    if dcs.is_empty() {
        return Err("names no DC".into());
    }
    Ok(dcs)
}

fn parse_sink_threads(v: &str) -> Result<usize, String> {
    match v.parse::<usize>() {
        Ok(n @ 1..=64) => Ok(n),
        _ => Err(format!("{v:?} is not a number of threads from 1 to 64")),
    }
}

fn parse_api_id(v: &str) -> Result<i32, String> {
    match v.parse::<i32>() {
        Ok(id) if id > 0 => Ok(id),
        _ => Err(format!("{v:?} is not a positive integer")),
    }
}

fn parse_api_hash(v: &str) -> Result<Secret<String>, String> {
    if v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(Secret::new(v.to_ascii_lowercase()))
    } else {
        Err("is not 32 hexadecimal digits".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(vars: &[(&str, &str)]) -> Result<Config, ConfigErrors> {
        Config::from_env(vars.iter().map(|&(k, v)| (k, v)))
    }

    #[test]
    fn empty_environment_gives_defaults() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.health_addr, "0.0.0.0:8002".parse().unwrap());
        assert_eq!(c.log_level, LogLevel::Info);
        assert_eq!(c.log_format, LogFormat::Text);
        assert_eq!(c.inngest_base_url, "https://inn.gs");
        assert_eq!(c.s3_region, "us-east-1");
        assert!(c.database_url.is_none() && c.encryption_key.is_none());
        assert_eq!(c.telegram_dc_addrs.len(), 5);
        assert_eq!(c.data_dir, "telegram-bots-data");
    }

    #[test]
    fn the_log_format_is_text_or_json() {
        for (value, format) in [
            ("text", LogFormat::Text),
            ("json", LogFormat::Json),
            ("JSON", LogFormat::Json),
            (" json ", LogFormat::Json),
        ] {
            let c = parse(&[("LOG_FORMAT", value)]).unwrap();
            assert_eq!(c.log_format, format, "{value:?}");
        }
        for bad in ["xml", "logfmt", ""] {
            let err = parse(&[("LOG_FORMAT", bad)]).unwrap_err();
            assert_eq!(err.0.len(), 1, "{bad:?}");
            assert_eq!(err.0[0].variable, "LOG_FORMAT", "{bad:?}");
        }
        assert_eq!(
            parse(&[("LOG_FORMAT", "xml")]).unwrap_err().to_string(),
            "configuration error: LOG_FORMAT: \"xml\" is not one of text, json"
        );
    }

    #[test]
    fn dc_addresses_parse_and_refuse_nonsense() {
        let c = parse(&[("TELEGRAM_DC_ADDRS", "1=127.0.0.1:4431, 2=127.0.0.1:4432")]).unwrap();
        assert_eq!(c.telegram_dc_addrs[&2], "127.0.0.1:4432".parse().unwrap());
        for bad in [
            "1=localhost:1",
            "x=1.2.3.4:5",
            "1=1.2.3.4:5,1=1.2.3.4:6",
            ",",
        ] {
            let err = parse(&[("TELEGRAM_DC_ADDRS", bad)]).unwrap_err();
            assert_eq!(err.0[0].variable, "TELEGRAM_DC_ADDRS", "{bad}");
        }
    }

    #[test]
    fn sink_threads_are_a_small_count() {
        assert_eq!(parse(&[]).unwrap().voice_sink_threads, 3);
        let c = parse(&[("VOICE_SINK_THREADS", "16")]).unwrap();
        assert_eq!(c.voice_sink_threads, 16);
        for bad in ["0", "65", "many", "-1"] {
            let err = parse(&[("VOICE_SINK_THREADS", bad)]).unwrap_err();
            assert_eq!(err.0[0].variable, "VOICE_SINK_THREADS", "{bad}");
        }
    }

    #[test]
    fn the_local_address_for_telegram_is_an_ip() {
        let c = parse(&[("TELEGRAM_BIND_ADDR", "127.0.0.2")]).unwrap();
        assert_eq!(c.telegram_bind_addr, Some("127.0.0.2".parse().unwrap()));
        let err = parse(&[("TELEGRAM_BIND_ADDR", "127.0.0.2:80")]).unwrap_err();
        assert_eq!(err.0[0].variable, "TELEGRAM_BIND_ADDR");
    }

    #[test]
    fn every_bad_variable_is_named_once() {
        let err = parse(&[
            ("HEALTH_ADDR", "8002"),
            ("LOG_LEVEL", "loud"),
            ("LOG_FORMAT", "xml"),
            ("ENCRYPTION_KEY", "c2hvcnQ="),
            ("TELEGRAM_API_ID", "-5"),
            ("INNGEST_BASE_URL", "inn.gs"),
            ("S3_BUCKET", ""),
        ])
        .unwrap_err();
        let vars: Vec<_> = err.0.iter().map(|e| e.variable).collect();
        assert_eq!(
            vars,
            [
                "HEALTH_ADDR",
                "LOG_LEVEL",
                "LOG_FORMAT",
                "ENCRYPTION_KEY",
                "INNGEST_BASE_URL",
                "S3_BUCKET",
                "TELEGRAM_API_ID"
            ]
        );
        let text = err.to_string();
        assert_eq!(text.lines().count(), 7);
        assert!(text.contains("ENCRYPTION_KEY: decodes to 5 bytes, expected 32"));
        assert!(text.lines().all(|l| l.starts_with("configuration error: ")));
    }

    #[test]
    fn secrets_stay_out_of_debug_and_errors() {
        let key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
        let c = parse(&[
            ("DATABASE_URL", "postgres://app:pa55word@db:5432/bots"),
            ("ENCRYPTION_KEY", key),
            ("INNGEST_EVENT_KEY", "evt-key-123"),
            ("AWS_SECRET_ACCESS_KEY", "aws-secret-456"),
            ("TELEGRAM_API_HASH", "0123456789abcdef0123456789ABCDEF"),
        ])
        .unwrap();
        assert_eq!(c.encryption_key.as_ref().unwrap().expose()[31], 31);
        let debug = format!("{c:?}");
        for secret in [
            "pa55word",
            key,
            "evt-key-123",
            "aws-secret-456",
            "0123456789abcdef",
        ] {
            assert!(!debug.contains(secret), "{secret} leaked in {debug}");
        }
        assert!(debug.contains("postgres://app:***@db:5432/bots"));

        let err = parse(&[
            ("ENCRYPTION_KEY", "not-base64-secret!"),
            ("DATABASE_URL", "mysql://u:topsecret@h/db"),
            ("TELEGRAM_API_HASH", "secret-hash"),
        ])
        .unwrap_err()
        .to_string();
        for secret in ["not-base64-secret", "topsecret", "secret-hash"] {
            assert!(!err.contains(secret), "{secret} leaked in {err}");
        }
    }
}
