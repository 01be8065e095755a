//! The open-file limit, which bounds how many connections the adapter can hold.

/// File descriptors kept free for everything but HTTP clients: the admin listener (health
/// checks), the Runtime API and its connections, function pipes, SQS and log output.
const RESERVED: u64 = 256;

/// Raises the soft open-file limit to the hard one, as Go's runtime does at start: the soft
/// default (often 1024) is a leftover of `select(2)`, and a service that holds thousands of
/// connections needs more. Returns the soft limit in force afterwards.
#[cfg(unix)]
pub(crate) fn raise_limit() -> Option<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return Some(hard);
    }
    Some(soft)
}

#[cfg(not(unix))]
pub(crate) fn raise_limit() -> Option<u64> {
    None
}

/// `wanted` connections, or fewer if the open-file limit would not leave [`RESERVED`] free.
pub(crate) fn connection_cap(wanted: usize) -> usize {
    let Some(limit) = raise_limit() else {
        return wanted;
    };
    let cap = fit(wanted, limit);
    if cap < wanted {
        tracing::warn!(
            wanted,
            cap,
            open_file_limit = limit,
            "--max-connections lowered to fit the open-file limit"
        );
    }
    cap
}

fn fit(wanted: usize, limit: u64) -> usize {
    let room = usize::try_from(limit.saturating_sub(RESERVED)).unwrap_or(usize::MAX);
    wanted.min(room).max(1)
}

#[cfg(test)]
mod tests {
    use super::fit;

    #[test]
    fn the_cap_leaves_reserved_descriptors_free() {
        assert_eq!(fit(4096, 1_048_576), 4096);
        assert_eq!(fit(4096, 1024), 768);
        assert_eq!(fit(4096, 100), 1);
    }
}
