//! Resident memory of a process and its descendants, from `/proc/<pid>/status`.

use std::fs;

/// Memory figures of one process, in KiB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcMem {
    /// Process id.
    pub pid: u32,
    /// Executable name (`/proc/<pid>/comm`).
    pub name: String,
    /// Resident set size now (`VmRSS`).
    pub rss_kb: u64,
    /// Peak resident set size since start (`VmHWM`).
    pub hwm_kb: u64,
}

/// Reads one `kB` field (e.g. `VmHWM`) of `/proc/<pid>/status`.
pub fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse().ok())
}

/// The direct children of `pid`, from `/proc/<pid>/task/*/children`.
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut kids: Vec<u32> = tasks
        .flatten()
        .filter_map(|task| fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|text| {
            text.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect();
    kids.sort_unstable();
    kids.dedup();
    kids
}

/// Memory of `pid` itself, if it still runs.
pub fn mem(pid: u32) -> Option<ProcMem> {
    let name = fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|n| n.trim().to_owned())
        .unwrap_or_default();
    Some(ProcMem {
        pid,
        name,
        rss_kb: status_kb(pid, "VmRSS")?,
        hwm_kb: status_kb(pid, "VmHWM")?,
    })
}

/// Memory of `pid` and of every descendant, the root first (depth at most 4: the adapter's
/// function processes are its direct children).
pub fn tree(pid: u32) -> Vec<ProcMem> {
    let mut out = Vec::new();
    let mut level = vec![pid];
    for _ in 0..4 {
        let mut next = Vec::new();
        for p in level {
            if let Some(m) = mem(p) {
                out.push(m);
            }
            next.extend(children(p));
        }
        if next.is_empty() {
            break;
        }
        level = next;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = mem(std::process::id()).expect("own status");
        assert!(me.rss_kb > 0 && me.hwm_kb >= me.rss_kb);
        assert_eq!(tree(std::process::id())[0].pid, std::process::id());
    }
}
