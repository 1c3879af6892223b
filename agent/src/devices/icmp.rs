//! ICMP echo probing of devices (surge-ping): loss and round-trip time, with one shared socket per address family.
//!
//! An [`IcmpPinger`] opens its sockets lazily, on first use inside the runtime, and keeps them:
//! an unprivileged ICMP socket (`SOCK_DGRAM`, allowed when `net.ipv4.ping_group_range` covers
//! our group) when possible, else a raw socket (needs `CAP_NET_RAW`). When neither opens, the
//! probe says so in one line with the fix, and tries again next cycle. Clones share the sockets,
//! so one pinger can serve every device of an agent; sequence numbers are unique across clones.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use surge_ping::{Client, Config, ICMP, PingIdentifier, PingSequence, SurgeError};
use tokio::task::JoinSet;

use crate::collect::round2;

/// Echo payload (like `ping -s 32`).
const PAYLOAD: [u8; 32] = [0x74; 32];
/// Preferred gap between two echo requests of one cycle.
const MAX_SPACING: Duration = Duration::from_millis(150);

/// What to say when no ICMP socket can be opened for lack of privileges.
pub const NO_ICMP_SOCKET: &str = "cannot open an ICMP socket: unprivileged ICMP is off (net.ipv4.ping_group_range) and CAP_NET_RAW is missing; grant CAP_NET_RAW or widen ping_group_range";

/// No ICMP socket could be opened; displays as one line saying why and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct IcmpUnavailable(pub String);

/// The outcome of one cycle of echo requests.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct IcmpOutcome {
    /// Echo requests sent (or attempted).
    pub sent: u32,
    /// Round-trip times of the answered ones.
    pub rtts: Vec<Duration>,
    /// Why some requests could not even be sent (e.g. network unreachable), if so.
    pub send_error: Option<String>,
}

impl IcmpOutcome {
    pub fn received(&self) -> u32 {
        u32::try_from(self.rtts.len()).unwrap_or(u32::MAX)
    }

    /// Lost echoes in percent (0 when nothing was sent), rounded to 0.01.
    pub fn loss_pct(&self) -> f64 {
        loss_pct(self.sent, self.received())
    }

    /// Average round trip of the answered echoes in milliseconds (0.001 ms resolution).
    pub fn rtt_avg_ms(&self) -> Option<f64> {
        if self.rtts.is_empty() {
            return None;
        }
        let total: f64 = self.rtts.iter().map(Duration::as_secs_f64).sum();
        Some(round3(total * 1000.0 / self.rtts.len() as f64))
    }

    /// Slowest answered echo in milliseconds.
    pub fn rtt_max_ms(&self) -> Option<f64> {
        self.rtts
            .iter()
            .max()
            .map(|d| round3(d.as_secs_f64() * 1000.0))
    }
}

/// `100 * (sent - received) / sent`, 0 when nothing was sent.
pub fn loss_pct(sent: u32, received: u32) -> f64 {
    if sent == 0 {
        return 0.0;
    }
    let lost = sent.saturating_sub(received);
    round2(f64::from(lost) * 100.0 / f64::from(sent))
}

/// Sub-millisecond round trips need more than two decimals.
fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// Gap between echo requests: at most 150 ms, and all of them sent within the part of the
/// interval the last one's timeout leaves, so a cycle ends within the interval.
pub fn spacing(interval: Duration, timeout: Duration, count: u32) -> Duration {
    if count <= 1 {
        return Duration::ZERO;
    }
    let room = interval.saturating_sub(timeout) / count;
    room.min(MAX_SPACING)
}

/// The one-line reason for a socket that would not open.
pub fn socket_error_message(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::PermissionDenied => NO_ICMP_SOCKET.to_string(),
        _ => format!("cannot open an ICMP socket: {e}"),
    }
}

#[derive(Default)]
enum Socket {
    #[default]
    Untried,
    /// Shared by `Arc`, never cloned: surge-ping 0.8 shuts a client's reply routing down when
    /// any clone of it drops.
    Open(Arc<Client>),
    Failed(String),
}

#[derive(Default)]
struct Sockets {
    v4: Socket,
    v6: Socket,
}

/// Sends echo requests; cheap to clone (clones share the sockets).
#[derive(Clone)]
pub struct IcmpPinger {
    sockets: Arc<Mutex<Sockets>>,
    seq: Arc<AtomicU16>,
    ident: u16,
}

impl std::fmt::Debug for IcmpPinger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IcmpPinger")
            .field("ident", &self.ident)
            .finish_non_exhaustive()
    }
}

impl Default for IcmpPinger {
    fn default() -> Self {
        Self::new()
    }
}

impl IcmpPinger {
    /// A pinger; its sockets open on first use (inside the tokio runtime).
    pub fn new() -> Self {
        // Raw sockets see every echo reply on the host: a per-process identifier keeps ours apart.
        let ident = (std::process::id() & 0xffff) as u16;
        IcmpPinger {
            sockets: Arc::new(Mutex::new(Sockets::default())),
            seq: Arc::new(AtomicU16::new(ident.rotate_left(8))),
            ident,
        }
    }

    /// The socket for this address family, opened now if it is not yet; a socket that
    /// failed to open is tried again (privileges or the sysctl may have changed).
    fn client(&self, addr: IpAddr) -> Result<Arc<Client>, IcmpUnavailable> {
        let mut sockets = self
            .sockets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (slot, kind) = match addr {
            IpAddr::V4(_) => (&mut sockets.v4, ICMP::V4),
            IpAddr::V6(_) => (&mut sockets.v6, ICMP::V6),
        };
        if let Socket::Open(client) = slot {
            return Ok(Arc::clone(client));
        }
        // surge-ping tries SOCK_DGRAM first and falls back to SOCK_RAW by itself.
        match Client::new(&Config::builder().kind(kind).build()) {
            Ok(client) => {
                let client = Arc::new(client);
                *slot = Socket::Open(Arc::clone(&client));
                Ok(client)
            }
            Err(e) => {
                let message = socket_error_message(&e);
                if !matches!(slot, Socket::Failed(m) if *m == message) {
                    tracing::warn!(family = ?kind, "{message}");
                }
                *slot = Socket::Failed(message.clone());
                Err(IcmpUnavailable(message))
            }
        }
    }

    fn next_seq(&self) -> u16 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Send `count` echo requests `spacing` apart, each waiting at most `timeout` for its answer.
    /// Takes about `(count - 1) * spacing + timeout` at worst.
    pub async fn probe(
        &self,
        addr: IpAddr,
        count: u32,
        timeout: Duration,
        spacing: Duration,
    ) -> Result<IcmpOutcome, IcmpUnavailable> {
        let client = self.client(addr)?;
        let mut tasks = JoinSet::new();
        for i in 0..count {
            let client = Arc::clone(&client);
            let seq = PingSequence(self.next_seq());
            let ident = PingIdentifier(self.ident);
            let delay = spacing * i;
            tasks.spawn(async move {
                tokio::time::sleep(delay).await;
                let mut pinger = client.pinger(addr, ident).await;
                pinger.timeout(timeout);
                pinger.ping(seq, &PAYLOAD).await.map(|(_, rtt)| rtt)
            });
        }
        let mut outcome = IcmpOutcome {
            sent: count,
            ..IcmpOutcome::default()
        };
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(Ok(rtt)) => outcome.rtts.push(rtt),
                Ok(Err(SurgeError::Timeout { .. })) => {}
                Ok(Err(e)) => {
                    outcome.send_error.get_or_insert_with(|| one_line(&e));
                }
                Err(e) => {
                    outcome.send_error.get_or_insert_with(|| one_line(&e));
                }
            }
        }
        Ok(outcome)
    }
}

fn one_line(e: &dyn std::fmt::Display) -> String {
    e.to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_is_computed_from_sent_and_received() {
        assert_eq!(loss_pct(3, 3), 0.0);
        assert_eq!(loss_pct(3, 0), 100.0);
        assert_eq!(loss_pct(3, 2), 33.33);
        assert_eq!(loss_pct(4, 1), 75.0);
        assert_eq!(loss_pct(0, 0), 0.0);
        // A duplicate reply never makes loss negative.
        assert_eq!(loss_pct(2, 3), 0.0);
    }

    #[test]
    fn round_trip_figures() {
        let o = IcmpOutcome {
            sent: 3,
            rtts: vec![Duration::from_micros(100), Duration::from_micros(300)],
            send_error: None,
        };
        assert_eq!(o.received(), 2);
        assert_eq!(o.loss_pct(), 33.33);
        assert_eq!(o.rtt_avg_ms(), Some(0.2));
        assert_eq!(o.rtt_max_ms(), Some(0.3));
        let none = IcmpOutcome {
            sent: 3,
            ..IcmpOutcome::default()
        };
        assert_eq!((none.rtt_avg_ms(), none.rtt_max_ms()), (None, None));
        assert_eq!(none.loss_pct(), 100.0);
    }

    #[test]
    fn echoes_fit_in_the_interval() {
        let s = Duration::from_secs;
        assert_eq!(spacing(s(10), s(2), 3), Duration::from_millis(150));
        assert_eq!(spacing(s(10), s(2), 1), Duration::ZERO);
        // 20 echoes, 1s interval, 500ms timeout: 25ms apart.
        assert_eq!(
            spacing(s(1), Duration::from_millis(500), 20),
            Duration::from_millis(25)
        );
        assert_eq!(spacing(s(2), s(2), 5), Duration::ZERO);
    }

    #[test]
    fn missing_privileges_say_how_to_fix_them() {
        let denied = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        assert_eq!(socket_error_message(&denied), NO_ICMP_SOCKET);
        let eperm = std::io::Error::from_raw_os_error(1);
        assert_eq!(socket_error_message(&eperm), NO_ICMP_SOCKET);
        let other = std::io::Error::from_raw_os_error(97); // EAFNOSUPPORT
        let m = socket_error_message(&other);
        assert!(m.starts_with("cannot open an ICMP socket: "), "{m}");
        assert!(!m.contains('\n'));
    }

    #[tokio::test]
    async fn loopback_answers_every_echo() {
        let pinger = IcmpPinger::new();
        let addr: IpAddr = "127.0.0.1".parse().expect("ip");
        let timeout = Duration::from_secs(1);
        let o = pinger
            .probe(addr, 3, timeout, Duration::from_millis(100))
            .await
            .expect("root or ping_group_range: an ICMP socket opens");
        assert_eq!((o.sent, o.received(), o.loss_pct()), (3, 3, 0.0), "{o:?}");
        let avg = o.rtt_avg_ms().expect("answered");
        assert!((0.0..50.0).contains(&avg), "{avg}");
        // The socket is kept and reused; a clone shares it.
        let again = pinger
            .clone()
            .probe(addr, 2, timeout, Duration::ZERO)
            .await
            .expect("reused socket");
        assert_eq!(again.received(), 2, "{again:?}");
    }

    #[tokio::test]
    async fn ipv6_loopback_answers_when_the_machine_has_ipv6() {
        if std::net::UdpSocket::bind("[::1]:0").is_err() {
            eprintln!("skipped: no IPv6 loopback on this machine");
            return;
        }
        let o = IcmpPinger::new()
            .probe(
                "::1".parse().expect("ip"),
                2,
                Duration::from_secs(1),
                Duration::from_millis(50),
            )
            .await
            .expect("an ICMPv6 socket opens");
        assert_eq!(o.received(), 2, "{o:?}");
    }
}
