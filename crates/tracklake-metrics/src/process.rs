//! The process's memory and CPU time, from `/proc/self` (Linux; elsewhere
//! these two metrics stay absent).

use crate::names::{PROCESS_CPU, PROCESS_RSS};

pub fn record() {
    #[cfg(target_os = "linux")]
    {
        // statm: sizes in pages; the second field is resident.
        if let Some(pages) = std::fs::read_to_string("/proc/self/statm")
            .ok()
            .and_then(|s| s.split_whitespace().nth(1)?.parse::<f64>().ok())
        {
            metrics::gauge!(PROCESS_RSS).set(pages * page_size());
        }
        if let Some(seconds) = cpu_seconds() {
            metrics::gauge!(PROCESS_CPU).set(seconds);
        }
    }
}

/// CPU time the process used so far (user and system), in seconds, to
/// 10 ms; None where `/proc/self/stat` cannot be read.
pub fn cpu_seconds() -> Option<f64> {
    // stat: utime and stime are fields 14 and 15, in clock ticks (100 Hz
    // on every Linux tracklake runs on); the command name may hold spaces,
    // so count from after its closing parenthesis.
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

#[cfg(target_os = "linux")]
fn page_size() -> f64 {
    4096.0
}
