//! CPU time and peak memory of a process, read from `/proc/<pid>/stat` and `status`, so
//! the daemon's cost is measured alone, apart from the bench's own work.

use std::time::Duration;

/// A reading of a process's CPU time, in two ways: `utime + stime` from
/// `/proc/<pid>/stat` (every thread, live or exited, in clock ticks of usually 10 ms) and
/// the sum of its live threads' `schedstat` run times (nanoseconds).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuSample {
    pub ticks: Duration,
    pub threads: Option<Duration>,
}

impl CpuSample {
    /// CPU time used since `before`: the nanosecond figure, unless the tick figure is
    /// larger by more than its resolution (a thread that used CPU has exited since).
    pub fn since(&self, before: &CpuSample) -> Duration {
        let ticks = self.ticks.saturating_sub(before.ticks);
        let tick = Duration::from_secs_f64(2.0 / ticks_per_second());
        match self.threads.zip(before.threads) {
            Some((a, b)) if ticks <= a.saturating_sub(b) + tick => a.saturating_sub(b),
            _ => ticks,
        }
    }
}

/// The CPU time of `pid` so far, or `None` when the process is gone or `/proc` is not
/// there.
pub fn cpu_time(pid: u32) -> Option<CpuSample> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let ticks = cpu_ticks(&text)?;
    Some(CpuSample {
        ticks: Duration::from_secs_f64(ticks as f64 / ticks_per_second()),
        threads: threads_run_time(pid),
    })
}

/// The sum of the first `schedstat` field (time on the CPU, ns) of every live thread.
fn threads_run_time(pid: u32) -> Option<Duration> {
    let mut total = 0u64;
    for entry in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let path = entry.ok()?.path().join("schedstat");
        let text = std::fs::read_to_string(path).ok()?;
        total += text.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(Duration::from_nanos(total))
}

/// The kernel's clock ticks per second (`CLK_TCK`), 100 on Linux unless told otherwise.
fn ticks_per_second() -> f64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(t)) if t > 0 => t as f64,
        _ => 100.0,
    }
}

/// `utime + stime` from a `/proc/<pid>/stat` line. The command name in parentheses may hold
/// spaces, so fields are counted after its closing parenthesis.
pub fn cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3 of the line, utime 14 and stime 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Peak resident memory of `pid` in KiB (`VmHWM`).
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status_kib(&text, "VmHWM:")
}

/// A `kB` value from `/proc/<pid>/status`.
pub fn status_kib(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_user_plus_system_even_with_spaces_in_the_name() {
        let stat = "4242 (botbus run) S 1 4242 4242 0 -1 4194560 900 0 0 0 37 5 0 0 20 0 \
                    6 0 123456 20000000 2500 18446744073709551615";
        assert_eq!(cpu_ticks(stat), Some(42));
        assert_eq!(cpu_ticks("garbage"), None);
    }

    #[test]
    fn thread_run_time_counts_unless_ticks_show_more() {
        let ms = Duration::from_millis;
        let before = CpuSample {
            ticks: ms(100),
            threads: Some(ms(103)),
        };
        let close = CpuSample {
            ticks: ms(110),
            threads: Some(ms(107)),
        };
        assert_eq!(close.since(&before), ms(4));
        let exited = CpuSample {
            ticks: ms(200),
            threads: Some(ms(110)),
        };
        assert_eq!(exited.since(&before), ms(100));
        let no_threads = CpuSample {
            ticks: ms(130),
            threads: None,
        };
        assert_eq!(no_threads.since(&before), ms(30));
    }

    #[test]
    fn peak_rss_comes_from_vmhwm() {
        let status = "Name:\tbotbus\nVmPeak:\t  90000 kB\nVmHWM:\t    9876 kB\nVmRSS:\t 9000 kB\n";
        assert_eq!(status_kib(status, "VmHWM:"), Some(9876));
        assert_eq!(status_kib(status, "VmSwap:"), None);
    }

    #[test]
    fn this_process_has_a_cpu_time_and_a_peak_rss() {
        let me = std::process::id();
        assert!(cpu_time(me).is_some());
        assert!(peak_rss_kib(me).is_some_and(|k| k > 0));
    }
}
