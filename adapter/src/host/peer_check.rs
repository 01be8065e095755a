//! Serves a slot's Runtime API only to that slot's function process and its descendants.
//!
//! On Lambda the Runtime API is reachable only inside the sandbox. Here it listens on loopback,
//! where any process of the network namespace (another container of an awsvpc ECS task, a
//! sidecar, a shell) could find the port and take real requests from `/next`, post forged
//! replies, or fail invocations through `/runtime/init/error`. So each accepted connection is
//! traced to the process that owns its other end, and refused unless that is the function.
//!
//! How, on Linux: the client's end of a loopback connection is the row of `/proc/net/tcp` whose
//! local address is the peer's address and whose remote address is the listener's; its inode
//! appears as a `socket:[inode]` link under `/proc/<pid>/fd` of the process that holds it. The
//! function process is looked at first, then its descendants (`/proc/<pid>/task/*/children`),
//! for runtimes that fork. This needs `/proc` of the function readable by the adapter: the same
//! uid, no `hidepid`, a dumpable process. `--runtime-api-open` turns the check off where that
//! cannot hold.
//!
//! Elsewhere than Linux there is no such table to read: the check lets every connection through
//! (a compile-time fallback), as the listener did before.
//!
//! The check runs once per connection, before any HTTP is read: `lambda_runtime` keeps its
//! connection open and polls `/next` on it, so the cost is paid at start (and once per
//! concurrent worker), not per invocation. That cost is mostly the kernel's: producing
//! `/proc/net/tcp` walks the whole TCP hash table, however few sockets there are (about 5 ms
//! with the 262144 buckets of a 24 GiB host), so checks waiting at once share one read of the
//! table (`tcp_table`). A `sock_diag` netlink query for the exact connection would take
//! microseconds, if the cost ever matters again.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::serve::Listener;
use prometheus_client::metrics::counter::Counter;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::process::Slot;
pub(crate) use owner::client_inodes;

/// At most one warning per this long: a flood of refused connections must not flood the log.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// A Runtime API listener that hands axum only the connections of its slot's function process;
/// every other connection is closed as soon as it is accepted, counted, and logged (rate-limited).
///
/// A task accepts and checks each connection in a task of its own, so the checks of many
/// connections at once (a process with hundreds of workers, each with its own connection) run
/// together and share reads of the TCP table; what passes comes out of [`Listener::accept`].
pub(crate) struct PeerCheckedListener {
    admitted: mpsc::Receiver<(TcpStream, SocketAddr)>,
    /// The listener's own address.
    local: SocketAddr,
}

/// What the checks of one listener share.
struct Checker {
    /// The listener's own address: the remote address of the client's row in `/proc/net/tcp`.
    local: SocketAddr,
    slot: Arc<Slot>,
    refused: Counter,
    warnings: Mutex<WarnLimiter>,
}

impl PeerCheckedListener {
    /// Wraps `inner`, the Runtime API listener of `slot`; counts refusals in `refused`. Starts
    /// the accepting task, which ends when this listener is dropped.
    pub(crate) fn new(
        inner: TcpListener,
        local: SocketAddr,
        slot: Arc<Slot>,
        refused: Counter,
    ) -> Self {
        let (admit, admitted) = mpsc::channel(64);
        let checker = Arc::new(Checker {
            local,
            slot,
            refused,
            warnings: Mutex::new(WarnLimiter::default()),
        });
        tokio::spawn(accept_and_check(inner, checker, admit));
        Self { admitted, local }
    }
}

async fn accept_and_check(
    mut inner: TcpListener,
    checker: Arc<Checker>,
    admit: mpsc::Sender<(TcpStream, SocketAddr)>,
) {
    loop {
        // axum's own accept loop: retries, and backs off on errors such as EMFILE.
        let (stream, peer) = tokio::select! {
            accepted = Listener::accept(&mut inner) => accepted,
            () = admit.closed() => return,
        };
        let checker = checker.clone();
        let admit = admit.clone();
        tokio::spawn(async move {
            match checker.check(peer).await {
                Ok(()) => {
                    let _ = admit.send((stream, peer)).await;
                }
                Err(refusal) => checker.refuse(stream, peer, &refusal),
            }
        });
    }
}

impl Checker {
    /// Whether the connection from `peer` comes from the slot's current process (or a
    /// descendant of it).
    async fn check(&self, peer: SocketAddr) -> Result<(), Refusal> {
        // Between two processes of a slot (a restart) nobody may talk to the Runtime API.
        let incarnation = self.slot.current().ok_or(Refusal::NoProcess)?;
        let pid = incarnation.pid().await.ok_or(Refusal::NoProcess)?;
        let started = Instant::now();
        let owned = match super::tcp_table::client_inode(peer, self.local).await {
            Ok(Some(inode)) => {
                // /proc reads are blocking file reads: off the runtime's worker threads.
                tokio::task::spawn_blocking(move || owner::holds(pid, inode))
                    .await
                    .map_err(|error| Refusal::Unreadable(error.to_string()))?
            }
            Ok(None) => Ok(false),
            Err(error) => Err(error),
        };
        tracing::debug!(
            process = self.slot.index,
            %peer,
            pid,
            elapsed_us = started.elapsed().as_micros(),
            allowed = matches!(owned, Ok(true)),
            "checked a Runtime API connection"
        );
        match owned {
            Ok(true) => Ok(()),
            Ok(false) => Err(Refusal::NotTheFunction { pid }),
            Err(error) => Err(Refusal::Unreadable(error)),
        }
    }

    /// Closes a refused connection before a byte of HTTP is read or written, and counts it.
    fn refuse(&self, stream: TcpStream, peer: SocketAddr, refusal: &Refusal) {
        drop(stream);
        self.refused.inc();
        let admitted = crate::lock::lock(&self.warnings).admit(Instant::now());
        if let Some(suppressed) = admitted {
            tracing::warn!(
                process = self.slot.index,
                %peer,
                reason = %refusal,
                refused_since_last_warning = suppressed,
                "refused a Runtime API connection that is not from the function process \
                 (--runtime-api-open turns this check off)"
            );
        }
    }
}

impl Listener for PeerCheckedListener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        match self.admitted.recv().await {
            Some(admitted) => admitted,
            // The accepting task never stops while this listener lives.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}

/// Why a connection was refused.
#[derive(Debug)]
enum Refusal {
    /// The slot has no process right now (restarting), or it could not be spawned.
    NoProcess,
    /// The connection's other end is not held by the function process or its descendants.
    NotTheFunction { pid: u32 },
    /// `/proc` could not be read.
    Unreadable(String),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoProcess => f.write_str("no function process is running in this slot"),
            Self::NotTheFunction { pid } => {
                write!(
                    f,
                    "the peer is neither function process {pid} nor a descendant"
                )
            }
            Self::Unreadable(error) => write!(f, "could not read /proc: {error}"),
        }
    }
}

/// Lets a warning through at most once per [`WARN_EVERY`], and counts those held back.
#[derive(Debug, Default)]
struct WarnLimiter {
    last: Option<Instant>,
    held_back: u64,
}

impl WarnLimiter {
    /// `Some(held back since the last warning)` if a warning may be written at `now`.
    fn admit(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < WARN_EVERY => {
                self.held_back += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.held_back))
            }
        }
    }
}

/// Finds the inode of the client's end of the connection from `peer` to `listener`, in rows of
/// a TCP table given as `(local address, remote address, inode)`.
///
/// Both ends of a loopback connection are rows of the table; the client's is the one whose local
/// address is the peer. A dual-stack client's row is in `tcp6`, with IPv4-mapped addresses,
/// hence the canonical form. Inode 0 is a socket no process holds any more (closing): no match.
fn client_inode(
    rows: impl IntoIterator<Item = (SocketAddr, SocketAddr, u64)>,
    peer: SocketAddr,
    listener: SocketAddr,
) -> Option<u64> {
    let canonical = |addr: SocketAddr| SocketAddr::new(addr.ip().to_canonical(), addr.port());
    let (peer, listener) = (canonical(peer), canonical(listener));
    rows.into_iter()
        .find(|&(local, remote, inode)| {
            inode != 0 && canonical(local) == peer && canonical(remote) == listener
        })
        .map(|(_, _, inode)| inode)
}

/// Most processes looked at in one function's process tree: a bound on the work a check does.
const MAX_TREE: usize = 4096;

/// Whether `holds` is true of `root` or one of its descendants, breadth first, `children`
/// giving a process's children. Visits each pid once and at most [`MAX_TREE`] of them.
fn tree_holds(
    root: u32,
    mut holds: impl FnMut(u32) -> bool,
    mut children: impl FnMut(u32) -> Vec<u32>,
) -> bool {
    let mut seen = std::collections::HashSet::from([root]);
    let mut queue = std::collections::VecDeque::from([root]);
    while let Some(pid) = queue.pop_front() {
        if holds(pid) {
            return true;
        }
        for child in children(pid) {
            if seen.len() >= MAX_TREE {
                break;
            }
            if seen.insert(child) {
                queue.push_back(child);
            }
        }
    }
    false
}

/// The `/proc` reads behind the check.
#[cfg(target_os = "linux")]
mod owner {
    use std::net::SocketAddr;

    use procfs::ProcError;
    use procfs::process::{FDTarget, Process};

    /// Whether the client end of the connection from `peer` to `listener` is held by `pid` or a
    /// descendant. `Err` when the TCP table cannot be read, or `pid`'s own descriptors cannot
    /// (another uid, `hidepid`, a non-dumpable process): then the function itself would be
    /// refused, and the warning must say why. A descendant that cannot be read, or a process
    /// gone meanwhile, simply does not hold the socket.
    #[cfg(test)]
    pub(super) fn is_from(
        pid: u32,
        peer: SocketAddr,
        listener: SocketAddr,
    ) -> Result<bool, String> {
        match client_inodes(&[(peer, listener)])?
            .first()
            .copied()
            .flatten()
        {
            Some(inode) => holds(pid, inode),
            None => Ok(false),
        }
    }

    /// Whether `pid` or a descendant holds the socket `inode` (see [`is_from`]).
    pub(crate) fn holds(pid: u32, inode: u64) -> Result<bool, String> {
        let mut denied = None;
        let holds = |p: u32| match holds_socket(p, inode) {
            Ok(holds) => holds,
            Err(ProcError::PermissionDenied(_)) if p == pid => {
                denied = Some(format!("/proc/{pid}/fd is not readable by the adapter"));
                false
            }
            Err(_) => false,
        };
        if super::tree_holds(pid, holds, children) {
            return Ok(true);
        }
        denied.map_or(Ok(false), Err)
    }

    /// The client inode of each `(peer, listener)` connection, from one read of the TCP tables.
    pub(crate) fn client_inodes(
        ends: &[(SocketAddr, SocketAddr)],
    ) -> Result<Vec<Option<u64>>, String> {
        let rows = |entries: Vec<procfs::net::TcpNetEntry>| {
            entries
                .into_iter()
                .map(|e| (e.local_address, e.remote_address, e.inode))
                .collect::<Vec<_>>()
        };
        let tcp = rows(procfs::net::tcp().map_err(|e| format!("/proc/net/tcp: {e}"))?);
        let mut found: Vec<Option<u64>> = ends
            .iter()
            .map(|&(peer, listener)| super::client_inode(tcp.iter().copied(), peer, listener))
            .collect();
        if found.iter().all(Option::is_some) {
            return Ok(found);
        }
        // A dual-stack (IPv6) socket connecting to 127.0.0.1; tcp6 is absent without IPv6.
        if let Ok(tcp6) = procfs::net::tcp6().map(rows) {
            for (slot, &(peer, listener)) in found.iter_mut().zip(ends) {
                if slot.is_none() {
                    *slot = super::client_inode(tcp6.iter().copied(), peer, listener);
                }
            }
        }
        Ok(found)
    }

    fn holds_socket(pid: u32, inode: u64) -> Result<bool, ProcError> {
        let pid = i32::try_from(pid).map_err(|_| ProcError::Other(format!("pid {pid}")))?;
        let fds = Process::new(pid)?.fd()?;
        Ok(fds
            .flatten()
            .any(|fd| matches!(fd.target, FDTarget::Socket(i) if i == inode)))
    }

    /// The children of every thread of `pid` (a child belongs to the thread that forked it).
    /// Empty where the kernel lacks `CONFIG_PROC_CHILDREN`: then only the process itself counts.
    fn children(pid: u32) -> Vec<u32> {
        let Some(tasks) = process(pid).and_then(|p| p.tasks().ok()) else {
            return Vec::new();
        };
        tasks
            .flatten()
            .filter_map(|task| task.children().ok())
            .flatten()
            .collect()
    }

    fn process(pid: u32) -> Option<Process> {
        Process::new(i32::try_from(pid).ok()?).ok()
    }
}

/// No `/proc` to read: every connection is let through (see the module docs).
#[cfg(not(target_os = "linux"))]
mod owner {
    use std::net::SocketAddr;

    pub(crate) fn holds(_pid: u32, _inode: u64) -> Result<bool, String> {
        Ok(true)
    }

    pub(crate) fn client_inodes(
        ends: &[(SocketAddr, SocketAddr)],
    ) -> Result<Vec<Option<u64>>, String> {
        Ok(vec![Some(0); ends.len()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("address")
    }

    #[test]
    fn client_inode_is_the_row_whose_local_end_is_the_peer() {
        let listener = addr("127.0.0.1:9001");
        let peer = addr("127.0.0.1:40000");
        let rows = vec![
            // The listening socket, and the server's end of the connection.
            (listener, addr("0.0.0.0:0"), 10),
            (listener, peer, 11),
            // Another connection of the same peer port to another listener.
            (peer, addr("127.0.0.1:9002"), 12),
            // The client's end.
            (peer, listener, 13),
        ];
        assert_eq!(client_inode(rows, peer, listener), Some(13));
    }

    #[test]
    fn client_inode_finds_mapped_addresses_and_skips_closed_sockets() {
        let listener = addr("127.0.0.1:9001");
        let peer = addr("127.0.0.1:40000");
        let mapped = |a: SocketAddr| match a {
            SocketAddr::V4(v4) => SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port()),
            v6 => v6,
        };
        assert_eq!(
            client_inode([(mapped(peer), mapped(listener), 7)], peer, listener),
            Some(7)
        );
        assert_eq!(client_inode([(peer, listener, 0)], peer, listener), None);
        assert_eq!(client_inode([], peer, listener), None);
    }

    #[test]
    fn tree_holds_looks_at_descendants_once() {
        // 1 -> 2 -> 3, and 3 lists 1 again (a pid reused mid-walk): no endless loop.
        let children = |pid| match pid {
            1 => vec![2],
            2 => vec![3],
            3 => vec![1],
            _ => vec![],
        };
        let mut looked = Vec::new();
        assert!(tree_holds(
            1,
            |pid| {
                looked.push(pid);
                pid == 3
            },
            children
        ));
        assert_eq!(looked, [1, 2, 3]);
        assert!(!tree_holds(1, |pid| pid == 4, children));
        // Only the tree below the root is looked at.
        assert!(!tree_holds(2, |pid| pid == 1, |_| vec![]));
    }

    #[test]
    fn tree_holds_is_bounded() {
        let mut looked = 0;
        // An endless chain of children.
        assert!(!tree_holds(
            0,
            |_| {
                looked += 1;
                false
            },
            |pid| vec![pid + 1]
        ));
        assert_eq!(looked, MAX_TREE);
    }

    #[test]
    fn warnings_are_rate_limited() {
        let mut limiter = WarnLimiter::default();
        let t0 = Instant::now();
        assert_eq!(limiter.admit(t0), Some(0));
        assert_eq!(limiter.admit(t0 + Duration::from_millis(1)), None);
        assert_eq!(limiter.admit(t0 + Duration::from_secs(9)), None);
        assert_eq!(limiter.admit(t0 + WARN_EVERY), Some(2));
        assert_eq!(limiter.admit(t0 + WARN_EVERY), None);
    }

    /// Against the real `/proc`: connections from this process, from a grandchild of it, and
    /// from a process that is not the one asked about.
    #[cfg(target_os = "linux")]
    mod linux {
        use std::io::Read;
        use std::net::{TcpListener, TcpStream};
        use std::process::{Command, Stdio};

        use super::super::owner::is_from;
        use super::*;

        /// Accepts one connection within a bounded time.
        fn accept(listener: &TcpListener) -> (TcpStream, SocketAddr) {
            listener.set_nonblocking(true).expect("nonblocking");
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                match listener.accept() {
                    Ok(accepted) => return accepted,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        assert!(Instant::now() < deadline, "nobody connected");
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(e) => panic!("accept: {e}"),
                }
            }
        }

        #[test]
        fn a_connection_is_traced_to_its_process() {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let local = listener.local_addr().expect("addr");
            let _client = TcpStream::connect(local).expect("connect");
            let (_server, peer) = accept(&listener);
            assert_eq!(is_from(std::process::id(), peer, local), Ok(true));

            // Another process (a child of ours, not an ancestor) does not hold it.
            let mut other = Command::new("sleep").arg("30").spawn().expect("sleep runs");
            assert_eq!(is_from(other.id(), peer, local), Ok(false));
            let _ = other.kill();
            let _ = other.wait();
        }

        #[test]
        fn a_descendant_counts_as_the_function() {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let local = listener.local_addr().expect("addr");
            // A grandchild connects (the trailing `; true` keeps the outer bash from exec'ing
            // the inner one), then waits for the server to close.
            let script = format!(
                "bash -c 'exec 3<>/dev/tcp/127.0.0.1/{}; read -r _ <&3'; true",
                local.port()
            );
            let mut child = Command::new("bash")
                .args(["-c", &script])
                .stdin(Stdio::null())
                .spawn()
                .expect("bash runs");
            let (mut server, peer) = accept(&listener);
            assert_eq!(is_from(std::process::id(), peer, local), Ok(true));
            assert_eq!(is_from(child.id(), peer, local), Ok(true));
            server.shutdown(std::net::Shutdown::Both).expect("shutdown");
            let _ = server.read(&mut [0; 1]);
            let _ = child.wait();
        }
    }
}
