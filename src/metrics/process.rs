//! The standard `process_*` metrics of the canaryd process itself (the names every Prometheus
//! client library exports): resident and virtual memory, CPU seconds, open and maximum file
//! descriptors, start time. Read from `/proc/self` at each scrape; on a system without `/proc`
//! (or a value that cannot be read) the family is left out rather than exported as 0.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

/// Clock ticks per second of `/proc/<pid>/stat`'s times: `USER_HZ`, 100 on every Linux
/// architecture canaryd builds for.
const TICKS_PER_SECOND: f64 = 100.0;

/// What one scrape reads.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct ProcessStats {
    pub(crate) cpu_seconds: Option<f64>,
    pub(crate) resident_bytes: Option<f64>,
    pub(crate) virtual_bytes: Option<f64>,
    pub(crate) open_fds: Option<f64>,
    pub(crate) max_fds: Option<f64>,
    pub(crate) start_time_seconds: Option<f64>,
}

/// Parses `/proc/self/stat` (user and system time, start time in ticks since boot, virtual
/// size), `/proc/self/status` (`VmRSS`), `/proc/self/limits` (open files) and `/proc/stat`
/// (`btime`). Garbage in any of them gives `None` for what it held, never a panic.
pub(crate) fn parse(stat: &str, status: &str, limits: &str, proc_stat: &str) -> ProcessStats {
    // The command name (field 2) is in parentheses and may hold spaces: count from the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // After ')': field 3 (state) is index 0, so field n is index n - 3.
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok());
    let cpu_seconds = match (field(14), field(15)) {
        (Some(u), Some(s)) => Some((u + s) / TICKS_PER_SECOND),
        _ => None,
    };
    let boot = proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse::<f64>().ok());
    let start_time_seconds = match (boot, field(22)) {
        (Some(b), Some(t)) => Some(b + t / TICKS_PER_SECOND),
        _ => None,
    };
    let resident_bytes = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|kb| kb * 1024.0);
    let max_fds = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok());
    ProcessStats {
        cpu_seconds,
        resident_bytes,
        virtual_bytes: field(23),
        open_fds: None,
        max_fds,
        start_time_seconds,
    }
}

fn read() -> ProcessStats {
    let file = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let mut stats = parse(
        &file("/proc/self/stat"),
        &file("/proc/self/status"),
        &file("/proc/self/limits"),
        &file("/proc/stat"),
    );
    stats.open_fds = std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|d| d.count() as f64);
    stats
}

/// The `process_*` families, read at each scrape.
#[derive(Debug, Default)]
pub(crate) struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = read();
        if let Some(v) = s.cpu_seconds {
            let c = ConstCounter::new(v);
            let m = encoder.encode_descriptor(
                "process_cpu",
                "Total user and system CPU time spent",
                Some(&Unit::Seconds),
                c.metric_type(),
            )?;
            c.encode(m)?;
        }
        let gauges: [(&str, &str, Option<Unit>, Option<f64>); 5] = [
            (
                "process_resident_memory",
                "Resident memory size",
                Some(Unit::Bytes),
                s.resident_bytes,
            ),
            (
                "process_virtual_memory",
                "Virtual memory size",
                Some(Unit::Bytes),
                s.virtual_bytes,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors",
                None,
                s.open_fds,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors",
                None,
                s.max_fds,
            ),
            (
                "process_start_time",
                "Start time of the process since the Unix epoch",
                Some(Unit::Seconds),
                s.start_time_seconds,
            ),
        ];
        for (name, help, unit, value) in gauges {
            if let Some(v) = value {
                let g = ConstGauge::new(v);
                let m = encoder.encode_descriptor(name, help, unit.as_ref(), g.metric_type())?;
                g.encode(m)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_are_read_as_the_kernel_writes_them_and_garbage_is_left_out() {
        let stat = "4242 (canaryd (x) y) S 1 4242 4242 0 -1 4194560 5000 0 0 0 250 130 0 0 20 0 9 0 123456 104857600 2560 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        let status = "Name:\tcanaryd\nVmRSS:\t   51200 kB\nThreads:\t9\n";
        let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 524288               files\n";
        let s = parse(stat, status, limits, "cpu 1 2 3\nbtime 1796428800\n");
        assert_eq!(s.cpu_seconds, Some(3.8));
        assert_eq!(s.resident_bytes, Some(51200.0 * 1024.0));
        assert_eq!(s.virtual_bytes, Some(104_857_600.0));
        assert_eq!(s.max_fds, Some(1024.0));
        assert_eq!(s.start_time_seconds, Some(1_796_428_800.0 + 1234.56));
        assert_eq!(
            parse("garbage", "", "Max open files unlimited", ""),
            ProcessStats::default()
        );
        assert_eq!(
            parse(")", "VmRSS: x kB", "", "btime y"),
            ProcessStats::default()
        );
    }
}
