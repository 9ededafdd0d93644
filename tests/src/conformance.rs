//! The health-surface conformance suite. Each runtime's `tests/conformance.rs` expands
//! [`conformance_suite!`](crate::conformance_suite) with its own binary, so both are held
//! to the very same assertions.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::http::{self, Reply};
use crate::process::find_executable;
use crate::service::{Service, run_to_exit};

/// A generous bound for start-up on a loaded 2-core machine.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);
/// The bound the tests allow for a stop; the measured figure is in docs/benchmarks.md.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Expands to one `#[test]` per conformance check for `$binary` (a path expression,
/// normally `env!("CARGO_BIN_EXE_...")`).
#[macro_export]
macro_rules! conformance_suite {
    ($binary:expr) => {
        $crate::conformance_suite!(@tests $binary;
            endpoints, head_requests, refusals, concurrent_connections,
            slow_clients_do_not_block_fast_ones, sigterm_flips_readiness_then_exits_zero,
            sigint_exits_zero, configuration_errors_name_the_variable, help_lists_variables,
            port_in_use_is_a_clear_error, secrets_never_leak,
            a_database_without_s3_and_inngest_is_refused,
            an_unusable_data_dir_stops_the_start, an_unknown_log_format_is_refused);
    };
    (@tests $binary:expr; $($name:ident),*) => {
        $(
            #[test]
            fn $name() {
                $crate::conformance::$name(::std::path::Path::new($binary));
            }
        )*
    };
}

fn started(binary: &Path) -> Service {
    let mut service = Service::start(binary, &[]);
    service.wait_ready(START_TIMEOUT);
    service
}

fn assert_json(reply: &Reply, status: u16, body: serde_json::Value) {
    assert_eq!(reply.status, status, "{}", reply.text());
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.json(), body);
}

/// `/healthz`, `/livez`, `/readyz` and `/metrics` with their bodies and content types.
pub fn endpoints(binary: &Path) {
    let service = started(binary);
    let addr = service.health_addr;
    for path in ["/healthz", "/livez", "/healthz?probe=1"] {
        assert_json(&http::get(addr, path), 200, json!({"status": "ok"}));
    }
    let ready = http::get(addr, "/readyz");
    assert_json(
        &ready,
        200,
        json!({"status": "ready", "bots": 0, "details": []}),
    );
    assert!(
        ready.text().starts_with(r#"{"status":"ready""#),
        "seed's key order"
    );

    let metrics = http::get(addr, "/metrics");
    assert_eq!(metrics.status, 200);
    assert_eq!(
        metrics.header("content-type"),
        Some("text/plain; version=0.0.4")
    );
    let text = metrics.text();
    for line in [
        "telegram_bots_total 0",
        "telegram_bots_ready 1",
        "telegram_bots_in_state{state=\"running\"} 0",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
    }
    for family in [
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
    ] {
        assert!(
            text.contains(&format!("\n{family} ")),
            "no {family} in:\n{text}"
        );
    }
    promtool_check(&text);
}

/// Runs `promtool check metrics` on `text` and fails the test on any complaint.
pub fn promtool_check(text: &str) {
    let promtool = find_executable("promtool")
        .expect("promtool not found: install Debian's `prometheus` package (tests/run does)");
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed ({}):\n{}{}\n--- metrics ---\n{text}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// HEAD answers like GET without a body.
pub fn head_requests(binary: &Path) {
    let service = started(binary);
    for path in ["/healthz", "/readyz", "/metrics"] {
        let get = http::get(service.health_addr, path);
        let head = http::request(service.health_addr, "HEAD", path).unwrap();
        assert_eq!(head.status, 200);
        assert!(head.body.is_empty(), "HEAD {path} has a body");
        assert_eq!(head.header("content-type"), get.header("content-type"));
        if path != "/metrics" {
            // /metrics changes between two scrapes (process figures), the others do not.
            assert_eq!(
                head.header("content-length"),
                Some(get.body.len().to_string().as_str())
            );
        }
    }
}

/// Unknown paths, other methods, malformed and oversized requests are refused, and the
/// server goes on serving.
pub fn refusals(binary: &Path) {
    let service = started(binary);
    let addr = service.health_addr;
    let not_found = http::get(addr, "/");
    assert_json(&not_found, 404, json!({"error": "not found"}));
    assert_eq!(http::get(addr, "/readyz/extra").status, 404);

    for method in ["POST", "PUT", "DELETE", "OPTIONS"] {
        let reply = http::request(addr, method, "/healthz").unwrap();
        assert_eq!(reply.status, 405, "{method}");
        assert_eq!(reply.header("allow"), Some("GET, HEAD"));
    }
    let cases: [(&[u8], u16); 5] = [
        (
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage-tls-hello\r\n\r\n",
            400,
        ),
        (b"GET /healthz HTTP/9.9\r\n\r\n", 400),
        (b"GET healthz HTTP/1.1\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nBad Header Line\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.0\r\n\r\n", 200),
    ];
    for (raw, status) in cases {
        let reply = http::exchange(addr, raw).unwrap();
        assert_eq!(reply.status, status, "{:?}", String::from_utf8_lossy(raw));
    }
    let big = format!(
        "GET /healthz HTTP/1.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    assert_eq!(http::exchange(addr, big.as_bytes()).unwrap().status, 431);
    let many: String = (0..100).map(|i| format!("X-H{i}: v\r\n")).collect();
    let many = format!("GET /healthz HTTP/1.1\r\n{many}\r\n");
    assert_eq!(http::exchange(addr, many.as_bytes()).unwrap().status, 431);
    // A connection closed before a full request does no harm.
    drop(TcpStream::connect(addr).unwrap().write_all(b"GET /hea"));
    assert_json(&http::get(addr, "/healthz"), 200, json!({"status": "ok"}));
}

/// 200 connections open at once are all served.
pub fn concurrent_connections(binary: &Path) {
    const N: usize = 200;
    let service = started(binary);
    let addr = service.health_addr;
    let mut streams: Vec<TcpStream> = (0..N).map(|_| http::connect(addr).unwrap()).collect();
    for stream in &mut streams {
        stream
            .write_all(b"GET /readyz HTTP/1.1\r\nHost: test\r\n\r\n")
            .unwrap();
    }
    let ok = streams
        .iter_mut()
        .map(|s| http::read_reply(s).unwrap())
        .filter(|r| r.status == 200 && r.json()["status"] == "ready")
        .count();
    assert_eq!(ok, N);
}

/// A client that sends nothing, or trickles its request, neither delays others nor keeps
/// its connection for long.
pub fn slow_clients_do_not_block_fast_ones(binary: &Path) {
    let service = started(binary);
    let addr = service.health_addr;
    let silent = http::connect(addr).unwrap();
    let mut trickler = http::connect(addr).unwrap();
    trickler.write_all(b"GET /hea").unwrap();
    let trickle_started = Instant::now();

    let fast = Instant::now();
    assert_json(&http::get(addr, "/healthz"), 200, json!({"status": "ok"}));
    assert!(
        fast.elapsed() < Duration::from_secs(2),
        "fast client waited {:?}",
        fast.elapsed()
    );

    // One byte every 300 ms would take far longer than the server's head deadline.
    let mut sent_all = true;
    for byte in b"lthz HTTP/1.1\r\nHost: slow\r\nX-Padding: ................\r\n\r\n" {
        thread::sleep(Duration::from_millis(300));
        if trickler.write_all(&[*byte]).is_err() {
            sent_all = false;
            break;
        }
        if trickle_started.elapsed() > Duration::from_secs(12) {
            break;
        }
    }
    let reply = http::read_reply(&mut trickler);
    let cut_off = trickle_started.elapsed();
    match reply {
        Ok(reply) => assert_eq!(reply.status, 408, "trickler got {}", reply.text()),
        Err(e) => assert!(!sent_all, "trickler neither answered 408 nor cut off: {e}"),
    }
    assert!(
        cut_off < Duration::from_secs(12),
        "trickler held on for {cut_off:?}"
    );

    let mut silent = silent;
    let mut rest = Vec::new();
    let _ = silent.read_to_end(&mut rest);
    let reply = http::parse_reply(&rest).expect("the silent client gets a response");
    assert_eq!(reply.status, 408);
}

/// SIGTERM: `/readyz` answers 503 at once (seen by a request that was in flight), then
/// the process exits 0.
pub fn sigterm_flips_readiness_then_exits_zero(binary: &Path) {
    let mut service = started(binary);
    let mut in_flight = http::connect(service.health_addr).unwrap();
    in_flight
        .write_all(b"GET /readyz HTTP/1.1\r\nHost: test\r\n")
        .unwrap();
    // The server has the connection once it answers another request made after it.
    assert_eq!(http::get(service.health_addr, "/healthz").status, 200);

    service.signal(libc::SIGTERM);
    let signalled = Instant::now();
    assert!(
        service.wait_for_log("stop signal received", STOP_TIMEOUT),
        "no stop in the log:\n{}",
        service.logs()
    );
    in_flight.write_all(b"\r\n").unwrap();
    let reply = http::read_reply(&mut in_flight).expect("the in-flight request is answered");
    assert_eq!(reply.status, 503, "{}", reply.text());
    let body = reply.json();
    assert_eq!(body["status"], "not ready");
    assert_eq!(body["bots"], 0);

    let status = service.wait_exit(STOP_TIMEOUT).unwrap_or_else(|| {
        panic!(
            "still running {STOP_TIMEOUT:?} after SIGTERM:\n{}",
            service.logs()
        )
    });
    assert_eq!(status.code(), Some(0), "{}", service.logs());
    assert!(signalled.elapsed() < STOP_TIMEOUT);
    assert!(
        service.logs().contains("stopping bots"),
        "{}",
        service.logs()
    );
}

/// SIGINT (Ctrl-C) stops as cleanly as SIGTERM.
pub fn sigint_exits_zero(binary: &Path) {
    let mut service = started(binary);
    service.signal(libc::SIGINT);
    let status = service.wait_exit(STOP_TIMEOUT).expect("exits after SIGINT");
    assert_eq!(status.code(), Some(0), "{}", service.logs());
    assert!(
        TcpStream::connect_timeout(&service.health_addr, Duration::from_millis(500)).is_err(),
        "health port still open after exit"
    );
}

/// Each bad variable is one line naming it, and the exit code is non-zero.
pub fn configuration_errors_name_the_variable(binary: &Path) {
    let (status, out) = run_to_exit(
        binary,
        &[],
        &[
            ("HEALTH_ADDR", "localhost"),
            ("ENCRYPTION_KEY", "dG9vIHNob3J0"),
            ("TELEGRAM_API_ID", "abc"),
        ],
    );
    assert_eq!(status.code(), Some(2), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    for (line, var) in lines
        .iter()
        .zip(["HEALTH_ADDR", "ENCRYPTION_KEY", "TELEGRAM_API_ID"])
    {
        assert!(
            line.contains(&format!("configuration error: {var}: ")),
            "{line}"
        );
    }
    let (status, out) = run_to_exit(binary, &["serve-forever"], &[]);
    assert_eq!(status.code(), Some(2), "unknown subcommand: {out}");
}

/// A data directory for the embedded store that cannot be made (a read-only root
/// filesystem, a missing volume) stops the start with one line naming it: running on
/// would log every bot in again at every start.
pub fn an_unusable_data_dir_stops_the_start(binary: &Path) {
    let (status, out) = run_to_exit(binary, &[], &[("DATA_DIR", "/dev/null/store")]);
    assert_eq!(status.code(), Some(2), "{out}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains("DATA_DIR /dev/null/store: "), "{out}");
}

/// `LOG_FORMAT` is `text` or `json`: anything else is one line naming it, and exit code 2.
pub fn an_unknown_log_format_is_refused(binary: &Path) {
    let (status, out) = run_to_exit(binary, &[], &[("LOG_FORMAT", "xml")]);
    assert_eq!(status.code(), Some(2), "{out}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        out.contains("configuration error: LOG_FORMAT: \"xml\" is not one of text, json"),
        "{out}"
    );
}

/// `--help` exits 0 and documents the subcommand and the variables.
pub fn help_lists_variables(binary: &Path) {
    let (status, out) = run_to_exit(binary, &["--help"], &[]);
    assert!(status.success(), "{out}");
    for word in [
        "run",
        "HEALTH_ADDR",
        "DATABASE_URL",
        "ENCRYPTION_KEY",
        "LOG_LEVEL",
        "LOG_FORMAT",
    ] {
        assert!(out.contains(word), "--help does not mention {word}:\n{out}");
    }
    let (status, out) = run_to_exit(binary, &["run", "--help"], &[]);
    assert!(status.success(), "{out}");
}

/// A taken port stops start-up with a line naming HEALTH_ADDR.
pub fn port_in_use_is_a_clear_error(binary: &Path) {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr: SocketAddr = taken.local_addr().unwrap();
    let (status, out) = run_to_exit(binary, &[], &[("HEALTH_ADDR", &addr.to_string())]);
    assert!(!status.success(), "{out}");
    assert!(out.contains(&format!("HEALTH_ADDR {addr}")), "{out}");
}

/// With `DATABASE_URL`, voice messages must go to S3 and Inngest: a missing setting is
/// one line naming every missing variable and exit code 2, never a silent fallback to
/// the local directory.
pub fn a_database_without_s3_and_inngest_is_refused(binary: &Path) {
    let env = [
        ("DATABASE_URL", "postgres://app@127.0.0.1:1/bots"),
        (
            "ENCRYPTION_KEY",
            "c2VjcmV0LWVuY3J5cHRpb24ta2V5LTMyLWJ5dGVzISE=",
        ),
        ("S3_BUCKET", "voice"),
        ("AWS_SECRET_ACCESS_KEY", "aws-secret-access-key-xyz"),
    ];
    let (status, out) = run_to_exit(binary, &[], &env);
    assert_eq!(status.code(), Some(2), "{out}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        out.contains("AWS_ACCESS_KEY_ID, INNGEST_EVENT_KEY: required with DATABASE_URL"),
        "{out}"
    );
    assert!(!out.contains("aws-secret-access-key-xyz"), "{out}");
}

/// No secret from the environment shows in a log line or a response.
pub fn secrets_never_leak(binary: &Path) {
    let secrets = [
        (
            "DATABASE_URL",
            "postgres://app:Pa55-w0rd-x@127.0.0.1:1/bots",
            "Pa55-w0rd-x",
        ),
        (
            "ENCRYPTION_KEY",
            "c2VjcmV0LWVuY3J5cHRpb24ta2V5LTMyLWJ5dGVzISE=",
            "c2VjcmV0LWVuY3J5cHRpb24ta2V5",
        ),
        (
            "INNGEST_EVENT_KEY",
            "inngest-secret-event-key",
            "inngest-secret-event-key",
        ),
        (
            "AWS_SECRET_ACCESS_KEY",
            "aws-secret-access-key-xyz",
            "aws-secret-access-key-xyz",
        ),
        (
            "TELEGRAM_API_HASH",
            "0123456789abcdef0123456789abcdef",
            "0123456789abcdef",
        ),
    ];
    let mut env: Vec<(&str, &str)> = secrets.iter().map(|&(k, v, _)| (k, v)).collect();
    env.extend([
        ("LOG_LEVEL", "trace"),
        ("S3_BUCKET", "voice"),
        ("S3_ENDPOINT", "http://127.0.0.1:1"),
        ("AWS_ACCESS_KEY_ID", "AKIATESTKEYID"),
    ]);
    let mut service = Service::start(binary, &env);
    // The database is unreachable: the process lives, is not ready, and says why.
    service.wait_healthy(START_TIMEOUT);
    let deadline = std::time::Instant::now() + START_TIMEOUT;
    let ready = loop {
        let ready = http::get(service.health_addr, "/readyz");
        if ready.text().contains("the store") || std::time::Instant::now() > deadline {
            break ready;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(ready.status, 503, "{}", ready.text());
    assert!(
        ready.json()["reason"]
            .as_str()
            .unwrap()
            .starts_with("starting: the store (PostgreSQL postgres://app:***@127.0.0.1:1/bots): "),
        "{}",
        ready.text()
    );
    let mut seen = ready.text();
    for path in ["/healthz", "/readyz", "/metrics", "/nope"] {
        seen.push_str(&http::get(service.health_addr, path).text());
    }
    service.signal(libc::SIGTERM);
    assert_eq!(
        service.wait_exit(STOP_TIMEOUT).and_then(|s| s.code()),
        Some(0)
    );
    seen.push_str(&service.logs());
    for (variable, _, fragment) in secrets {
        assert!(!seen.contains(fragment), "{variable} leaked:\n{seen}");
    }
}
