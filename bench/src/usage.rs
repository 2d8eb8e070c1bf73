//! Memory and CPU time read from `/proc`: peak resident memory (`VmHWM` in
//! `/proc/<pid>/status`), CPU time (`utime + stime` in `/proc/<pid>/stat`) of the server, of
//! this program, and of the NATS and PostgreSQL processes, and the whole machine's busy time
//! from `/proc/stat`. Two snapshots around the measured window give how the cores were shared.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;

/// Clock ticks per second of the CPU times in `/proc`.
#[derive(Debug, Clone, Copy)]
pub struct ClockTicks(f64);

impl ClockTicks {
    /// Runs `getconf CLK_TCK`. Linux reports `/proc` times in USER_HZ, which is 100 on x86 and
    /// ARM, so 100 is the fallback.
    pub fn read() -> ClockTicks {
        let reported = std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|output| String::from_utf8(output.stdout).ok())
            .and_then(|text| text.trim().parse::<f64>().ok())
            .filter(|ticks| *ticks > 0.0);
        ClockTicks(reported.unwrap_or(100.0))
    }

    fn seconds(self, ticks: u64) -> f64 {
        ticks as f64 / self.0
    }
}

/// Returns a process's peak resident memory in bytes; `pid` is a number or `self`.
pub fn peak_resident_bytes(pid: &str) -> anyhow::Result<u64> {
    memory_field_bytes(pid, "VmHWM")
}

/// Returns a process's current resident memory in bytes; `pid` is a number or `self`.
pub fn resident_bytes(pid: &str) -> anyhow::Result<u64> {
    memory_field_bytes(pid, "VmRSS")
}

/// Reads a field given in kB from `/proc/<pid>/status`.
fn memory_field_bytes(pid: &str, field: &str) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status =
        std::fs::read_to_string(&path).with_context(|| format!("failed to read {path}"))?;
    let line = status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .with_context(|| format!("{path} has no {field} line"))?;
    let kibibytes: u64 = line
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .with_context(|| format!("invalid {field} line in {path}: {line:?}"))?;
    Ok(kibibytes * 1024)
}

/// Returns `utime + stime` of a process in clock ticks.
fn process_ticks(pid: &str) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("failed to read {path}"))?;
    parse_stat_ticks(&stat).with_context(|| format!("unexpected format of {path}: {stat:?}"))
}

/// Returns `utime + stime` from the text of a `/proc/<pid>/stat` file.
fn parse_stat_ticks(stat: &str) -> anyhow::Result<u64> {
    // The command name in field 2 is in parentheses and may contain spaces, so fields are
    // counted from the last ')'. After it come field 3 (state) onwards, so utime (field 14)
    // and stime (field 15) are the 12th and 13th.
    let after_name = stat
        .rsplit_once(')')
        .context("no ')' after the command name")?
        .1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    if fields.len() < 13 {
        bail!(
            "{} fields after the command name, expected at least 13",
            fields.len()
        );
    }
    let utime: u64 = fields[11].parse().context("invalid utime")?;
    let stime: u64 = fields[12].parse().context("invalid stime")?;
    Ok(utime + stime)
}

/// Returns the CPU ticks of every process whose command name is `name`, by pid.
fn ticks_by_command(name: &str) -> HashMap<u32, u64> {
    let mut ticks = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return ticks;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
        else {
            continue;
        };
        let command = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if command.trim_end() != name {
            continue;
        }
        // The process may exit between the two reads.
        if let Ok(process) = process_ticks(&pid.to_string()) {
            ticks.insert(pid, process);
        }
    }
    ticks
}

/// Returns the machine's busy and total ticks, summed over all cores, from `/proc/stat`.
fn machine_ticks() -> anyhow::Result<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").context("failed to read /proc/stat")?;
    let line = stat
        .lines()
        .find(|line| line.starts_with("cpu "))
        .context("/proc/stat has no cpu line")?;
    // user nice system idle iowait irq softirq steal; guest times are already in user.
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|value| value.parse().unwrap_or(0))
        .collect();
    if values.len() < 8 {
        bail!("unexpected cpu line in /proc/stat: {line:?}");
    }
    let total: u64 = values.iter().sum();
    let idle = values[3] + values[4];
    Ok((total - idle, total))
}

/// CPU ticks at one moment.
#[derive(Debug, Clone)]
pub struct CpuSnapshot {
    taken_at: Instant,
    machine_busy: u64,
    machine_total: u64,
    server: u64,
    client: u64,
    nats_server: HashMap<u32, u64>,
    postgres: HashMap<u32, u64>,
}

impl CpuSnapshot {
    /// Reads the ticks now. `server_pid` is `None` when no server runs, as in the raw
    /// JetStream measurement.
    pub fn take(server_pid: Option<u32>) -> anyhow::Result<CpuSnapshot> {
        let (machine_busy, machine_total) = machine_ticks()?;
        let server = match server_pid {
            Some(pid) => process_ticks(&pid.to_string())?,
            None => 0,
        };
        Ok(CpuSnapshot {
            taken_at: Instant::now(),
            machine_busy,
            machine_total,
            server,
            client: process_ticks("self")?,
            nats_server: ticks_by_command("nats-server"),
            postgres: ticks_by_command("postgres"),
        })
    }
}

/// Measures how many cores other programs keep busy while the benchmark itself is idle, so a
/// reader can tell whether the figures had the machine to themselves.
pub async fn background_busy_cores(ticks: ClockTicks) -> anyhow::Result<f64> {
    let before = CpuSnapshot::take(None)?;
    tokio::time::sleep(BACKGROUND_SAMPLE).await;
    let after = CpuSnapshot::take(None)?;
    let split = CpuSplit::between(&before, &after, ticks);
    Ok(split.busy_seconds() / split.wall_seconds)
}

/// The sampling time of [`background_busy_cores`].
const BACKGROUND_SAMPLE: Duration = Duration::from_secs(2);

/// CPU seconds spent between two snapshots, split by process.
#[derive(Debug, Clone, Serialize)]
pub struct CpuSplit {
    pub wall_seconds: f64,
    /// Cores the kernel counts, so `cores * wall_seconds` is the time available.
    pub cores: u64,
    pub server_seconds: f64,
    pub client_seconds: f64,
    pub nats_server_seconds: f64,
    /// All `postgres` processes together. A connection that closed inside the window is
    /// missing, because its process is gone before the second snapshot.
    pub postgres_seconds: f64,
    /// Busy time of the machine not accounted to the processes above (the kernel's own work,
    /// other programs).
    pub other_seconds: f64,
    pub idle_seconds: f64,
}

impl CpuSplit {
    /// Returns the machine's busy time across all cores.
    pub fn busy_seconds(&self) -> f64 {
        self.server_seconds
            + self.client_seconds
            + self.nats_server_seconds
            + self.postgres_seconds
            + self.other_seconds
    }

    pub fn between(before: &CpuSnapshot, after: &CpuSnapshot, ticks: ClockTicks) -> CpuSplit {
        let cores = std::thread::available_parallelism().map_or(1, |cores| cores.get() as u64);
        let seconds = |count: u64| ticks.seconds(count);
        let grown = |before: &HashMap<u32, u64>, after: &HashMap<u32, u64>| -> u64 {
            after
                .iter()
                .map(|(pid, ticks)| ticks.saturating_sub(before.get(pid).copied().unwrap_or(0)))
                .sum()
        };
        let server = seconds(after.server.saturating_sub(before.server));
        let client = seconds(after.client.saturating_sub(before.client));
        let nats_server = seconds(grown(&before.nats_server, &after.nats_server));
        let postgres = seconds(grown(&before.postgres, &after.postgres));
        let busy = seconds(after.machine_busy.saturating_sub(before.machine_busy));
        let total = seconds(after.machine_total.saturating_sub(before.machine_total));
        CpuSplit {
            wall_seconds: after.taken_at.duration_since(before.taken_at).as_secs_f64(),
            cores,
            server_seconds: server,
            client_seconds: client,
            nats_server_seconds: nats_server,
            postgres_seconds: postgres,
            other_seconds: (busy - server - client - nats_server - postgres).max(0.0),
            idle_seconds: (total - busy).max(0.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_ticks_after_name_with_spaces() {
        let stat = "4242 (tokio rt) worker) S 1 4242 4242 0 -1 4194560 100 0 0 0 \
                    250 75 0 0 20 0 9 0 1000 1000000 500";
        assert_eq!(parse_stat_ticks(stat).unwrap(), 325);
    }

    #[test]
    fn stat_ticks_rejects_short_line() {
        assert!(parse_stat_ticks("4242 (secureconnect) S 1 2 3").is_err());
    }
}
