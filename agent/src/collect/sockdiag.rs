//! TCP connection counts per state from a netlink sock_diag (inet_diag) dump, the cheap way.
//!
//! A dump and a read of /proc/net/tcp both make the kernel scan every bucket of the TCP
//! established hash table, however few sockets there are; but a dump scans it once per family
//! and formats no text, while each /proc/net/tcp{,6} file costs two scans (the read that fills
//! the buffer and the one that finds the end): about half the kernel time on a host with a
//! large table.
//!
//! The counts come in the order of [`procfs::TCP_STATES`], so [`tcp_state_counts`] replaces
//! [`procfs::count_tcp_states`] over /proc/net/tcp and /proc/net/tcp6 (one dump for AF_INET,
//! one for AF_INET6, split by socket family the same way as the two files).
//!
//! Bounded: one socket per call, one receive buffer of a few pages reused for every datagram,
//! a receive timeout and an overall deadline, so a silent or endless kernel answer gives an
//! error instead of a hang.
//!
//! [`procfs::TCP_STATES`]: super::procfs::TCP_STATES
//! [`procfs::count_tcp_states`]: super::procfs::count_tcp_states

use std::time::{Duration, Instant};

use netlink_packet_core::{
    DoneBuffer, ErrorBuffer, ErrorMessage, NLM_F_DUMP, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR,
    NLMSG_OVERRUN, NetlinkBuffer, NetlinkHeader, NetlinkMessage, Parseable,
};
use netlink_packet_sock_diag::SockDiagMessage;
use netlink_packet_sock_diag::constants::{AF_INET, AF_INET6, IPPROTO_TCP, SOCK_DIAG_BY_FAMILY};
use netlink_packet_sock_diag::inet::{
    ExtensionFlags, InetRequest, InetResponseHeader, SocketId, StateFlags,
};
use netlink_sys::Socket;
use netlink_sys::protocols::NETLINK_SOCK_DIAG;
use nix::sys::socket::{MsgFlags, setsockopt, sockopt};
use nix::sys::time::TimeVal;

/// Receive buffer: the kernel sizes dump datagrams to the reader's buffer (at most 32 KiB) or
/// one page, whichever is larger, so four pages hold any datagram it sends us.
const RECV_BUF_LEN: usize = 16 * 1024;

/// Longest wait for one datagram.
const RECV_TIMEOUT_S: i64 = 2;

/// Longest time for both dumps together (a host with a huge socket count still gives up).
const DEADLINE: Duration = Duration::from_secs(5);

/// Count the TCP sockets of this network namespace by state (index = kernel state - 1, as
/// [`procfs::TCP_STATES`](super::procfs::TCP_STATES)), IPv4 then IPv6. The error is a one-line
/// reason (no netlink, sock_diag refused, timeout, malformed answer).
pub fn tcp_state_counts() -> Result<[u64; 11], String> {
    let socket = Socket::new(NETLINK_SOCK_DIAG).map_err(|e| format!("netlink socket: {e}"))?;
    setsockopt(
        &socket,
        sockopt::ReceiveTimeout,
        &TimeVal::new(RECV_TIMEOUT_S, 0),
    )
    .map_err(|e| format!("netlink receive timeout: {e}"))?;
    let deadline = Instant::now() + DEADLINE;
    let mut buf = vec![0u8; RECV_BUF_LEN];
    let mut counts = [0u64; 11];
    for (seq, family) in [(1, AF_INET), (2, AF_INET6)] {
        let request = dump_request(family, seq);
        socket
            .send(&request, 0)
            .map_err(|e| format!("sock_diag request: {e}"))?;
        loop {
            if Instant::now() > deadline {
                return Err(format!(
                    "sock_diag dump unfinished after {}s",
                    DEADLINE.as_secs()
                ));
            }
            // MSG_TRUNC: the kernel returns the datagram's real length, so a truncation shows.
            let n = socket
                .recv(&mut &mut buf[..], MsgFlags::MSG_TRUNC.bits())
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                        format!("no sock_diag answer within {RECV_TIMEOUT_S}s")
                    }
                    _ => format!("sock_diag receive: {e}"),
                })?;
            let datagram = buf.get(..n).ok_or_else(|| {
                format!("sock_diag datagram of {n} bytes exceeds the {RECV_BUF_LEN}-byte buffer")
            })?;
            if count_datagram(datagram, seq, &mut counts)? == Dump::Done {
                break;
            }
        }
    }
    Ok(counts)
}

/// The serialized dump request for all TCP sockets of one address family, any state, no
/// extensions (the state is in the fixed header).
fn dump_request(family: u8, seq: u32) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    header.sequence_number = seq;
    let socket_id = if family == AF_INET6 {
        SocketId::new_v6()
    } else {
        SocketId::new_v4()
    };
    let mut message = NetlinkMessage::new(
        header,
        SockDiagMessage::InetRequest(InetRequest {
            family,
            protocol: IPPROTO_TCP,
            extensions: ExtensionFlags::empty(),
            states: StateFlags::all(),
            socket_id,
        })
        .into(),
    );
    message.finalize();
    let mut buf = vec![0u8; message.buffer_len()];
    message.serialize(&mut buf);
    buf
}

/// Whether a dump goes on after one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dump {
    More,
    Done,
}

/// Add the sockets of one received datagram (the netlink messages answering request `seq`)
/// to `counts` (index = state - 1; states outside 1..=11 are ignored). `Done` once the dump's
/// NLMSG_DONE arrived; an NLMSG_ERROR, an overrun or a malformed message is an error.
fn count_datagram(datagram: &[u8], seq: u32, counts: &mut [u64; 11]) -> Result<Dump, String> {
    let mut rest = datagram;
    while !rest.is_empty() {
        let msg = NetlinkBuffer::new_checked(rest)
            .map_err(|e| format!("malformed sock_diag answer: {e}"))?;
        let len = msg.length() as usize;
        if msg.sequence_number() == seq {
            let payload = msg.payload();
            match msg.message_type() {
                SOCK_DIAG_BY_FAMILY => {
                    let socket = InetResponseHeader::parse(payload)
                        .map_err(|e| format!("malformed inet_diag message: {e}"))?;
                    if (1..=11).contains(&socket.state) {
                        counts[usize::from(socket.state - 1)] += 1;
                    }
                }
                NLMSG_DONE => {
                    // The dump's own result; older kernels may send no code at all.
                    let code = DoneBuffer::new_checked(payload).map_or(0, |d| d.code());
                    if code < 0 {
                        let e = std::io::Error::from_raw_os_error(-code);
                        return Err(format!("sock_diag dump failed: {e}"));
                    }
                    return Ok(Dump::Done);
                }
                NLMSG_ERROR => {
                    let error = ErrorBuffer::new_checked(&payload)
                        .and_then(|b| ErrorMessage::parse(&b))
                        .map_err(|e| format!("malformed netlink error: {e}"))?;
                    // A code of 0 is an acknowledgement, not an error.
                    if error.code.is_some() {
                        return Err(format!("sock_diag request refused: {error}"));
                    }
                }
                NLMSG_OVERRUN => return Err("sock_diag answer overrun".to_string()),
                _ => {}
            }
        }
        // Messages are 4-byte aligned within a datagram; the last one may lack the padding.
        let step = len.div_ceil(4) * 4;
        rest = rest.get(step..).unwrap_or_default();
    }
    Ok(Dump::More)
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};

    use netlink_packet_core::{DoneMessage, NetlinkPayload};
    use netlink_packet_sock_diag::inet::InetResponse;

    use super::super::procfs;
    use super::*;

    /// Index of a state name in [`procfs::TCP_STATES`].
    fn idx(state: &str) -> usize {
        procfs::TCP_STATES
            .iter()
            .position(|s| *s == state)
            .expect("known state")
    }

    fn emit(seq: u32, payload: NetlinkPayload<SockDiagMessage>) -> Vec<u8> {
        let mut header = NetlinkHeader::default();
        header.sequence_number = seq;
        let mut message = NetlinkMessage::new(header, payload);
        message.finalize();
        let mut buf = vec![0u8; message.buffer_len()];
        message.serialize(&mut buf);
        buf
    }

    fn socket(seq: u32, family: u8, state: u8) -> Vec<u8> {
        let socket_id = if family == AF_INET6 {
            SocketId::new_v6()
        } else {
            SocketId::new_v4()
        };
        let header = InetResponseHeader {
            family,
            state,
            timer: None,
            socket_id,
            recv_queue: 0,
            send_queue: 0,
            uid: 1000,
            inode: 42,
        };
        emit(
            seq,
            NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(Box::new(InetResponse {
                header,
                nlas: Default::default(),
            }))),
        )
    }

    fn done(seq: u32, code: i32) -> Vec<u8> {
        let mut message = DoneMessage::default();
        message.code = code;
        emit(seq, NetlinkPayload::Done(message))
    }

    fn error(seq: u32, code: i32) -> Vec<u8> {
        let mut message = ErrorMessage::default();
        message.code = std::num::NonZeroI32::new(code);
        message.header = vec![0; 16];
        emit(seq, NetlinkPayload::Error(message))
    }

    #[test]
    fn request_is_a_tcp_dump_of_every_state() {
        let req = dump_request(AF_INET6, 7);
        let msg = NetlinkBuffer::new_checked(&req[..]).expect("netlink message");
        assert_eq!(msg.length() as usize, req.len());
        assert_eq!(req.len(), 16 + 56, "nlmsghdr + inet_diag_req_v2");
        assert_eq!(msg.message_type(), SOCK_DIAG_BY_FAMILY);
        assert_eq!(msg.flags(), NLM_F_REQUEST | NLM_F_DUMP);
        assert_eq!(msg.sequence_number(), 7);
        let p = msg.payload();
        assert_eq!((p[0], p[1], p[2]), (AF_INET6, IPPROTO_TCP, 0));
        // idiag_states: bits 1..=11 (TCP_ESTABLISHED..TCP_CLOSING).
        assert_eq!(u32::from_ne_bytes([p[4], p[5], p[6], p[7]]), 0xffe);
        assert_eq!(dump_request(AF_INET, 1)[16], AF_INET);
    }

    #[test]
    fn datagram_counts_by_state_until_done() {
        let mut counts = [0u64; 11];
        let mut datagram = Vec::new();
        for state in [1, 1, 10, 6, 0, 12, 11] {
            datagram.extend(socket(3, AF_INET, state));
        }
        // An answer to another request is skipped.
        datagram.extend(socket(9, AF_INET, 1));
        assert_eq!(count_datagram(&datagram, 3, &mut counts), Ok(Dump::More));
        assert_eq!(counts[idx("established")], 2);
        assert_eq!(counts[idx("listen")], 1);
        assert_eq!(counts[idx("time_wait")], 1);
        assert_eq!(counts[idx("closing")], 1);
        assert_eq!(counts.iter().sum::<u64>(), 5, "states 0 and 12 are ignored");

        let mut last = socket(3, AF_INET6, 10);
        last.extend(done(3, 0));
        last.extend(socket(3, AF_INET6, 10));
        assert_eq!(count_datagram(&last, 3, &mut counts), Ok(Dump::Done));
        assert_eq!(counts[idx("listen")], 2, "nothing counted after DONE");
        assert_eq!(count_datagram(&[], 3, &mut counts), Ok(Dump::More));
    }

    #[test]
    fn errors_are_readable() {
        let mut counts = [0u64; 11];
        let refused = count_datagram(&error(1, -1), 1, &mut counts).expect_err("EPERM");
        assert!(
            refused.contains("refused") && refused.contains("not permitted"),
            "{refused}"
        );
        // An acknowledgement (code 0) is no error.
        assert_eq!(count_datagram(&error(1, 0), 1, &mut counts), Ok(Dump::More));
        let failed = count_datagram(&done(1, -12), 1, &mut counts).expect_err("ENOMEM");
        assert!(failed.contains("dump failed"), "{failed}");

        let whole = socket(1, AF_INET, 1);
        let truncated = count_datagram(&whole[..whole.len() - 8], 1, &mut counts)
            .expect_err("truncated message");
        assert!(truncated.starts_with("malformed"), "{truncated}");
        let mut short = whole.clone();
        short[..4].copy_from_slice(&20u32.to_ne_bytes());
        assert!(
            count_datagram(&short, 1, &mut counts).is_err(),
            "payload too short"
        );
        assert_eq!(counts, [0; 11]);
    }

    /// A listener and a connected pair on `ip`; `None` when that family is unavailable.
    fn open_pair(ip: std::net::IpAddr) -> Option<(TcpListener, TcpStream, TcpStream)> {
        let listener = TcpListener::bind(SocketAddr::new(ip, 0)).ok()?;
        let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        Some((listener, client, server))
    }

    fn proc_counts() -> [u64; 11] {
        let mut counts = [0u64; 11];
        for path in ["/proc/net/tcp", "/proc/net/tcp6"] {
            if let Some(text) = procfs::read(path) {
                procfs::count_tcp_states(&text, &mut counts);
            }
        }
        counts
    }

    #[test]
    fn counts_agree_with_proc_net_tcp() {
        let mut held = Vec::new();
        held.extend(open_pair(Ipv4Addr::LOCALHOST.into()));
        held.extend(open_pair(Ipv6Addr::LOCALHOST.into()));
        assert!(!held.is_empty(), "no loopback TCP");
        let listen = held.len() as u64;
        let established = 2 * listen;

        // Other tests open and close sockets meanwhile: retry until both see the same listeners.
        let mut last = None;
        for _ in 0..10 {
            let diag = tcp_state_counts().expect("sock_diag dump");
            let proc = proc_counts();
            for (what, counts) in [("sock_diag", diag), ("/proc/net/tcp", proc)] {
                assert!(counts[idx("listen")] >= listen, "{what}: {counts:?}");
                assert!(
                    counts[idx("established")] >= established,
                    "{what}: {counts:?}"
                );
            }
            if diag[idx("listen")] == proc[idx("listen")] {
                return;
            }
            last = Some((diag, proc));
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("listen counts never agreed: {last:?}");
    }

    /// Not a test: `cargo test --release -p tocsin-agent --lib collect::sockdiag -- --ignored
    /// --nocapture` compares the cost of a dump with reading and parsing /proc/net/tcp{,6}.
    #[test]
    #[ignore]
    fn measure_sockdiag_against_proc() {
        const CALLS: u32 = 200;
        // This thread's CPU time (user + system) in ns, from the scheduler's accounting.
        fn cpu_ns() -> u64 {
            procfs::read("/proc/thread-self/schedstat")
                .and_then(|s| s.split_whitespace().next()?.parse().ok())
                .expect("schedstat")
        }
        fn measure(what: &str, mut f: impl FnMut() -> u64) {
            let (wall, cpu) = (Instant::now(), cpu_ns());
            let mut sink = 0;
            for _ in 0..CALLS {
                sink += f();
            }
            let cpu = cpu_ns() - cpu;
            let wall = wall.elapsed();
            println!(
                "{what}: {:.1} us wall, {:.1} us CPU per call ({} sockets seen per call)",
                wall.as_secs_f64() * 1e6 / f64::from(CALLS),
                cpu as f64 / 1e3 / f64::from(CALLS),
                sink / u64::from(CALLS),
            );
        }
        let _held = open_pair(Ipv4Addr::LOCALHOST.into());
        measure("sock_diag", || {
            tcp_state_counts().expect("dump").iter().sum()
        });
        measure("/proc/net/tcp{,6}", || proc_counts().iter().sum());
    }
}
