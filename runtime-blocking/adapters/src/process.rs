//! Process statistics from Linux's `/proc`, for the `process_*` metrics.

use std::fs;

use telegram_bots_core::metrics::ProcessSample;

/// Linux reports CPU times in clock ticks of `USER_HZ`, which is 100 on every
/// architecture the service is built for.
const TICKS_PER_SECOND: f64 = 100.0;

/// Reads the current sample; `None` where `/proc` is not there (not Linux).
pub fn sample() -> Option<ProcessSample> {
    let stat = fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let field = |n: usize| -> Option<f64> { fields.get(n - 3)?.parse().ok() };
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let status_kib = |key: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(key))?;
        line.split_whitespace().nth(1)?.parse().ok()
    };
    let boot_time: f64 = fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    let max_fds = fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
            line.split_whitespace().nth(3)?.parse().ok()
        })
        .unwrap_or(0);
    Some(ProcessSample {
        cpu_seconds: (field(14)? + field(15)?) / TICKS_PER_SECOND,
        resident_memory_bytes: status_kib("VmRSS:")? * 1024,
        virtual_memory_bytes: status_kib("VmSize:")? * 1024,
        open_fds: fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64),
        max_fds,
        threads: status_kib("Threads:")?,
        start_time_seconds: boot_time + field(22)? / TICKS_PER_SECOND,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn sample_reads_this_process() {
        let s = super::sample().expect("/proc is readable on Linux");
        assert!(s.resident_memory_bytes > 0 && s.virtual_memory_bytes >= s.resident_memory_bytes);
        assert!(s.threads >= 1 && s.open_fds >= 3 && s.max_fds >= s.open_fds);
        assert!(s.start_time_seconds > 1.6e9);
    }
}
