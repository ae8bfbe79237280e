//! The gateway's CPU time and memory, read from `/proc` (Linux only).

use anyhow::{bail, Context};

/// User + system CPU time of the whole process (all threads), in seconds.
pub fn cpu_secs(pid: u32) -> anyhow::Result<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("cannot read /proc/{pid}/stat"))?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = text
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("unexpected /proc/PID/stat format")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field 14 (utime) and 15 (stime) of proc(5); `rest` starts at field 3.
    let tick = |i: usize| -> anyhow::Result<u64> {
        fields
            .get(i)
            .and_then(|v| v.parse().ok())
            .context("unexpected /proc/PID/stat format")
    };
    let ticks = tick(11)? + tick(12)?;
    Ok(ticks as f64 / clock_ticks() as f64)
}

/// `sysconf(_SC_CLK_TCK)` without libc: `getconf`, else the usual 100.
fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|t| *t > 0)
            .unwrap_or(100)
    })
}

pub struct Memory {
    /// VmRSS: resident now.
    pub rss_kib: u64,
    /// VmHWM: peak resident since start or the last `reset_peak`.
    pub hwm_kib: u64,
}

pub fn status(pid: u32) -> anyhow::Result<Memory> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    let field = |name: &str| -> anyhow::Result<u64> {
        for line in text.lines() {
            if let Some(v) = line.strip_prefix(name) {
                let kb = v.trim().trim_end_matches("kB").trim();
                return kb
                    .parse()
                    .with_context(|| format!("unexpected {name} line in /proc/{pid}/status"));
            }
        }
        bail!("no {name} in /proc/{pid}/status")
    };
    Ok(Memory {
        rss_kib: field("VmRSS:")?,
        hwm_kib: field("VmHWM:")?,
    })
}

/// Resets VmHWM to the current RSS (`echo 5 > /proc/PID/clear_refs`), so that
/// each scenario reports its own peak. Returns false where the kernel refuses.
pub fn reset_peak(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}
