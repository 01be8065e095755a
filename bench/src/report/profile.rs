//! Section 6 of `BENCHMARKS.md`: per-request cost in counts (`scripts/profile`).

use std::fmt::{self, Write as _};

use super::{Results, num};

/// The instructions and system calls per request of the adapter and of the function process.
pub(super) fn profile(md: &mut String, r: &Results) -> fmt::Result {
    writeln!(md, "## 6. Per-request cost (`scripts/profile`)\n")?;
    writeln!(
        md,
        "`adapter http -- echo`, `GET /echo` on one keep-alive connection. User-space instructions \
         per request from valgrind's callgrind (the difference between a run of N and one of 3N \
         requests, over 2N), system calls per request from `strace -c`: counts, not times, so they \
         do not move with the machine's load. *function* is the echo process under \
         `lambda_runtime`.\n"
    )?;
    writeln!(
        md,
        "| process | instructions / request | syscalls / request | most frequent syscalls / request |\n\
         | --- | ---: | ---: | --- |"
    )?;
    for row in r.all("profile", &[]) {
        let calls = row
            .keys()
            .filter(|k| {
                !matches!(
                    *k,
                    "process" | "requests" | "instructions_per_request" | "syscalls_per_request"
                )
            })
            .map(|k| format!("{k} {}", row.s(k)))
            .collect::<Vec<_>>()
            .join(", ");
        writeln!(
            md,
            "| {} | {} | {} | {} |",
            row.s("process"),
            num(row.n("instructions_per_request"), 0),
            num(row.n("syscalls_per_request"), 1),
            calls
        )?;
    }
    writeln!(md)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_row_per_process_with_syscalls_in_line_order() {
        let results = Results::parse(
            "bench profile process=adapter requests=400 instructions_per_request=147028 \
             syscalls_per_request=14.2 epoll_wait=3.9 recvfrom=3.0\n",
        );
        let mut md = String::new();
        profile(&mut md, &results).expect("writes");
        assert!(
            md.contains("| adapter | 147028 | 14.2 | epoll_wait 3.9, recvfrom 3.0 |"),
            "{md}"
        );
    }
}
