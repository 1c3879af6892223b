//! Host metrics and inventory from sysinfo: CPU, load, memory, swap, filesystems, network, uptime.
//!
//! One [`HostCollector`] lives for the whole agent run so CPU usage and network rates are
//! deltas between two cycles. Metric names are listed in `docs/METRICS.md`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use std::path::Path;

use nix::sys::statvfs::statvfs;
use sysinfo::{Components, CpuRefreshKind, MemoryRefreshKind, Networks, RefreshKind, System};
use tocsin_protocol::{Inventory, Metric};

use super::{counter_rate, pct, procfs, round2};

/// Filesystem types that hold no user data (kernel interfaces, RAM, images, container layers).
const PSEUDO_FS: &[&str] = &[
    "autofs",
    "binfmt_misc",
    "bpf",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devpts",
    "devtmpfs",
    "efivarfs",
    "fusectl",
    "fuse.gvfsd-fuse",
    "fuse.lxcfs",
    "fuse.portal",
    "hugetlbfs",
    "mqueue",
    "nsfs",
    "overlay",
    "overlayfs",
    "aufs",
    "proc",
    "pstore",
    "ramfs",
    "rootfs",
    "rpc_pipefs",
    "securityfs",
    "selinuxfs",
    "squashfs",
    "sysfs",
    "tmpfs",
    "tracefs",
    "nfsd",
    "iso9660",
    "udf",
];

/// Mount points under which nothing is a real filesystem worth watching.
const PSEUDO_MOUNT_PREFIXES: &[&str] = &["/proc", "/sys", "/dev"];

/// Whether a filesystem type / mount point is a pseudo filesystem to skip.
pub fn is_pseudo_fs(fs_type: &str, mount: &str) -> bool {
    PSEUDO_FS.contains(&fs_type)
        || fs_type.starts_with("cgroup")
        || fs_type.starts_with("fuse.snap")
        || PSEUDO_MOUNT_PREFIXES
            .iter()
            .any(|p| mount == *p || mount.starts_with(&format!("{p}/")))
}

/// Interfaces left out of the network metrics (loopback traffic says nothing about the network).
fn skip_interface(name: &str) -> bool {
    name == "lo" || name.starts_with("lo0")
}

/// Counters of the previous cycle, the base of this cycle's rates.
#[derive(Debug, Default)]
struct Previous {
    at: Option<Instant>,
    boot_time: u64,
    cpu: Option<procfs::CpuTimes>,
    disks: BTreeMap<String, procfs::DiskCounters>,
    nets: BTreeMap<String, procfs::NetCounters>,
}

/// Collects host metrics; keep one across cycles.
#[derive(Debug)]
pub struct HostCollector {
    system: System,
    networks: Networks,
    components: Components,
    prev: Previous,
    cpu_baseline: Instant,
}

impl Default for HostCollector {
    fn default() -> Self {
        Self::new()
    }
}

impl HostCollector {
    /// Take the baselines (CPU times, disk and network counters) that the first collection
    /// compares with.
    pub fn new() -> Self {
        // sysinfo would otherwise keep every /proc/<pid>/stat open between refreshes.
        sysinfo::set_open_files_limit(0);
        let system = System::new_with_specifics(
            RefreshKind::nothing()
                .with_cpu(CpuRefreshKind::nothing())
                .with_memory(MemoryRefreshKind::everything()),
        );
        let mut collector = HostCollector {
            system,
            networks: Networks::new_with_refreshed_list(),
            components: Components::new_with_refreshed_list(),
            prev: Previous::default(),
            cpu_baseline: Instant::now(),
        };
        let mut scratch = Vec::new();
        collector.collect_rates(&mut scratch);
        collector
    }

    /// One cycle of host metrics. Blocking (reads /proc and /sys); the very first call waits
    /// up to ~200 ms so CPU usage has a measurable window.
    pub fn collect(&mut self) -> Vec<Metric> {
        let mut out = Vec::with_capacity(96);
        let since = self.cpu_baseline.elapsed();
        if since < sysinfo::MINIMUM_CPU_UPDATE_INTERVAL {
            std::thread::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL - since);
        }
        self.collect_rates(&mut out);
        self.collect_memory(&mut out);
        self.collect_filesystems(&mut out);
        self.collect_system(&mut out);
        self.collect_tcp(&mut out);
        self.collect_temperatures(&mut out);
        out
    }

    /// Everything computed from counters between two cycles: CPU, disk I/O, network. After a
    /// reboot (boot time changed) the old counters are meaningless: no rates that cycle.
    fn collect_rates(&mut self, out: &mut Vec<Metric>) {
        let now = Instant::now();
        self.cpu_baseline = now;
        let boot_time = System::boot_time();
        let rebooted = self.prev.boot_time != 0 && boot_time != self.prev.boot_time;
        let elapsed = match self.prev.at {
            Some(at) if !rebooted => now.saturating_duration_since(at),
            _ => Duration::ZERO,
        };

        let cpu = procfs::read("/proc/stat").and_then(|t| procfs::parse_cpu_times(&t));
        if let (Some(prev), Some(cur)) = (&self.prev.cpu, &cpu)
            && !elapsed.is_zero()
            && let Some((busy, states)) = procfs::cpu_usage(prev, cur)
        {
            out.push(Metric::new("cpu.usage_pct", round2(busy)));
            for (state, value) in states {
                out.push(Metric::new(format!("cpu.{state}_pct"), round2(value)));
            }
        }
        let load = System::load_average();
        out.push(Metric::new("load.avg_1m", round2(load.one)));
        out.push(Metric::new("load.avg_5m", round2(load.five)));
        out.push(Metric::new("load.avg_15m", round2(load.fifteen)));
        // Load means something only against the CPU count: 8 is overload on 4 cores, idle on 32.
        let cores = self.system.cpus().len();
        if cores > 0 {
            out.push(Metric::new(
                "load.per_core_5m",
                round2(load.five / cores as f64),
            ));
        }

        let disks = procfs::read("/proc/diskstats")
            .map(|t| {
                procfs::parse_diskstats(&t, |name| Path::new("/sys/block").join(name).exists())
            })
            .unwrap_or_default();
        for (name, cur) in &disks {
            let Some(prev) = self.prev.disks.get(name) else {
                continue;
            };
            let with = |m: Metric| m.with_label("device", name.clone());
            let rates = [
                ("disk.read_bytes_per_s", prev.read_bytes, cur.read_bytes),
                ("disk.write_bytes_per_s", prev.write_bytes, cur.write_bytes),
                ("disk.read_ops_per_s", prev.reads, cur.reads),
                ("disk.write_ops_per_s", prev.writes, cur.writes),
            ];
            for (metric, before, after) in rates {
                if let Some(rate) = counter_rate(before, after, elapsed) {
                    out.push(with(Metric::new(metric, round2(rate))));
                }
            }
            // Milliseconds busy per second elapsed, as a percentage.
            if let Some(ms_per_s) = counter_rate(prev.io_ms, cur.io_ms, elapsed) {
                out.push(with(Metric::new(
                    "disk.busy_pct",
                    round2((ms_per_s / 10.0).clamp(0.0, 100.0)),
                )));
            }
        }

        let nets = procfs::read("/proc/net/dev")
            .map(|t| procfs::parse_net_dev(&t))
            .unwrap_or_default();
        for (name, cur) in &nets {
            let Some(prev) = self.prev.nets.get(name) else {
                continue;
            };
            if skip_interface(name) {
                continue;
            }
            let rates = [
                ("net.rx_bytes_per_s", prev.rx_bytes, cur.rx_bytes),
                ("net.tx_bytes_per_s", prev.tx_bytes, cur.tx_bytes),
                ("net.rx_packets_per_s", prev.rx_packets, cur.rx_packets),
                ("net.tx_packets_per_s", prev.tx_packets, cur.tx_packets),
                ("net.rx_errors_per_s", prev.rx_errors, cur.rx_errors),
                ("net.tx_errors_per_s", prev.tx_errors, cur.tx_errors),
                ("net.rx_drops_per_s", prev.rx_drops, cur.rx_drops),
                ("net.tx_drops_per_s", prev.tx_drops, cur.tx_drops),
            ];
            for (metric, before, after) in rates {
                if let Some(rate) = counter_rate(before, after, elapsed) {
                    out.push(
                        Metric::new(metric, round2(rate)).with_label("interface", name.clone()),
                    );
                }
            }
        }
        self.prev = Previous {
            at: Some(now),
            boot_time,
            cpu,
            disks,
            nets,
        };
    }

    fn collect_memory(&mut self, out: &mut Vec<Metric>) {
        self.system.refresh_memory();
        let total = self.system.total_memory();
        let used = self.system.used_memory();
        let available = self.system.available_memory();
        out.push(Metric::new("mem.total_bytes", total as f64));
        out.push(Metric::new("mem.used_bytes", used as f64));
        out.push(Metric::new("mem.available_bytes", available as f64));
        out.push(Metric::new("mem.used_pct", pct(used, total)));
        let swap_total = self.system.total_swap();
        let swap_used = self.system.used_swap();
        out.push(Metric::new("swap.total_bytes", swap_total as f64));
        out.push(Metric::new("swap.used_bytes", swap_used as f64));
        out.push(Metric::new("swap.used_pct", pct(swap_used, swap_total)));
    }

    // statvfs field types (fsblkcnt_t, c_ulong) are u32 on some targets: keep the casts.
    #[allow(clippy::unnecessary_cast)]
    fn collect_filesystems(&mut self, out: &mut Vec<Metric>) {
        let Some(mounts) = procfs::read("/proc/self/mounts") else {
            return;
        };
        for fs in mounted_filesystems(&mounts) {
            let Ok(st) = statvfs(Path::new(&fs.mount)) else {
                continue;
            };
            let frsize = st.fragment_size() as u64;
            let total = (st.blocks() as u64).saturating_mul(frsize);
            if total == 0 {
                continue;
            }
            let free = (st.blocks_free() as u64).saturating_mul(frsize);
            let available = (st.blocks_available() as u64).saturating_mul(frsize);
            // Like df: used excludes free blocks; use% is of what non-root users can reach.
            let used = total.saturating_sub(free);
            let with = |m: Metric| {
                m.with_label("mount", fs.mount.clone())
                    .with_label("fs_type", fs.fs_type.clone())
            };
            out.push(with(Metric::new("fs.total_bytes", total as f64)));
            out.push(with(Metric::new("fs.used_bytes", used as f64)));
            out.push(with(Metric::new("fs.available_bytes", available as f64)));
            out.push(with(Metric::new(
                "fs.used_pct",
                pct(used, used + available),
            )));
            // Filesystems without a fixed inode table (btrfs, some network ones) report 0.
            let files = st.files() as u64;
            if files > 0 {
                let inodes_used = files.saturating_sub(st.files_free() as u64);
                out.push(with(Metric::new("fs.inodes_total", files as f64)));
                out.push(with(Metric::new("fs.inodes_used", inodes_used as f64)));
                out.push(with(Metric::new(
                    "fs.inodes_used_pct",
                    pct(inodes_used, files),
                )));
            }
        }
    }

    fn collect_system(&mut self, out: &mut Vec<Metric>) {
        out.push(Metric::new("system.uptime_s", System::uptime() as f64));
        out.push(Metric::new(
            "system.boot_time_s",
            System::boot_time() as f64,
        ));
        if let Some(counts) = procfs::processes().map(|list| procfs::ProcessCounts::of(&list)) {
            out.push(Metric::new("system.process_count", counts.processes as f64));
            out.push(Metric::new("system.zombie_count", counts.zombies as f64));
        }
        if let Some(threads) =
            procfs::read("/proc/loadavg").and_then(|t| procfs::parse_loadavg_threads(&t))
        {
            out.push(Metric::new("system.thread_count", threads as f64));
        }
    }

    /// TCP connections per state from a sock_diag dump; /proc/net/tcp{,6} (about twice the
    /// kernel time) only when the dump fails.
    fn collect_tcp(&mut self, out: &mut Vec<Metric>) {
        static FALLBACK_LOGGED: std::sync::Once = std::sync::Once::new();
        let counts = match super::sockdiag::tcp_state_counts() {
            Ok(counts) => counts,
            Err(reason) => {
                FALLBACK_LOGGED.call_once(|| {
                    tracing::debug!(%reason, "sock_diag unavailable; counting TCP states from /proc/net/tcp");
                });
                let mut counts = [0u64; 11];
                let mut any = false;
                for path in ["/proc/net/tcp", "/proc/net/tcp6"] {
                    if let Some(text) = procfs::read(path) {
                        procfs::count_tcp_states(&text, &mut counts);
                        any = true;
                    }
                }
                if !any {
                    return;
                }
                counts
            }
        };
        for (state, count) in procfs::TCP_STATES.iter().zip(counts) {
            out.push(Metric::new("tcp.connections", count as f64).with_label("state", *state));
        }
    }

    fn collect_temperatures(&mut self, out: &mut Vec<Metric>) {
        if self.components.list().is_empty() {
            return;
        }
        self.components.refresh(false);
        let mut seen = std::collections::HashSet::new();
        for component in self.components.list() {
            let Some(celsius) = component.temperature() else {
                continue;
            };
            if !celsius.is_finite() {
                continue;
            }
            let mut label = sanitize_label(component.label());
            // Two sensors with one label (several identical chips): number them.
            let mut n = 1;
            while !seen.insert(label.clone()) {
                n += 1;
                label = format!("{} #{n}", sanitize_label(component.label()));
            }
            out.push(
                Metric::new("sensor.temperature_celsius", round2(f64::from(celsius)))
                    .with_label("sensor", label),
            );
        }
    }

    /// What a dispatcher needs to know about this host, for the birth status.
    pub fn inventory(&self) -> Inventory {
        let cpu_model = self
            .system
            .cpus()
            .first()
            .map(|c| c.brand().trim().to_string())
            .filter(|b| !b.is_empty());
        let cores = self.system.cpus().len();
        Inventory {
            hostname: System::host_name(),
            os: System::name(),
            os_version: System::os_version(),
            kernel: System::kernel_version(),
            arch: Some(System::cpu_arch()).filter(|a| !a.is_empty()),
            cpu_model,
            cpu_cores: u32::try_from(cores).ok().filter(|&c| c > 0),
            memory_bytes: Some(self.system.total_memory()).filter(|&m| m > 0),
            ip_addresses: order_addresses(
                self.networks
                    .values()
                    .flat_map(|data| data.ip_networks().iter().map(|n| n.addr)),
            ),
            agent_version: Some(crate::AGENT_VERSION.to_string()),
            sys_descr: None,
            sys_name: None,
        }
    }

    /// Time since the CPU baseline (for tests and callers that pace the first cycle).
    pub fn since_last_cpu_sample(&self) -> Duration {
        self.cpu_baseline.elapsed()
    }
}

/// A real filesystem from /proc/self/mounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountedFs {
    pub device: String,
    pub mount: String,
    pub fs_type: String,
}

/// The real filesystems of a mounts table: pseudo filesystems skipped, one entry per device
/// (its shortest mount point: bind mounts repeat it), sorted by mount point.
pub fn mounted_filesystems(mounts: &str) -> Vec<MountedFs> {
    let mut by_device: BTreeMap<String, MountedFs> = BTreeMap::new();
    for line in mounts.lines() {
        let mut f = line.split_ascii_whitespace();
        let (Some(device), Some(mount), Some(fs_type)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let mount = unescape_mount(mount);
        if is_pseudo_fs(fs_type, &mount) || !Path::new(&mount).is_dir() {
            continue;
        }
        // Devices that are not paths (e.g. "server:/export", "none") are keyed per mount.
        let key = if device.starts_with('/') {
            device.to_string()
        } else {
            format!("{device}@{mount}")
        };
        let fs = MountedFs {
            device: device.to_string(),
            mount,
            fs_type: fs_type.to_string(),
        };
        match by_device.get(&key) {
            Some(existing) if existing.mount.len() <= fs.mount.len() => {}
            _ => {
                by_device.insert(key, fs);
            }
        }
    }
    let mut out: Vec<MountedFs> = by_device.into_values().collect();
    out.sort_by(|a, b| a.mount.cmp(&b.mount));
    out.dedup_by(|a, b| a.mount == b.mount);
    out
}

/// Undo the octal escapes of /proc/mounts (`\040` for a space, `\011` tab, `\012`, `\134`).
fn unescape_mount(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_string();
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8)
        {
            out.push(v);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Sensor labels as label values: printable, at most 64 characters, never empty.
fn sanitize_label(label: &str) -> String {
    let clean: String = label
        .chars()
        .filter(|c| !c.is_control())
        .take(64)
        .collect::<String>()
        .trim()
        .to_string();
    if clean.is_empty() {
        "sensor".to_string()
    } else {
        clean
    }
}

/// Addresses for the inventory: usable ones first (IPv4, then IPv6), link-local and loopback
/// only when there is nothing else. Deduplicated, stable order.
pub fn order_addresses(addrs: impl IntoIterator<Item = IpAddr>) -> Vec<String> {
    let mut all: Vec<IpAddr> = addrs.into_iter().collect();
    all.sort_by_key(|a| (a.is_ipv6(), *a));
    all.dedup();
    let is_link_local = |a: &IpAddr| match a {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    };
    let usable: Vec<String> = all
        .iter()
        .filter(|a| !a.is_loopback() && !a.is_unspecified() && !is_link_local(a))
        .map(IpAddr::to_string)
        .collect();
    if !usable.is_empty() {
        return usable;
    }
    let link_local: Vec<String> = all
        .iter()
        .filter(|a| is_link_local(a))
        .map(IpAddr::to_string)
        .collect();
    if !link_local.is_empty() {
        return link_local;
    }
    all.iter()
        .filter(|a| a.is_loopback())
        .map(IpAddr::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudo_filesystems_are_skipped() {
        for (fs, mount) in [
            ("proc", "/proc"),
            ("sysfs", "/sys"),
            ("tmpfs", "/run/user/1000"),
            ("devtmpfs", "/dev"),
            ("overlay", "/"),
            ("squashfs", "/snap/core/1"),
            ("cgroup2", "/sys/fs/cgroup"),
            ("cgroup", "/sys/fs/cgroup/cpu"),
            ("ext4", "/dev/shm"),
        ] {
            assert!(is_pseudo_fs(fs, mount), "{fs} {mount}");
        }
        for (fs, mount) in [
            ("ext4", "/"),
            ("xfs", "/var"),
            ("btrfs", "/home"),
            ("ext4", "/devdata"),
        ] {
            assert!(!is_pseudo_fs(fs, mount), "{fs} {mount}");
        }
    }

    #[test]
    fn mounts_table_gives_real_filesystems_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spaced = dir.path().join("with space");
        std::fs::create_dir(&spaced).expect("mkdir");
        let escaped = spaced.display().to_string().replace(' ', "\\040");
        let mounts = format!(
            "/dev/sda1 / ext4 rw 0 0\n\
             proc /proc proc rw 0 0\n\
             tmpfs /run tmpfs rw 0 0\n\
             /dev/sda1 {tmp} ext4 rw 0 0\n\
             /dev/sdb1 {escaped} xfs rw 0 0\n\
             server:/export /nonexistent-mount nfs rw 0 0\n\
             short line\n",
            tmp = dir.path().display()
        );
        let fs = mounted_filesystems(&mounts);
        let mounts: Vec<(&str, &str)> = fs
            .iter()
            .map(|f| (f.mount.as_str(), f.fs_type.as_str()))
            .collect();
        let spaced = spaced.display().to_string();
        // sda1 twice (a bind mount): only "/" is kept; the escaped space is decoded.
        assert_eq!(mounts, vec![("/", "ext4"), (spaced.as_str(), "xfs")]);
    }

    #[test]
    fn mount_escapes() {
        assert_eq!(unescape_mount("/a\\040b"), "/a b");
        assert_eq!(unescape_mount("/a\\011b\\134"), "/a\tb\\");
        assert_eq!(unescape_mount("/plain"), "/plain");
        // Not an escape: kept as it is.
        assert_eq!(unescape_mount("/a\\9x"), "/a\\9x");
        assert_eq!(unescape_mount("/end\\04"), "/end\\04");
    }

    #[test]
    fn sensor_labels_are_clean() {
        assert_eq!(
            sanitize_label("coretemp Package id 0"),
            "coretemp Package id 0"
        );
        assert_eq!(sanitize_label("\u{7}\n"), "sensor");
        assert_eq!(sanitize_label(&"x".repeat(100)).len(), 64);
    }

    #[test]
    fn addresses_put_usable_ones_first() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert_eq!(
            order_addresses([
                ip("::1"),
                ip("fe80::1"),
                ip("fd00::2"),
                ip("127.0.0.1"),
                ip("192.0.2.2"),
                ip("192.0.2.2")
            ]),
            vec!["192.0.2.2".to_string(), "fd00::2".to_string()]
        );
        assert_eq!(
            order_addresses([ip("::1"), ip("127.0.0.1")]),
            vec!["127.0.0.1".to_string(), "::1".to_string()]
        );
        assert_eq!(
            order_addresses([ip("127.0.0.1"), ip("fe80::1")]),
            vec!["fe80::1".to_string()]
        );
        assert!(order_addresses([]).is_empty());
    }
}
