//! SNMPv2c polling of a device (snmp2): system group (sysUpTime, sysName, sysDescr) and a bounded GETBULK walk of the interface table.
//!
//! Every request waits at most the device timeout and is tried at most twice; a whole poll
//! stays within a time budget. After a failed request the session (its UDP socket) is
//! dropped, so a late answer can never be taken for the next request's; the session is also
//! dropped at the end of each poll (it holds two 64 KiB buffers: no memory kept per device
//! between cycles). The interface columns
//! are walked side by side (one GETBULK carries every unfinished column), each stopping at
//! the end of its subtree or after [`MAX_INTERFACES`] rows.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use snmp2::{AsyncSession, Oid};

use super::interfaces::{Column, IfTable, SnmpValue, set};
use crate::config::device::SnmpConfig;
use crate::config::format_duration;

/// Most interfaces read per device and cycle.
pub const MAX_INTERFACES: usize = 512;
/// Longest sysName / sysDescr kept.
const MAX_SYS_TEXT: usize = 1024;
/// Varbinds asked for per GETBULK (spread over the unfinished columns): about 4 KB answers.
const VARBINDS_PER_REQUEST: usize = 96;
/// Tries per request.
const TRIES: u32 = 2;

const SYS_DESCR: [u64; 9] = [1, 3, 6, 1, 2, 1, 1, 1, 0];
const SYS_UPTIME: [u64; 9] = [1, 3, 6, 1, 2, 1, 1, 3, 0];
const SYS_NAME: [u64; 9] = [1, 3, 6, 1, 2, 1, 1, 5, 0];

/// Why a poll got nothing. Displays as one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnmpError {
    #[error("SNMP timed out after {} ({tries} tries)", format_duration(*timeout))]
    Timeout { timeout: Duration, tries: u32 },
    #[error("SNMP time budget of {} ran out", format_duration(*budget))]
    Budget { budget: Duration },
    #[error("SNMP to {addr}: no answer, port unreachable (is an SNMP agent listening?)")]
    Receive { addr: SocketAddr },
    #[error("SNMP to {addr}: cannot open a UDP socket: {message}")]
    Socket { addr: SocketAddr, message: String },
    #[error("SNMP to {addr}: {message}")]
    Protocol { addr: SocketAddr, message: String },
    #[error("SNMP agent at {addr} answered with error status {status} ({})", error_status_name(*status))]
    Status { addr: SocketAddr, status: u32 },
}

/// RFC 3416 error-status names.
pub fn error_status_name(status: u32) -> &'static str {
    const NAMES: [&str; 19] = [
        "noError",
        "tooBig",
        "noSuchName",
        "badValue",
        "readOnly",
        "genErr",
        "noAccess",
        "wrongType",
        "wrongLength",
        "wrongEncoding",
        "wrongValue",
        "noCreation",
        "inconsistentValue",
        "resourceUnavailable",
        "commitFailed",
        "undoFailed",
        "authorizationError",
        "notWritable",
        "inconsistentName",
    ];
    usize::try_from(status)
        .ok()
        .and_then(|i| NAMES.get(i))
        .copied()
        .unwrap_or("unknown")
}

/// sysUpTime.0, sysName.0, sysDescr.0 as answered.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SystemInfo {
    /// Hundredths of a second since the agent (re)started.
    pub uptime_ticks: Option<u32>,
    pub sys_name: Option<String>,
    pub sys_descr: Option<String>,
}

impl SystemInfo {
    /// Read the answer to the system GET (any order, missing values left `None`).
    pub fn from_varbinds(varbinds: &[(Vec<u64>, SnmpValue)]) -> Self {
        let mut info = SystemInfo::default();
        for (oid, value) in varbinds {
            if oid.as_slice() == SYS_UPTIME {
                info.uptime_ticks = match value {
                    SnmpValue::Timeticks(t) => Some(*t),
                    other => other.as_u64().and_then(|v| u32::try_from(v).ok()),
                };
            } else if oid.as_slice() == SYS_NAME {
                info.sys_name = value.as_text(MAX_SYS_TEXT);
            } else if oid.as_slice() == SYS_DESCR {
                info.sys_descr = value.as_text(MAX_SYS_TEXT);
            }
        }
        info
    }
}

/// One successful poll.
#[derive(Debug, Clone, PartialEq)]
pub struct SnmpPoll {
    pub system: SystemInfo,
    /// How long the system GET took to be answered.
    pub response: Duration,
    pub interfaces: IfTable,
    /// When the interface walk stopped early, why (the table holds what was read).
    pub walk_problem: Option<String>,
    /// When the counters were read (end of the walk).
    pub at: Instant,
}

/// The walk of several table columns side by side.
#[derive(Debug, Clone)]
pub struct Walk {
    columns: Vec<ColumnWalk>,
    max_rows: usize,
    /// A column hit `max_rows`.
    pub truncated: bool,
}

#[derive(Debug, Clone)]
struct ColumnWalk {
    column: Column,
    base: Vec<u64>,
    last: Vec<u64>,
    rows: usize,
    done: bool,
}

impl Walk {
    pub fn new(columns: &[Column], max_rows: usize) -> Self {
        Walk {
            columns: columns
                .iter()
                .map(|&column| ColumnWalk {
                    column,
                    base: column.oid(),
                    last: column.oid(),
                    rows: 0,
                    done: false,
                })
                .collect(),
            max_rows,
            truncated: false,
        }
    }

    pub fn finished(&self) -> bool {
        self.columns.iter().all(|c| c.done)
    }

    /// Where each unfinished column goes on from, in order.
    pub fn next_oids(&self) -> Vec<Vec<u64>> {
        self.columns
            .iter()
            .filter(|c| !c.done)
            .map(|c| c.last.clone())
            .collect()
    }

    /// Repetitions for the next GETBULK.
    pub fn repetitions(&self) -> u32 {
        let active = self.columns.iter().filter(|c| !c.done).count().max(1);
        u32::try_from((VARBINDS_PER_REQUEST / active).clamp(1, 32)).unwrap_or(1)
    }

    /// Take the answer to a GETBULK built from [`Walk::next_oids`]: varbind `i` belongs to the
    /// `i % n`-th column asked for. A column ends at an OID outside its subtree, at
    /// endOfMibView, at an OID that does not grow (broken agent), or at `max_rows`.
    pub fn absorb(&mut self, varbinds: Vec<(Vec<u64>, SnmpValue)>, table: &mut IfTable) {
        let active: Vec<usize> = (0..self.columns.len())
            .filter(|&i| !self.columns[i].done)
            .collect();
        if varbinds.is_empty() || active.is_empty() {
            // No progress possible: stop rather than ask the same again.
            self.columns.iter_mut().for_each(|c| c.done = true);
            return;
        }
        for (i, (oid, value)) in varbinds.into_iter().enumerate() {
            let c = &mut self.columns[active[i % active.len()]];
            if c.done {
                continue;
            }
            if value == SnmpValue::EndOfMib
                || oid.len() <= c.base.len()
                || !oid.starts_with(&c.base)
                || oid <= c.last
            {
                c.done = true;
                continue;
            }
            if let [index] = &oid[c.base.len()..]
                && let Ok(index) = u32::try_from(*index)
            {
                set(table, c.column, index, &value);
                c.rows += 1;
            }
            c.last = oid;
            if c.rows >= self.max_rows {
                c.done = true;
                self.truncated = true;
            }
        }
    }
}

/// An answer, copied out of the session's buffer.
struct Answer {
    error_status: u32,
    varbinds: Vec<(Vec<u64>, SnmpValue)>,
}

enum Request<'a> {
    Get(&'a [Vec<u64>]),
    Bulk(&'a [Vec<u64>], u32),
}

/// Polls one device. Holds a UDP session only while a poll runs.
pub struct SnmpPoller {
    community: Vec<u8>,
    port: u16,
    timeout: Duration,
    /// Boxed: the session holds two 64 KiB buffers.
    session: Option<(SocketAddr, Box<AsyncSession>)>,
}

impl std::fmt::Debug for SnmpPoller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnmpPoller")
            .field("port", &self.port)
            .field("timeout", &self.timeout)
            .field("connected", &self.session.as_ref().map(|(a, _)| *a))
            .finish_non_exhaustive()
    }
}

impl SnmpPoller {
    pub fn new(config: &SnmpConfig, timeout: Duration) -> Self {
        SnmpPoller {
            community: config.community.expose().as_bytes().to_vec(),
            port: config.port,
            timeout,
            session: None,
        }
    }

    /// Poll the agent at `ip`: system group, then the interface table, within `budget`.
    /// Fails only when the system GET fails; a walk that stops early still returns what it read.
    pub async fn poll(&mut self, ip: IpAddr, budget: Duration) -> Result<SnmpPoll, SnmpError> {
        let result = self.poll_session(ip, budget).await;
        self.session = None;
        result
    }

    async fn poll_session(&mut self, ip: IpAddr, budget: Duration) -> Result<SnmpPoll, SnmpError> {
        let deadline = Instant::now() + budget;
        let addr = SocketAddr::new(ip, self.port);
        let oids = [SYS_UPTIME.to_vec(), SYS_NAME.to_vec(), SYS_DESCR.to_vec()];
        let (answer, response) = self
            .call(addr, &Request::Get(&oids), deadline, budget)
            .await?;
        if answer.error_status != 0 {
            return Err(SnmpError::Status {
                addr,
                status: answer.error_status,
            });
        }
        let system = SystemInfo::from_varbinds(&answer.varbinds);

        let mut table = IfTable::new();
        let mut walk = Walk::new(&Column::ALL, MAX_INTERFACES);
        let mut walk_problem = None;
        while !walk.finished() {
            let next = walk.next_oids();
            let request = Request::Bulk(&next, walk.repetitions());
            match self.call(addr, &request, deadline, budget).await {
                Ok((answer, _)) if answer.error_status != 0 => {
                    let e = SnmpError::Status {
                        addr,
                        status: answer.error_status,
                    };
                    walk_problem = Some(format!("interface walk stopped: {e}"));
                    break;
                }
                Ok((answer, _)) => walk.absorb(answer.varbinds, &mut table),
                Err(e) => {
                    walk_problem = Some(format!(
                        "interface walk stopped after {} interfaces: {e}",
                        table.len()
                    ));
                    break;
                }
            }
        }
        if walk.truncated && walk_problem.is_none() {
            walk_problem = Some(format!(
                "more than {MAX_INTERFACES} interfaces: only the first {MAX_INTERFACES} are reported"
            ));
        }
        Ok(SnmpPoll {
            system,
            response,
            interfaces: table,
            walk_problem,
            at: Instant::now(),
        })
    }

    /// One request: at most [`TRIES`] attempts, each bounded by the timeout and the deadline.
    /// Returns the answer and how long the answered attempt took.
    async fn call(
        &mut self,
        addr: SocketAddr,
        request: &Request<'_>,
        deadline: Instant,
        budget: Duration,
    ) -> Result<(Answer, Duration), SnmpError> {
        let mut last = SnmpError::Budget { budget };
        for tries in 1..=TRIES {
            let now = Instant::now();
            if now >= deadline {
                return Err(last);
            }
            let timeout = self.timeout;
            let wait = timeout.min(deadline - now);
            let session = self.session(addr).await?;
            let result = tokio::time::timeout(wait, attempt(session, request)).await;
            match result {
                Ok(Ok(answer)) => return Ok((answer, now.elapsed())),
                Ok(Err(e)) => {
                    last = match e {
                        snmp2::Error::Receive => SnmpError::Receive { addr },
                        other => SnmpError::Protocol {
                            addr,
                            message: other.to_string(),
                        },
                    };
                }
                Err(_) if wait < timeout => last = SnmpError::Budget { budget },
                Err(_) => last = SnmpError::Timeout { timeout, tries },
            }
            // A late answer must not be read as the next request's: new socket.
            self.session = None;
        }
        Err(last)
    }

    async fn session(&mut self, addr: SocketAddr) -> Result<&mut AsyncSession, SnmpError> {
        if self.session.as_ref().is_none_or(|(a, _)| *a != addr) {
            self.session = None;
            let session = Box::pin(AsyncSession::new_v2c(addr, &self.community, first_req_id()))
                .await
                .map_err(|e| SnmpError::Socket {
                    addr,
                    message: e.to_string(),
                })?;
            self.session = Some((addr, Box::new(session)));
        }
        match self.session.as_mut() {
            Some((_, session)) => Ok(session),
            None => Err(SnmpError::Socket {
                addr,
                message: "no session".to_string(),
            }),
        }
    }
}

/// A request id unlikely to repeat across sessions.
fn first_req_id() -> i32 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    i32::try_from(nanos & 0x3fff_ffff).unwrap_or(1)
}

fn to_oids(oids: &[Vec<u64>]) -> Result<Vec<Oid<'static>>, snmp2::Error> {
    oids.iter()
        .map(|o| Oid::from(o).map_err(|_| snmp2::Error::ValueOutOfRange))
        .collect()
}

async fn attempt(
    session: &mut AsyncSession,
    request: &Request<'_>,
) -> Result<Answer, snmp2::Error> {
    let (oids, reps) = match request {
        Request::Get(oids) => (to_oids(oids)?, None),
        Request::Bulk(oids, reps) => (to_oids(oids)?, Some(*reps)),
    };
    let refs: Vec<&Oid<'_>> = oids.iter().collect();
    let pdu = match reps {
        None => session.get_many(&refs).await?,
        Some(reps) => session.getbulk(&refs, 0, reps).await?,
    };
    let error_status = pdu.error_status;
    let varbinds = pdu
        .varbinds
        .map(|(oid, value)| {
            let arcs: Vec<u64> = oid.iter().map(|arcs| arcs.collect()).unwrap_or_default();
            (arcs, SnmpValue::from_value(&value))
        })
        .collect();
    Ok(Answer {
        error_status,
        varbinds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oid(base: &[u64], index: u64) -> Vec<u64> {
        let mut o = base.to_vec();
        o.push(index);
        o
    }

    #[test]
    fn system_values_are_read_in_any_order() {
        let vb = vec![
            (SYS_NAME.to_vec(), SnmpValue::Text(b"core-sw-1".to_vec())),
            (
                SYS_DESCR.to_vec(),
                SnmpValue::Text(b"Cisco IOS\r\nVersion 15".to_vec()),
            ),
            (SYS_UPTIME.to_vec(), SnmpValue::Timeticks(12_345)),
        ];
        let s = SystemInfo::from_varbinds(&vb);
        assert_eq!(s.uptime_ticks, Some(12_345));
        assert_eq!(s.sys_name.as_deref(), Some("core-sw-1"));
        assert_eq!(s.sys_descr.as_deref(), Some("Cisco IOS Version 15"));
        let missing = SystemInfo::from_varbinds(&[(SYS_NAME.to_vec(), SnmpValue::Absent)]);
        assert_eq!(missing, SystemInfo::default());
    }

    #[test]
    fn columns_are_walked_side_by_side_to_the_end_of_their_subtree() {
        let cols = [Column::Descr, Column::OperStatus];
        let mut w = Walk::new(&cols, 512);
        let mut t = IfTable::new();
        assert_eq!(
            w.next_oids(),
            vec![Column::Descr.oid(), Column::OperStatus.oid()]
        );
        assert_eq!(w.repetitions(), 32);
        let d = Column::Descr.oid();
        let o = Column::OperStatus.oid();
        // Row-major answer: (descr.1, oper.1), (descr.2, oper.2), (past descr, past oper).
        w.absorb(
            vec![
                (oid(&d, 1), SnmpValue::Text(b"lo".to_vec())),
                (oid(&o, 1), SnmpValue::Integer(1)),
                (oid(&d, 2), SnmpValue::Text(b"eth0".to_vec())),
                (oid(&o, 2), SnmpValue::Integer(2)),
                (oid(&Column::Speed.oid(), 1), SnmpValue::Unsigned32(1)),
                (oid(&Column::InOctets.oid(), 1), SnmpValue::Counter32(1)),
            ],
            &mut t,
        );
        assert!(w.finished() && !w.truncated);
        assert_eq!(t.len(), 2);
        assert_eq!(t[&2].descr.as_deref(), Some("eth0"));
        assert_eq!(t[&2].oper_status, Some(2));
        // The speed value past the descr column was not taken.
        assert_eq!(t[&1].speed, None);
    }

    #[test]
    fn a_walk_goes_on_where_each_column_stopped() {
        let cols = [Column::Name, Column::HcInOctets];
        let mut w = Walk::new(&cols, 512);
        let mut t = IfTable::new();
        let n = Column::Name.oid();
        let h = Column::HcInOctets.oid();
        // Only part of a row fits: the second column does not move.
        w.absorb(vec![(oid(&n, 1), SnmpValue::Text(b"a".to_vec()))], &mut t);
        assert_eq!(w.next_oids(), vec![oid(&n, 1), h.clone()]);
        // The name column ends (endOfMibView) while the counter column goes on.
        w.absorb(
            vec![
                (n.clone(), SnmpValue::EndOfMib),
                (oid(&h, 1), SnmpValue::Counter64(9)),
            ],
            &mut t,
        );
        assert_eq!(w.next_oids(), vec![oid(&h, 1)]);
        assert_eq!(w.repetitions(), 32);
        // A non-increasing OID ends the column (a broken agent must not loop us).
        w.absorb(vec![(oid(&h, 1), SnmpValue::Counter64(9))], &mut t);
        assert!(w.finished());
        assert_eq!(t[&1].hc_in_octets, Some(9));
        // An empty answer ends the walk.
        let mut w = Walk::new(&cols, 512);
        w.absorb(Vec::new(), &mut t);
        assert!(w.finished());
    }

    #[test]
    fn walks_are_bounded() {
        let mut w = Walk::new(&[Column::OperStatus], 3);
        let mut t = IfTable::new();
        let o = Column::OperStatus.oid();
        w.absorb(
            (1..=5)
                .map(|i| (oid(&o, i), SnmpValue::Integer(1)))
                .collect(),
            &mut t,
        );
        assert!(w.finished() && w.truncated);
        assert_eq!(t.len(), 3);
        let w = Walk::new(&Column::ALL, 512);
        assert_eq!(w.repetitions(), 6);
    }

    #[test]
    fn errors_are_one_line() {
        let addr: SocketAddr = "127.0.0.1:161".parse().expect("addr");
        let e = SnmpError::Timeout {
            timeout: Duration::from_secs(2),
            tries: 2,
        };
        assert_eq!(e.to_string(), "SNMP timed out after 2s (2 tries)");
        let e = SnmpError::Status { addr, status: 5 };
        assert_eq!(
            e.to_string(),
            "SNMP agent at 127.0.0.1:161 answered with error status 5 (genErr)"
        );
        assert_eq!(error_status_name(99), "unknown");
    }

    #[tokio::test]
    async fn a_closed_port_fails_fast_or_times_out_within_the_budget() {
        let port = {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
            s.local_addr().expect("addr").port()
        };
        let mut config = SnmpConfig::v2c("public");
        config.port = port;
        let mut p = SnmpPoller::new(&config, Duration::from_millis(300));
        let started = Instant::now();
        let e = p
            .poll("127.0.0.1".parse().expect("ip"), Duration::from_secs(2))
            .await
            .expect_err("nothing listens");
        assert!(started.elapsed() < Duration::from_millis(1500), "{e}");
        assert!(
            matches!(e, SnmpError::Receive { .. } | SnmpError::Timeout { .. }),
            "{e}"
        );
    }
}
