//! What a server process costs, read from /proc, and what the machine is.

use serde_json::{Value, json};

/// Resident memory of a process in bytes (VmRSS).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Open file descriptors of a process.
pub fn open_files(pid: u32) -> Option<u64> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

/// The local addresses of the IPv4 TCP connections that processes `pids`
/// hold to `remote` (from their descriptors and /proc/net/tcp): how the
/// cluster benchmark tells its peers' Redis connections from others'.
pub fn tcp_connections_to(pids: &[u32], remote: std::net::SocketAddr) -> Vec<std::net::SocketAddr> {
    let mut inodes = std::collections::HashSet::new();
    for pid in pids {
        let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for entry in dir.flatten() {
            if let Ok(target) = std::fs::read_link(entry.path())
                && let Some(inode) = target
                    .to_str()
                    .and_then(|t| t.strip_prefix("socket:["))
                    .and_then(|t| t.strip_suffix(']'))
            {
                inodes.insert(inode.to_owned());
            }
        }
    }
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (local, rem, inode) = (f.get(1)?, f.get(2)?, f.get(9)?);
            (inodes.contains(*inode) && parse_proc_addr(rem)? == remote)
                .then(|| parse_proc_addr(local))
                .flatten()
        })
        .collect()
}

/// `0100007F:18EB` (address as a host-order u32, port) → 127.0.0.1:6379.
fn parse_proc_addr(text: &str) -> Option<std::net::SocketAddr> {
    let (ip, port) = text.split_once(':')?;
    let ip = u32::from_str_radix(ip, 16).ok()?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let ip = std::net::Ipv4Addr::from(ip.to_ne_bytes());
    Some(std::net::SocketAddr::new(ip.into(), port))
}

/// CPU time a process spent in its own code and in the kernel on its
/// behalf (system calls: on loopback, most of a socket write's cost).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuTimes {
    pub user: f64,
    pub system: f64,
}

impl CpuTimes {
    pub fn total(self) -> f64 {
        self.user + self.system
    }
}

impl std::ops::Add for CpuTimes {
    type Output = CpuTimes;
    fn add(self, other: CpuTimes) -> CpuTimes {
        CpuTimes {
            user: self.user + other.user,
            system: self.system + other.system,
        }
    }
}

impl std::ops::Sub for CpuTimes {
    type Output = CpuTimes;
    fn sub(self, other: CpuTimes) -> CpuTimes {
        CpuTimes {
            user: self.user - other.user,
            system: self.system - other.system,
        }
    }
}

/// User and system CPU time of a process, in seconds.
pub fn cpu_times(pid: u32) -> Option<CpuTimes> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line (1-based): 12 and 13 here.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(CpuTimes {
        user: utime as f64 / clock_ticks(),
        system: stime as f64 / clock_ticks(),
    })
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// The machine: CPU model and count, memory, kernel.
pub fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_else(|| "unknown".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: u64 = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_owned();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    json!({
        "cpu_model": model,
        "cores": cores,
        "memory_gib": (mem_kib as f64 / 1024.0 / 1024.0 * 10.0).round() / 10.0,
        "kernel": kernel,
        "arch": std::env::consts::ARCH,
    })
}

/// A one-line description of the machine.
pub fn machine_line(machine: &Value) -> String {
    format!(
        "{} cores ({}), {} GiB, Linux {}",
        machine["cores"],
        machine["cpu_model"].as_str().unwrap_or("?"),
        machine["memory_gib"],
        machine["kernel"].as_str().unwrap_or("?")
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_proc_net_addresses() {
        if cfg!(target_endian = "little") {
            assert_eq!(
                super::parse_proc_addr("0100007F:18EB"),
                Some("127.0.0.1:6379".parse().unwrap())
            );
        }
    }
}
