//! Linux /proc readers for what sysinfo lacks: CPU time per state, disk I/O, interface packets and drops, TCP states, zombies.
//!
//! Every parser is a pure function over the file's text (unit-tested with captured samples);
//! the `read_*` wrappers only read the file. A missing or unreadable file gives `None` / an
//! empty result, so the agent keeps reporting everything else on kernels or containers that
//! hide one of them.

use std::collections::BTreeMap;
use std::path::Path;

/// Cumulative CPU time per state from the first line of /proc/stat, in USER_HZ ticks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTimes {
    pub user: u64,
    pub nice: u64,
    pub system: u64,
    pub idle: u64,
    pub iowait: u64,
    pub irq: u64,
    pub softirq: u64,
    pub steal: u64,
}

impl CpuTimes {
    /// Sum of all states (guest time is already part of user and nice).
    pub fn total(&self) -> u64 {
        self.user
            + self.nice
            + self.system
            + self.idle
            + self.iowait
            + self.irq
            + self.softirq
            + self.steal
    }

    /// The states as `(name, ticks)`, in a fixed order.
    pub fn states(&self) -> [(&'static str, u64); 8] {
        [
            ("user", self.user),
            ("nice", self.nice),
            ("system", self.system),
            ("idle", self.idle),
            ("iowait", self.iowait),
            ("irq", self.irq),
            ("softirq", self.softirq),
            ("steal", self.steal),
        ]
    }
}

/// Per-state percentages of CPU time between two readings, and the busy total
/// (everything but idle and iowait). `None` when the counters went backwards or did not move.
pub fn cpu_usage(prev: &CpuTimes, cur: &CpuTimes) -> Option<(f64, Vec<(&'static str, f64)>)> {
    let total = cur.total().checked_sub(prev.total())?;
    if total == 0 {
        return None;
    }
    let mut states = Vec::with_capacity(8);
    for ((name, before), (_, after)) in prev.states().into_iter().zip(cur.states()) {
        let delta = after.checked_sub(before)?;
        states.push((name, delta as f64 / total as f64 * 100.0));
    }
    let idle = (cur.idle + cur.iowait).checked_sub(prev.idle + prev.iowait)?;
    let busy = (total.saturating_sub(idle)) as f64 / total as f64 * 100.0;
    Some((busy.clamp(0.0, 100.0), states))
}

/// Parse the aggregate `cpu` line of /proc/stat.
pub fn parse_cpu_times(stat: &str) -> Option<CpuTimes> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let mut f = line
        .split_ascii_whitespace()
        .skip(1)
        .map(|v| v.parse::<u64>());
    let mut next = || f.next().and_then(Result::ok);
    Some(CpuTimes {
        user: next()?,
        nice: next()?,
        system: next()?,
        idle: next()?,
        iowait: next().unwrap_or(0),
        irq: next().unwrap_or(0),
        softirq: next().unwrap_or(0),
        steal: next().unwrap_or(0),
    })
}

/// Cumulative I/O counters of one block device (/proc/diskstats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskCounters {
    pub reads: u64,
    pub read_bytes: u64,
    pub writes: u64,
    pub write_bytes: u64,
    /// Milliseconds the device had I/O in flight.
    pub io_ms: u64,
}

/// Parse /proc/diskstats, keeping whole disks only (no partitions, loop or RAM devices).
/// `is_disk` decides which names are whole disks (on a live system: present in /sys/block).
pub fn parse_diskstats(
    text: &str,
    is_disk: impl Fn(&str) -> bool,
) -> BTreeMap<String, DiskCounters> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_ascii_whitespace().collect();
        if f.len() < 14 {
            continue;
        }
        let name = f[2];
        if name.starts_with("loop") || name.starts_with("ram") || name.starts_with("zram") {
            continue;
        }
        if !is_disk(name) {
            continue;
        }
        let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
        let (Some(reads), Some(rsect), Some(writes), Some(wsect), Some(io_ms)) =
            (n(3), n(5), n(7), n(9), n(12))
        else {
            continue;
        };
        out.insert(
            name.to_string(),
            DiskCounters {
                reads,
                read_bytes: rsect.saturating_mul(512),
                writes,
                write_bytes: wsect.saturating_mul(512),
                io_ms,
            },
        );
    }
    out
}

/// Cumulative counters of one network interface (/proc/net/dev).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetCounters {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_drops: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_drops: u64,
}

/// Parse /proc/net/dev into counters per interface.
pub fn parse_net_dev(text: &str) -> BTreeMap<String, NetCounters> {
    let mut out = BTreeMap::new();
    for line in text.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        let v: Vec<u64> = rest
            .split_ascii_whitespace()
            .map_while(|x| x.parse().ok())
            .collect();
        if v.len() < 16 {
            continue;
        }
        out.insert(
            name.trim().to_string(),
            NetCounters {
                rx_bytes: v[0],
                rx_packets: v[1],
                rx_errors: v[2],
                rx_drops: v[3],
                tx_bytes: v[8],
                tx_packets: v[9],
                tx_errors: v[10],
                tx_drops: v[11],
            },
        );
    }
    out
}

/// TCP states in the kernel's numbering (include/net/tcp_states.h), index = state - 1.
pub const TCP_STATES: [&str; 11] = [
    "established",
    "syn_sent",
    "syn_recv",
    "fin_wait1",
    "fin_wait2",
    "time_wait",
    "close",
    "close_wait",
    "last_ack",
    "listen",
    "closing",
];

/// Add the connections of one /proc/net/tcp{,6} table to `counts` (index as [`TCP_STATES`]).
pub fn count_tcp_states(text: &str, counts: &mut [u64; 11]) {
    for line in text.lines().skip(1) {
        // "  sl  local_address rem_address   st ..." -> the 4th field is the state in hex.
        let Some(st) = line.split_ascii_whitespace().nth(3) else {
            continue;
        };
        if let Ok(state) = u8::from_str_radix(st, 16)
            && (1..=11).contains(&state)
        {
            counts[usize::from(state - 1)] += 1;
        }
    }
}

/// The state letter of a /proc/<pid>/stat line (after the command in parentheses).
pub fn process_state(stat: &str) -> Option<char> {
    let after = &stat[stat.rfind(')')? + 1..];
    after.trim_start().chars().next()
}

/// The command name (`comm`, at most 15 bytes) of a /proc/<pid>/stat line.
pub fn process_comm(stat: &str) -> Option<&str> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    stat.get(open + 1..close)
}

/// One process (thread-group leader) from /proc/<pid>/stat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcEntry {
    pub pid: u32,
    pub comm: String,
    /// `R`, `S`, `D`, `Z` (zombie), `X` (dead)...
    pub state: char,
}

/// Every process under `proc_root` (normally `/proc`); processes that exit while being read
/// are skipped. `None` when the directory cannot be listed.
pub fn scan_processes(proc_root: &Path) -> Option<Vec<ProcEntry>> {
    let mut out = Vec::with_capacity(256);
    let mut buf = String::with_capacity(512);
    for entry in std::fs::read_dir(proc_root).ok()?.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        buf.clear();
        let Ok(mut f) = std::fs::File::open(entry.path().join("stat")) else {
            continue;
        };
        if std::io::Read::read_to_string(&mut f, &mut buf).is_err() {
            continue;
        }
        let (Some(comm), Some(state)) = (process_comm(&buf), process_state(&buf)) else {
            continue;
        };
        out.push(ProcEntry {
            pid,
            comm: comm.to_string(),
            state,
        });
    }
    Some(out)
}

/// How old a shared process snapshot may be: the host collection and the process checks of
/// one cycle read /proc once between them.
pub const PROCESS_SNAPSHOT_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(3);

type Snapshot = (std::time::Instant, std::sync::Arc<Vec<ProcEntry>>);
static PROCESSES: std::sync::Mutex<Option<Snapshot>> = std::sync::Mutex::new(None);

/// The processes of this host, from a snapshot at most [`PROCESS_SNAPSHOT_MAX_AGE`] old
/// (reading every /proc/<pid>/stat is most of the agent's CPU time per cycle).
pub fn processes() -> Option<std::sync::Arc<Vec<ProcEntry>>> {
    let fresh = |at: &std::time::Instant| at.elapsed() < PROCESS_SNAPSHOT_MAX_AGE;
    if let Ok(guard) = PROCESSES.lock()
        && let Some((at, list)) = guard.as_ref()
        && fresh(at)
    {
        return Some(list.clone());
    }
    let list = std::sync::Arc::new(scan_processes(Path::new("/proc"))?);
    if let Ok(mut guard) = PROCESSES.lock() {
        *guard = Some((std::time::Instant::now(), list.clone()));
    }
    Some(list)
}

/// The command line of a process (arguments split at NUL), empty when it is gone or a
/// kernel thread.
pub fn cmdline(pid: u32) -> Vec<std::ffi::OsString> {
    use std::os::unix::ffi::OsStrExt;
    let Ok(bytes) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return Vec::new();
    };
    bytes
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| std::ffi::OsStr::from_bytes(a).to_os_string())
        .collect()
}

/// Processes (not threads) and zombies, from /proc/<pid>/stat.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcessCounts {
    pub processes: u64,
    pub zombies: u64,
}

impl ProcessCounts {
    pub fn of(list: &[ProcEntry]) -> Self {
        ProcessCounts {
            processes: list.len() as u64,
            zombies: list.iter().filter(|p| p.state == 'Z').count() as u64,
        }
    }
}

/// Threads in the system: the total of `running/total` in /proc/loadavg.
pub fn parse_loadavg_threads(text: &str) -> Option<u64> {
    text.split_ascii_whitespace()
        .nth(3)?
        .split_once('/')?
        .1
        .parse()
        .ok()
}

/// Read a /proc file; `None` when it is missing or unreadable. /proc files report no size,
/// so start with a page-sized buffer instead of growing from nothing.
pub fn read(path: &str) -> Option<String> {
    let mut text = String::with_capacity(8192);
    std::io::Read::read_to_string(&mut std::fs::File::open(path).ok()?, &mut text).ok()?;
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_states_from_stat() {
        let a = parse_cpu_times("cpu  100 5 50 800 20 1 2 3 0 0\ncpu0 1 2 3 4\nintr 1\n")
            .expect("cpu line");
        assert_eq!(
            a,
            CpuTimes {
                user: 100,
                nice: 5,
                system: 50,
                idle: 800,
                iowait: 20,
                irq: 1,
                softirq: 2,
                steal: 3
            }
        );
        let b = parse_cpu_times("cpu  150 5 70 1000 30 1 2 3 0 0\n").expect("cpu line");
        let (busy, states) = cpu_usage(&a, &b).expect("usage");
        // 280 ticks passed: 70 busy (user 50 + system 20), 210 idle+iowait.
        assert!((busy - 25.0).abs() < 1e-9, "{busy}");
        let get = |n: &str| states.iter().find(|(s, _)| *s == n).map(|(_, v)| *v);
        assert!((get("user").expect("user") - 50.0 / 280.0 * 100.0).abs() < 1e-9);
        assert!((get("iowait").expect("iowait") - 10.0 / 280.0 * 100.0).abs() < 1e-9);
        // Counters going backwards (reboot between readings) or not moving: no usage.
        assert!(cpu_usage(&b, &a).is_none());
        assert!(cpu_usage(&a, &a).is_none());
        // Old kernels print only four fields.
        assert_eq!(parse_cpu_times("cpu 1 2 3 4\n").expect("short").iowait, 0);
        assert!(parse_cpu_times("intr 1 2\n").is_none());
        assert!(parse_cpu_times("cpu a b c d\n").is_none());
    }

    #[test]
    fn diskstats_keep_whole_disks() {
        let text = "\
   8       0 sda 1000 0 20000 500 2000 0 40000 900 0 1200 1400 0 0 0 0
   8       1 sda1 900 0 18000 450 1900 0 38000 800 0 1100 1300 0 0 0 0
   7       0 loop0 10 0 20 0 0 0 0 0 0 0 0 0 0 0 0
 259       0 nvme0n1 5 0 8 1 6 0 16 2 0 3 3
 253       0 dm-0 1 2 3
";
        let disks = parse_diskstats(text, |n| n == "sda" || n == "nvme0n1");
        assert_eq!(disks.len(), 2, "{disks:?}");
        let sda = disks["sda"];
        assert_eq!(
            sda,
            DiskCounters {
                reads: 1000,
                read_bytes: 20000 * 512,
                writes: 2000,
                write_bytes: 40000 * 512,
                io_ms: 1200
            }
        );
        assert_eq!(disks["nvme0n1"].io_ms, 3);
    }

    #[test]
    fn net_dev_counters() {
        let text = "\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: 1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0
  eth0: 5000      50    1    2    0     0          0         0     7000      70    3    4    0     0       0          0
broken line
";
        let nets = parse_net_dev(text);
        assert_eq!(nets.len(), 2);
        assert_eq!(
            nets["eth0"],
            NetCounters {
                rx_bytes: 5000,
                rx_packets: 50,
                rx_errors: 1,
                rx_drops: 2,
                tx_bytes: 7000,
                tx_packets: 70,
                tx_errors: 3,
                tx_drops: 4
            }
        );
    }

    #[test]
    fn tcp_states_are_counted() {
        let text = "\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:075B 00000000:0000 0A 00000000:00000000 00:00000000 00000000   102        0 1 1 0 100 0 0 10 0
   1: 0100007F:075B 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000   102        0 2 1 0 20 4 30 10 -1
   2: 0100007F:D2F0 0100007F:075B 01 00000000:00000000 00:00000000 00000000   102        0 3 1 0 20 4 30 10 -1
   3: 0100007F:D2F2 0100007F:075B 06 00000000:00000000 03:00000000 00000000     0        0 0 3 0
";
        let mut counts = [0u64; 11];
        count_tcp_states(text, &mut counts);
        count_tcp_states("header\n   0: x y 0A\n   1: x y ZZ\n", &mut counts);
        assert_eq!(counts[0], 2, "established");
        assert_eq!(counts[5], 1, "time_wait");
        assert_eq!(counts[9], 2, "listen");
        assert_eq!(counts.iter().sum::<u64>(), 5);
    }

    #[test]
    fn process_state_after_the_command() {
        assert_eq!(process_state("42 (bash) S 1 42 42"), Some('S'));
        // The command may hold spaces and parentheses.
        assert_eq!(process_state("43 (my (odd) cmd) Z 1 2"), Some('Z'));
        assert_eq!(
            process_comm("43 (my (odd) cmd) Z 1 2"),
            Some("my (odd) cmd")
        );
        assert_eq!(process_state("garbage"), None);
        assert_eq!(process_comm("garbage"), None);
    }

    #[test]
    fn snapshot_lists_this_process_with_its_command_line() {
        let me = std::process::id();
        let list = processes().expect("/proc");
        let entry = list.iter().find(|p| p.pid == me).expect("this process");
        assert!(!entry.comm.is_empty());
        assert!(!cmdline(me).is_empty());
        assert!(cmdline(u32::MAX).is_empty());
        // A second call within the age limit is the same snapshot.
        assert!(std::sync::Arc::ptr_eq(&list, &processes().expect("/proc")));
    }

    #[test]
    fn live_process_counts_include_this_process() {
        let counts =
            ProcessCounts::of(&scan_processes(Path::new("/proc")).expect("/proc is readable"));
        assert!(counts.processes >= 1, "{counts:?}");
        assert!(scan_processes(Path::new("/nonexistent-proc")).is_none());
    }

    #[test]
    fn threads_from_loadavg() {
        assert_eq!(
            parse_loadavg_threads("0.10 0.20 0.30 2/345 6789\n"),
            Some(345)
        );
        assert_eq!(parse_loadavg_threads("0.1 0.2"), None);
    }
}
