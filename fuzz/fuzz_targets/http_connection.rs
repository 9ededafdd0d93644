//! Arbitrary bytes, split at arbitrary points, into the health server's connection and
//! router: no panic, bounded memory, and every answer a well-formed HTTP/1.1 response.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use telegram_bots_core::health::Health;
use telegram_bots_core::http::{HttpConnection, MAX_HEAD_BYTES};

fuzz_target!(|data: &[u8]| {
    let Some((&split, data)) = data.split_first() else {
        return;
    };
    let t0 = Instant::now();
    let mut health = Health::new();
    health.set_serving();
    let mut conn = HttpConnection::new(t0);
    let step = usize::from(split).max(1);
    let mut written = Vec::new();
    for (i, chunk) in data.chunks(step).enumerate() {
        let now = t0 + Duration::from_millis(i as u64);
        conn.handle_read(chunk, now);
        if let Some(request) = conn.poll_request() {
            let response = health.respond(&request, now, None);
            conn.respond_to(&request, &response, now);
        }
        while let Some(out) = conn.poll_transmit() {
            let n = out.len().min(step);
            written.extend_from_slice(&out[..n]);
            conn.advance_transmit(n, now);
        }
    }
    conn.handle_eof();
    conn.handle_timeout(t0 + Duration::from_secs(3600));
    while let Some(out) = conn.poll_transmit() {
        let n = out.len();
        written.extend_from_slice(out);
        conn.advance_transmit(n, t0);
    }
    if !written.is_empty() {
        assert!(
            written.starts_with(b"HTTP/1.1 "),
            "{:?}",
            String::from_utf8_lossy(&written)
        );
        assert!(written.windows(4).any(|w| w == b"\r\n\r\n"));
    }
    assert!(written.len() < MAX_HEAD_BYTES + 64 * 1024);
});
