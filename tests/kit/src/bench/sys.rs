//! What the bench reads from the machine and from /proc.

use std::collections::BTreeMap;

use crate::net::time::{rfc3339, unix_now};

/// The machine the figures were taken on.
#[derive(Debug, Clone)]
pub struct Machine {
    /// `YYYY-MM-DD HH:MM UTC`.
    pub date: String,
    /// CPUs this process may run on (what `nproc` prints).
    pub nproc: usize,
    /// `model name` from /proc/cpuinfo.
    pub cpu: String,
    /// /proc/sys/kernel/osrelease.
    pub kernel: String,
}

impl Machine {
    pub fn read() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == "model name").then(|| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        Machine {
            date: utc_now(),
            nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_string())
                .unwrap_or_default(),
        }
    }
}

/// The current time as `YYYY-MM-DD HH:MM UTC`.
pub fn utc_now() -> String {
    // `YYYY-MM-DDTHH:MM:SSZ` → `YYYY-MM-DD HH:MM UTC`.
    let t = rfc3339(unix_now());
    format!("{} {} UTC", &t[..10], &t[11..16])
}

/// Clock ticks per second (`getconf CLK_TCK`).
pub fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// utime + stime of the whole process (dead threads included), in ticks.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ")": state is field 3 of stat(5), utime 14, stime 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Time on CPU and times scheduled in, for one thread or summed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sched {
    pub cpu_ns: u64,
    /// Times the thread was put on a CPU (≈ wake-ups).
    pub runs: u64,
}

impl Sched {
    /// `self - earlier`, saturating (a thread may have gone in between).
    pub fn since(self, earlier: Sched) -> Sched {
        Sched {
            cpu_ns: self.cpu_ns.saturating_sub(earlier.cpu_ns),
            runs: self.runs.saturating_sub(earlier.runs),
        }
    }
}

/// /proc/PID/task/*/schedstat per thread name (threads of one name summed;
/// the main thread is `main`, as Rust's unnamed threads inherit its name):
/// nanosecond CPU time, finer than ticks, but blind to threads that have exited.
pub fn sched_by_thread(pid: u32) -> BTreeMap<String, Sched> {
    let mut by: BTreeMap<String, Sched> = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return by;
    };
    for t in tasks.filter_map(Result::ok) {
        let name = if t.file_name().to_str() == Some(pid.to_string().as_str()) {
            "main".to_string()
        } else {
            let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
            format!("other {}", comm.trim())
        };
        let stat = std::fs::read_to_string(t.path().join("schedstat")).unwrap_or_default();
        let mut f = stat
            .split_whitespace()
            .map(|x| x.parse::<u64>().unwrap_or(0));
        let (cpu_ns, _wait, runs) = (f.next(), f.next(), f.next());
        let e = by.entry(name).or_default();
        e.cpu_ns += cpu_ns.unwrap_or(0);
        e.runs += runs.unwrap_or(0);
    }
    by
}

/// [`sched_by_thread`] summed over all live threads.
pub fn sched_total(pid: u32) -> Sched {
    sched_by_thread(pid)
        .values()
        .fold(Sched::default(), |a, s| Sched {
            cpu_ns: a.cpu_ns + s.cpu_ns,
            runs: a.runs + s.runs,
        })
}

/// The ids of the process's live threads (/proc/PID/task): the same set at
/// both ends of a stretch means [`sched_total`] saw all of its CPU time.
pub fn thread_ids(pid: u32) -> std::collections::BTreeSet<u32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .filter_map(|t| t.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// Names of the process's live threads (from /proc/PID/task/*/comm), counted.
pub fn thread_names(pid: u32) -> BTreeMap<String, usize> {
    let mut names = BTreeMap::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.filter_map(Result::ok) {
            let name = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
            *names.entry(name.trim().to_string()).or_insert(0) += 1;
        }
    }
    names
}

/// The kB fields of /proc/PID/smaps_rollup (`Rss`, `Pss`, `Anonymous`, ...).
pub fn smaps_rollup(pid: u32) -> Vec<(String, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            let kb = v.trim().strip_suffix("kB")?.trim().parse().ok()?;
            Some((k.trim().to_string(), kb))
        })
        .collect()
}

/// Resident kB per mapping (binary, `[heap]`, anonymous, each library),
/// largest first, from /proc/PID/smaps.
pub fn rss_by_mapping(pid: u32) -> Vec<(String, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let mut by: BTreeMap<String, u64> = BTreeMap::new();
    let mut current = String::new();
    for line in text.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            // A mapping header: range perms offset dev inode [path].
            let path = line.split_whitespace().nth(5).unwrap_or("");
            current = if path.is_empty() {
                "anonymous (thread stacks, mmap'd allocations)".to_string()
            } else {
                path.rsplit('/').next().unwrap_or(path).to_string()
            };
        } else if let Some(v) = line.strip_prefix("Rss:") {
            let kb: u64 = v.trim().trim_end_matches("kB").trim().parse().unwrap_or(0);
            *by.entry(current.clone()).or_insert(0) += kb;
        }
    }
    let mut v: Vec<(String, u64)> = by.into_iter().filter(|(_, kb)| *kb > 0).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v
}

/// Where `program` is, looked up through PATH.
pub fn which(program: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_our_own_process() {
        let pid = std::process::id();
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        assert!(cpu_ticks(pid).is_some());
        assert!(sched_total(pid).cpu_ns > 0);
        assert!(sched_by_thread(pid).contains_key("main"));
        assert!(smaps_rollup(pid)
            .iter()
            .any(|(k, kb)| k == "Rss" && *kb > 0));
        assert!(!rss_by_mapping(pid).is_empty());
        assert!(!thread_names(pid).is_empty());
        assert!(thread_ids(pid).contains(&pid));
        let m = Machine::read();
        assert!(m.nproc >= 1);
        assert!(m.date.ends_with(" UTC") && m.date.len() == 20, "{}", m.date);
    }
}
