//! Host metrics and inventory from sysinfo: CPU, load, memory, swap, filesystems, network, uptime.
//!
//! One [`HostCollector`] lives for the whole agent run so CPU usage and network rates are
//! deltas between two cycles. Metric names are listed in `docs/METRICS.md`.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use sysinfo::{
    CpuRefreshKind, Disks, MemoryRefreshKind, Networks, ProcessRefreshKind, ProcessesToUpdate,
    RefreshKind, System,
};
use tocsin_protocol::{Inventory, Metric};

use super::{counter_rate, pct, round2};

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

#[derive(Debug, Clone, Copy)]
struct NetSample {
    at: Instant,
    rx_bytes: u64,
    tx_bytes: u64,
    rx_errors: u64,
    tx_errors: u64,
}

/// Collects host metrics; keep one across cycles.
#[derive(Debug)]
pub struct HostCollector {
    system: System,
    disks: Disks,
    networks: Networks,
    net_prev: HashMap<String, NetSample>,
    cpu_baseline: Instant,
}

impl Default for HostCollector {
    fn default() -> Self {
        Self::new()
    }
}

impl HostCollector {
    /// Take the baselines (CPU times, network counters) that the first collection compares with.
    pub fn new() -> Self {
        // sysinfo would otherwise keep every /proc/<pid>/stat open between refreshes.
        sysinfo::set_open_files_limit(0);
        let system = System::new_with_specifics(
            RefreshKind::nothing()
                .with_cpu(CpuRefreshKind::nothing().with_cpu_usage())
                .with_memory(MemoryRefreshKind::everything()),
        );
        let disks = Disks::new_with_refreshed_list();
        let networks = Networks::new_with_refreshed_list();
        let mut collector = HostCollector {
            system,
            disks,
            networks,
            net_prev: HashMap::new(),
            cpu_baseline: Instant::now(),
        };
        let now = Instant::now();
        collector.net_prev = collector
            .networks
            .iter()
            .map(|(name, data)| {
                (
                    name.clone(),
                    NetSample {
                        at: now,
                        rx_bytes: data.total_received(),
                        tx_bytes: data.total_transmitted(),
                        rx_errors: data.total_errors_on_received(),
                        tx_errors: data.total_errors_on_transmitted(),
                    },
                )
            })
            .collect();
        collector
    }

    /// One cycle of host metrics. Blocking (reads /proc); at most ~200 ms on the very first call
    /// so CPU usage has a measurable window.
    pub fn collect(&mut self) -> Vec<Metric> {
        let mut out = Vec::with_capacity(64);
        self.collect_cpu(&mut out);
        self.collect_memory(&mut out);
        self.collect_filesystems(&mut out);
        self.collect_network(&mut out);
        self.collect_system(&mut out);
        out
    }

    fn collect_cpu(&mut self, out: &mut Vec<Metric>) {
        let since = self.cpu_baseline.elapsed();
        if since < sysinfo::MINIMUM_CPU_UPDATE_INTERVAL {
            std::thread::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL - since);
        }
        self.system.refresh_cpu_usage();
        self.cpu_baseline = Instant::now();
        let usage = f64::from(self.system.global_cpu_usage()).clamp(0.0, 100.0);
        out.push(Metric::new("cpu.usage_pct", round2(usage)));
        let load = System::load_average();
        out.push(Metric::new("load.avg_1m", round2(load.one)));
        out.push(Metric::new("load.avg_5m", round2(load.five)));
        out.push(Metric::new("load.avg_15m", round2(load.fifteen)));
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

    fn collect_filesystems(&mut self, out: &mut Vec<Metric>) {
        self.disks.refresh(true);
        // One entry per mount point; per device keep the shortest mount (bind mounts repeat it).
        let mut by_device: BTreeMap<String, (String, String, u64, u64)> = BTreeMap::new();
        for disk in self.disks.list() {
            let fs_type = disk.file_system().to_string_lossy().into_owned();
            let mount = disk.mount_point().to_string_lossy().into_owned();
            let total = disk.total_space();
            // Files bind-mounted into containers (/etc/hosts...) are not filesystems of their own.
            if total == 0 || is_pseudo_fs(&fs_type, &mount) || !disk.mount_point().is_dir() {
                continue;
            }
            let device = disk.name().to_string_lossy().into_owned();
            let key = if device.starts_with('/') {
                device
            } else {
                format!("{device}@{mount}")
            };
            let entry = (mount, fs_type, total, disk.available_space());
            match by_device.get(&key) {
                Some(existing) if existing.0.len() <= entry.0.len() => {}
                _ => {
                    by_device.insert(key, entry);
                }
            }
        }
        let mut filesystems: Vec<_> = by_device.into_values().collect();
        filesystems.sort_by(|a, b| a.0.cmp(&b.0));
        filesystems.dedup_by(|a, b| a.0 == b.0);
        for (mount, fs_type, total, available) in filesystems {
            let used = total.saturating_sub(available);
            let with = |m: Metric| {
                m.with_label("mount", mount.clone())
                    .with_label("fs_type", fs_type.clone())
            };
            out.push(with(Metric::new("fs.total_bytes", total as f64)));
            out.push(with(Metric::new("fs.used_bytes", used as f64)));
            out.push(with(Metric::new("fs.available_bytes", available as f64)));
            out.push(with(Metric::new("fs.used_pct", pct(used, total))));
        }
    }

    fn collect_network(&mut self, out: &mut Vec<Metric>) {
        self.networks.refresh(true);
        let now = Instant::now();
        let mut names: Vec<&String> = self.networks.keys().collect();
        names.sort();
        let mut next = HashMap::with_capacity(names.len());
        for name in names {
            let Some(data) = self.networks.get(name) else {
                continue;
            };
            let sample = NetSample {
                at: now,
                rx_bytes: data.total_received(),
                tx_bytes: data.total_transmitted(),
                rx_errors: data.total_errors_on_received(),
                tx_errors: data.total_errors_on_transmitted(),
            };
            if !skip_interface(name)
                && let Some(prev) = self.net_prev.get(name)
            {
                let elapsed = now.saturating_duration_since(prev.at);
                let rates = [
                    ("net.rx_bytes_per_s", prev.rx_bytes, sample.rx_bytes),
                    ("net.tx_bytes_per_s", prev.tx_bytes, sample.tx_bytes),
                    ("net.rx_errors_per_s", prev.rx_errors, sample.rx_errors),
                    ("net.tx_errors_per_s", prev.tx_errors, sample.tx_errors),
                ];
                for (metric, before, after) in rates {
                    if let Some(rate) = counter_rate(before, after, elapsed) {
                        out.push(
                            Metric::new(metric, round2(rate)).with_label("interface", name.clone()),
                        );
                    }
                }
            }
            next.insert(name.clone(), sample);
        }
        self.net_prev = next;
    }

    fn collect_system(&mut self, out: &mut Vec<Metric>) {
        out.push(Metric::new("system.uptime_s", System::uptime() as f64));
        out.push(Metric::new(
            "system.boot_time_s",
            System::boot_time() as f64,
        ));
        self.system.refresh_processes_specifics(
            ProcessesToUpdate::All,
            true,
            ProcessRefreshKind::nothing(),
        );
        let processes = self
            .system
            .processes()
            .values()
            .filter(|p| p.thread_kind().is_none())
            .count();
        out.push(Metric::new("system.process_count", processes as f64));
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
