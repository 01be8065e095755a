//! Child processes: start one in its own process group, signal it, read its log, find its children.

use std::time::Duration;

/// A child process in its own process group, stopped (the whole group) when dropped, with its
/// stdout and stderr captured to a file the test can search.
#[derive(Debug)]
pub struct Service {
    child: std::process::Child,
    /// Where its output goes.
    pub log: std::path::PathBuf,
}

impl Service {
    /// Starts `command` with its output to a fresh log file named after `name`.
    pub fn start(name: &str, mut command: std::process::Command) -> Self {
        use std::os::unix::process::CommandExt;
        let log =
            std::env::temp_dir().join(format!("{name}-{}.log", uuid::Uuid::new_v4().simple()));
        let file = std::fs::File::create(&log).expect("a log file");
        let err = file.try_clone().expect("a log file handle");
        command
            .stdout(file)
            .stderr(err)
            .stdin(std::process::Stdio::null())
            .process_group(0);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({command:?}): {e}"));
        Self { child, log }
    }

    /// The process's output so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `signal` to the whole process group.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let group = nix::unistd::Pid::from_raw(-(self.child.id() as i32));
        let _ = nix::sys::signal::kill(group, signal);
    }

    /// The process's id (also its process group's id).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` to the process alone, not to the rest of its group: what an orchestrator
    /// (`docker stop`, ECS, the OOM killer) does to a container's main process.
    pub fn signal_process(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, signal);
    }

    /// Its exit status if it has exited, `None` while it runs.
    pub fn try_exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().expect("waitpid on a child")
    }

    /// Waits at most `timeout` for the process to exit; panics with its output past it.
    pub async fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let what = format!("{} to exit", self.log.display());
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit_status() {
                return status;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what}; output:\n{}",
                    self.output()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The live child processes of the process (of any of its threads).
    pub fn children(&self) -> Vec<u32> {
        children_of(self.child.id())
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.signal(nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// The live (not zombie) processes whose parent is `pid`, read from `/proc/*/stat`.
pub fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&child| {
            proc_stat(child).is_some_and(|(state, parent)| parent == pid && state != 'Z')
        })
        .collect()
}

/// Whether `pid` is a running process (it exists and is not a zombie).
pub fn is_alive(pid: u32) -> bool {
    proc_stat(pid).is_some_and(|(state, _)| state != 'Z' && state != 'X')
}

/// The process's command name (`/proc/<pid>/comm`: the executable's file name, at most 15 bytes).
pub fn process_name(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|name| name.trim_end().to_string())
}

/// `(state, parent pid)` from `/proc/<pid>/stat`. The command name in parentheses may itself
/// hold spaces and parentheses, so the fields are read after its last `)`.
fn proc_stat(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat.get(stat.rfind(')')? + 1..)?.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let parent = fields.next()?.parse().ok()?;
    Some((state, parent))
}

/// The path of a workspace binary in the debug target directory (`$CARGO_TARGET_DIR/debug` or
/// `<workspace>/target/debug`), for tests that start the real binaries as a user would. Panics
/// with how to build it when it is missing: `cargo test` builds only the package under test's
/// binaries, `scripts/test` runs `cargo build --workspace --bins` first.
pub fn workspace_binary(name: &str) -> std::path::PathBuf {
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("test-support lives in the workspace")
        .to_path_buf();
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace.join(dir),
        None => workspace.join("target"),
    };
    let path = target.join("debug").join(name);
    assert!(
        path.is_file(),
        "{} is missing: build the workspace's binaries first (`cargo build --workspace --bins`, \
         which `scripts/test` runs)",
        path.display()
    );
    path
}

/// The JSON log lines of `output` (tracing's JSON format, flattened or not) whose message is
/// `message`. Lines that are not JSON objects are skipped.
pub fn log_events(output: &str, message: &str) -> Vec<serde_json::Value> {
    output
        .lines()
        .filter(|line| line.contains(message))
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|event| {
            event.get("message").and_then(|m| m.as_str()) == Some(message)
                || event.pointer("/fields/message").and_then(|m| m.as_str()) == Some(message)
        })
        .collect()
}
