//! Node facts from the kernel: boot id, uptime, kernel release and CPU and
//! memory use from the `/proc` files under one root directory (`/` in
//! production, a fixture tree in tests), the architecture from `uname` and
//! disk use from `statvfs` of that root.
//!
//! Parsing is pure functions over text; [`Host`] only reads files and calls
//! them. Nothing here panics on what a file holds, reads more than 64 KiB of
//! one, or judges whether a value is too high (that is [`super::judge`]).

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

const STAT: &str = "proc/stat";
const MEMINFO: &str = "proc/meminfo";
const UPTIME: &str = "proc/uptime";
const BOOT_ID: &str = "proc/sys/kernel/random/boot_id";
const OSRELEASE: &str = "proc/sys/kernel/osrelease";

/// The most read of any one file: these are all small, whatever one holds.
const MAX_READ: u64 = 64 * 1024;

/// Everything read from the node at one moment. A part that could not be
/// read or made sense of is `None`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Sample {
    /// The kernel's random id of this boot, a UUID.
    pub boot_id: Option<String>,
    /// Time since the node booted.
    pub uptime: Option<Duration>,
    /// The kernel release, as `uname -r` shows it.
    pub kernel: Option<String>,
    /// The machine, as `uname -m` shows it: `x86_64`, `aarch64`.
    pub arch: Option<String>,
    pub cpu: Cpu,
    pub memory: Option<Memory>,
    pub disk: Option<Disk>,
}

/// CPU use across all cores since the previous sample, and the core count.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Cpu {
    /// Share of non-idle time, 0–100. `None` when there is no earlier
    /// reading of this boot to compare with.
    pub used_percent: Option<f64>,
    /// Online cores.
    pub cores: Option<u32>,
}

/// Memory in use: `MemTotal − MemAvailable`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Memory {
    pub used_percent: f64,
    pub used_bytes: u64,
    pub total_bytes: u64,
}

/// The filesystem holding the root: used = 1 − available / total, where
/// available is what an unprivileged writer may still use.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Disk {
    pub used_percent: f64,
    pub free_bytes: u64,
    pub total_bytes: u64,
}

/// Reads the node through one root directory, and keeps the previous CPU
/// counters so that each sample has the use since the one before.
#[derive(Debug)]
pub struct Host {
    root: PathBuf,
    last_cpu: Option<CpuTimes>,
    last_boot_id: Option<String>,
}

impl Host {
    /// `root` is "/" in production; tests point it at a fixture tree.
    /// Reads `/proc/stat` once, so the first sample already has a CPU delta.
    pub fn new(root: impl Into<PathBuf>) -> Host {
        let mut host = Host {
            root: root.into(),
            last_cpu: None,
            last_boot_id: None,
        };
        host.last_cpu = host.read(STAT, parse_stat);
        host.last_boot_id = host.read(BOOT_ID, parse_boot_id);
        host
    }

    /// Reads everything once. Never panics; a part that cannot be read or
    /// parsed is `None` (logged at debug level).
    pub fn sample(&mut self) -> Sample {
        let boot_id = self.read(BOOT_ID, parse_boot_id);
        let rebooted = self.note_boot_id(boot_id.as_deref());
        Sample {
            uptime: self.read(UPTIME, parse_uptime),
            kernel: self.read(OSRELEASE, parse_kernel),
            arch: Some(machine()),
            cpu: self.cpu(rebooted),
            memory: self.read(MEMINFO, parse_meminfo),
            disk: statvfs(&self.root),
            boot_id,
        }
    }

    /// Use since the last reading, which this one replaces. An unreadable
    /// `/proc/stat` keeps the old baseline: the next use spans both windows.
    fn cpu(&mut self, rebooted: bool) -> Cpu {
        let Some(text) = self.read_text(STAT) else {
            return Cpu::default();
        };
        let cores = count_cores(&text);
        let Some(now) = parse_stat(&text) else {
            log::debug!("node: no aggregate cpu line in {STAT}");
            return Cpu {
                used_percent: None,
                cores,
            };
        };
        let used_percent = match self.last_cpu.replace(now) {
            Some(_) if rebooted => None,
            Some(before) => used_percent(before, now),
            None => None,
        };
        if used_percent.is_none() {
            log::debug!("node: no cpu use: no earlier counters of this boot, or no tick passed");
        }
        Cpu {
            used_percent,
            cores,
        }
    }

    /// Whether the boot id differs from the last one read, remembering it.
    fn note_boot_id(&mut self, boot_id: Option<&str>) -> bool {
        let Some(id) = boot_id else {
            return false;
        };
        match self.last_boot_id.as_deref() {
            Some(last) if last == id => false,
            last => {
                let changed = last.is_some();
                self.last_boot_id = Some(id.to_string());
                changed
            }
        }
    }

    /// The file at `rel` under the root, parsed.
    fn read<T>(&self, rel: &str, parse: fn(&str) -> Option<T>) -> Option<T> {
        let value = parse(&self.read_text(rel)?);
        if value.is_none() {
            log::debug!(
                "node: cannot make sense of {}",
                self.root.join(rel).display()
            );
        }
        value
    }

    fn read_text(&self, rel: &str) -> Option<String> {
        let path = self.root.join(rel);
        read_bounded(&path)
            .inspect_err(|e| log::debug!("node: cannot read {}: {e}", path.display()))
            .ok()
    }
}

/// At most [`MAX_READ`] bytes of a file; bytes that are not UTF-8 become
/// U+FFFD (a cut in the middle of a character, say).
fn read_bounded(path: &Path) -> io::Result<String> {
    let mut bytes = Vec::new();
    File::open(path)?.take(MAX_READ).read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The fields of the aggregate `cpu` line that count: user nice system idle
/// iowait irq softirq steal, in clock ticks. guest and guest_nice are
/// already inside user and nice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CpuTimes([u64; FIELDS]);

const FIELDS: usize = 8;
/// Kernels before 2.6 have user nice system idle only.
const MIN_FIELDS: usize = 4;
const IDLE: usize = 3;
const IOWAIT: usize = 4;

/// The aggregate `cpu` line of `/proc/stat`. Missing trailing fields (old
/// kernels) are 0; fields after steal are ignored.
fn parse_stat(text: &str) -> Option<CpuTimes> {
    let line = text
        .lines()
        .find(|line| line.split_whitespace().next() == Some("cpu"))?;
    let mut fields = line.split_whitespace().skip(1);
    let mut ticks = [0; FIELDS];
    for (i, slot) in ticks.iter_mut().enumerate() {
        match fields.next() {
            Some(field) => *slot = field.parse().ok()?,
            None if i >= MIN_FIELDS => break,
            None => return None,
        }
    }
    Some(CpuTimes(ticks))
}

/// The number of `cpuN` lines of `/proc/stat`: the online cores.
fn count_cores(text: &str) -> Option<u32> {
    let cores = text.lines().filter(|line| is_core_line(line)).count();
    u32::try_from(cores).ok().filter(|&n| n > 0)
}

fn is_core_line(line: &str) -> bool {
    line.split_whitespace()
        .next()
        .and_then(|name| name.strip_prefix("cpu"))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Non-idle share of the ticks between two readings, 0–100. `None` when a
/// counter went backwards (another boot) or no tick passed.
fn used_percent(before: CpuTimes, now: CpuTimes) -> Option<f64> {
    let (mut total, mut idle) = (0u128, 0u128);
    for (i, (b, n)) in before.0.into_iter().zip(now.0).enumerate() {
        let delta = u128::from(n.checked_sub(b)?);
        total += delta;
        if i == IDLE || i == IOWAIT {
            idle += delta;
        }
    }
    (total > 0).then(|| 100.0 * (total - idle) as f64 / total as f64)
}

/// `MemTotal − MemAvailable` from `/proc/meminfo`. `None` without
/// MemAvailable (kernels before 3.14) or with a MemTotal of 0.
fn parse_meminfo(text: &str) -> Option<Memory> {
    let total_bytes = meminfo_bytes(text, "MemTotal")?;
    let available = meminfo_bytes(text, "MemAvailable")?;
    if total_bytes == 0 {
        return None;
    }
    let used_bytes = total_bytes.saturating_sub(available);
    Some(Memory {
        used_percent: 100.0 * used_bytes as f64 / total_bytes as f64,
        used_bytes,
        total_bytes,
    })
}

/// The first `key:   N kB` line, in bytes.
fn meminfo_bytes(text: &str, key: &str) -> Option<u64> {
    let rest = text
        .lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))?;
    let mut parts = rest.split_whitespace();
    let kib: u64 = parts.next()?.parse().ok()?;
    (parts.next() == Some("kB")).then_some(())?;
    kib.checked_mul(1024)
}

/// The boot id, if it looks like a UUID.
fn parse_boot_id(text: &str) -> Option<String> {
    let id = text.trim();
    looks_like_uuid(id).then(|| id.to_string())
}

/// `8-4-4-4-12` hex digits.
fn looks_like_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// The first field of `/proc/uptime`: seconds since boot, fractional.
fn parse_uptime(text: &str) -> Option<Duration> {
    let secs: f64 = text.split_whitespace().next()?.parse().ok()?;
    Duration::try_from_secs_f64(secs).ok()
}

/// The kernel release: the first line, trimmed.
fn parse_kernel(text: &str) -> Option<String> {
    let release = text.lines().next()?.trim();
    (!release.is_empty()).then(|| release.to_string())
}

/// The machine `uname` reports, else the one this binary was built for.
fn machine() -> String {
    uname_machine().unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

fn uname_machine() -> Option<String> {
    // SAFETY: utsname is plain C data, for which all-zero bytes are a valid
    // value; uname fills the one we own and NUL-terminates each field.
    let (rc, uts) = unsafe {
        let mut uts: libc::utsname = std::mem::zeroed();
        let rc = libc::uname(&mut uts);
        (rc, uts)
    };
    if rc != 0 {
        log::debug!("node: uname: {}", io::Error::last_os_error());
        return None;
    }
    c_chars_to_string(&uts.machine)
}

/// The text of a C char array up to its first NUL (or its end); `None` when
/// empty or not UTF-8.
fn c_chars_to_string(chars: &[libc::c_char]) -> Option<String> {
    let bytes: Vec<u8> = chars
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8(bytes).ok().filter(|s| !s.is_empty())
}

/// Use of the filesystem holding `root`.
fn statvfs(root: &Path) -> Option<Disk> {
    let Ok(path) = CString::new(root.as_os_str().as_bytes()) else {
        log::debug!("node: statvfs: a NUL in {}", root.display());
        return None;
    };
    // SAFETY: statvfs is plain C data, for which all-zero bytes are a valid
    // value; `path` is a NUL-terminated string that outlives the call, and
    // statvfs writes only into the struct we own.
    let (rc, st) = unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        let rc = libc::statvfs(path.as_ptr(), &mut st);
        (rc, st)
    };
    if rc != 0 {
        let error = io::Error::last_os_error();
        log::debug!("node: statvfs {}: {error}", root.display());
        return None;
    }
    let block_size = if st.f_frsize != 0 {
        st.f_frsize
    } else {
        st.f_bsize
    };
    disk_from(wide(st.f_blocks), wide(st.f_bavail), wide(block_size))
}

/// A statvfs count as u64: the C types are 32 bits wide on some targets.
fn wide(n: impl Into<u64>) -> u64 {
    n.into()
}

/// Disk use from statvfs's block counts. `None` for a filesystem of no
/// blocks or of blocks of no size.
fn disk_from(blocks: u64, available: u64, block_size: u64) -> Option<Disk> {
    if blocks == 0 || block_size == 0 {
        return None;
    }
    let available = available.min(blocks);
    Some(Disk {
        used_percent: 100.0 * (blocks - available) as f64 / blocks as f64,
        free_bytes: available.saturating_mul(block_size),
        total_bytes: blocks.saturating_mul(block_size),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// The aggregate line of a 2-core machine (this one, once)...
    const BEFORE: &str = "629869 193692 220654 1021136 12189 0 20095 6513 0 0";
    /// ...and later: user +100, system +50, idle +200, iowait +50, and
    /// guest +40 (already inside user): 150 of 400 ticks busy.
    const AFTER: &str = "629969 193692 220704 1021336 12239 0 20095 6513 40 0";

    /// A `/proc/stat` as a 2-core machine writes it, with `cpu` as its
    /// aggregate line's numbers.
    fn stat(cpu: &str) -> String {
        format!(
            "cpu  {cpu}\n\
             cpu0 285218 96807 106059 547836 2463 0 9824 3342 0 0\n\
             cpu1 344650 96885 114594 473299 9726 0 10271 3170 0 0\n\
             intr 33609104 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1 1 14 0 0 0 0 2128 990 0 185 1 834007 0 37214\n\
             ctxt 94884740\n\
             btime 1796159908\n\
             processes 710904\n\
             procs_running 1\n\
             procs_blocked 1\n\
             softirq 40640535 0 1231955 5 34452989 834000 0 6886 1853151 6033 2255516\n"
        )
    }

    const MEMINFO_TEXT: &str = "\
MemTotal:       24684084 kB
MemFree:        22493404 kB
MemAvailable:   24163580 kB
Buffers:            8904 kB
Cached:          1464684 kB
SwapCached:            0 kB
Active:           778852 kB
Inactive:         690992 kB
Active(anon):       1520 kB
Inactive(anon):     3612 kB
Active(file):     777332 kB
Inactive(file):   687380 kB
Unevictable:       12320 kB
Mlocked:           11488 kB
SwapTotal:             0 kB
SwapFree:              0 kB
Dirty:               332 kB
Writeback:             0 kB
AnonPages:          8468 kB
Mapped:            10888 kB
Shmem:              8872 kB
KReclaimable:     541952 kB
Slab:             607808 kB
SReclaimable:     541952 kB
SUnreclaim:        65856 kB
KernelStack:        1384 kB
PageTables:         1776 kB
CommitLimit:    12342040 kB
Committed_AS:      52312 kB
VmallocTotal:   34359738367 kB
VmallocUsed:       14204 kB
VmallocChunk:          0 kB
Percpu:              712 kB
AnonHugePages:         0 kB
HugePages_Total:       0
HugePages_Free:        0
HugePages_Rsvd:        0
HugePages_Surp:        0
Hugepagesize:       2048 kB
Hugetlb:               0 kB
DirectMap4k:       26624 kB
DirectMap2M:     2070528 kB
DirectMap1G:    25165824 kB
";

    /// A 3.10 kernel's `/proc/meminfo`: no MemAvailable yet.
    const MEMINFO_3_10: &str = "\
MemTotal:        1016232 kB
MemFree:          110344 kB
Buffers:           52048 kB
Cached:           640708 kB
SwapCached:            0 kB
Active:           459480 kB
Inactive:         336448 kB
";

    const UPTIME_TEXT: &str = "10643.37 10211.36\n";
    const BOOT_ID_TEXT: &str = "03baefe5-2f5f-4666-a14a-9260aa567c46\n";
    const OSRELEASE_TEXT: &str = "6.1.0-18-amd64\n";

    fn times(line: &str) -> CpuTimes {
        parse_stat(&format!("cpu  {line}\n")).unwrap()
    }

    /// A fixture root in the temp dir, removed when dropped.
    struct Tree {
        root: PathBuf,
    }

    impl Tree {
        fn empty() -> Tree {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let root = std::env::temp_dir().join(format!(
                "wm-node-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = fs::remove_dir_all(&root);
            fs::create_dir_all(&root).unwrap();
            Tree { root }
        }

        /// Every file, as a running 6.1 kernel has them.
        fn full() -> Tree {
            let tree = Tree::empty();
            tree.write(STAT, stat(BEFORE));
            tree.write(MEMINFO, MEMINFO_TEXT);
            tree.write(UPTIME, UPTIME_TEXT);
            tree.write(BOOT_ID, BOOT_ID_TEXT);
            tree.write(OSRELEASE, OSRELEASE_TEXT);
            tree
        }

        fn write(&self, rel: &str, contents: impl AsRef<[u8]>) {
            let path = self.root.join(rel);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, contents).unwrap();
        }

        /// Replaces the file at `rel` by a directory: there, but unreadable
        /// (even to root, who reads files of any mode).
        fn make_unreadable(&self, rel: &str) {
            let path = self.root.join(rel);
            let _ = fs::remove_file(&path);
            fs::create_dir_all(path).unwrap();
        }

        fn host(&self) -> Host {
            Host::new(&self.root)
        }
    }

    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.root);
        }
    }

    // The parsers.

    #[test]
    fn parses_the_aggregate_cpu_line() {
        let t = parse_stat(&stat(BEFORE)).unwrap();
        assert_eq!(
            t.0,
            [629869, 193692, 220654, 1021136, 12189, 0, 20095, 6513]
        );
    }

    #[test]
    fn an_old_kernels_short_cpu_line_counts_missing_fields_as_zero() {
        assert_eq!(times("10 20 30 40").0, [10, 20, 30, 40, 0, 0, 0, 0]);
        assert_eq!(
            times("10 20 30 40 50 60 70").0,
            [10, 20, 30, 40, 50, 60, 70, 0]
        );
        assert_eq!(parse_stat("cpu 10 20 30\n"), None, "no idle field");
        assert_eq!(parse_stat("cpu\n"), None);
    }

    #[test]
    fn fields_after_steal_are_ignored() {
        let t = times("1 2 3 4 5 6 7 8 9 10 11 12");
        assert_eq!(t.0, [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(times("1 2 3 4 5 6 7 8 junk").0[7], 8);
    }

    #[test]
    fn garbage_cpu_numbers_are_none() {
        for line in [
            "cpu  1 2 x 4 5 6 7 8",
            "cpu  1 2 -3 4 5 6 7 8",
            "cpu  1 2 3.5 4 5 6 7 8",
            "cpu  1 2 3 4 5 6 7 99999999999999999999999",
            "cpu  1 2 3 \u{fffd} 5 6 7 8",
        ] {
            assert_eq!(parse_stat(line), None, "{line}");
        }
    }

    #[test]
    fn no_aggregate_cpu_line_is_none() {
        assert_eq!(parse_stat(""), None);
        assert_eq!(parse_stat("\n\n"), None);
        let only_cores = "cpu0 1 2 3 4 5 6 7 8\ncpu1 1 2 3 4 5 6 7 8\nctxt 5\n";
        assert_eq!(parse_stat(only_cores), None);
        assert_eq!(parse_stat("cpufreq 1 2 3 4\n"), None);
    }

    #[test]
    fn the_aggregate_line_is_found_wherever_it_is() {
        let text = format!("ctxt 5\n{}", stat(BEFORE));
        assert_eq!(parse_stat(&text), parse_stat(&stat(BEFORE)));
    }

    #[test]
    fn counts_cores_by_their_cpu_n_lines() {
        assert_eq!(count_cores(&stat(BEFORE)), Some(2));
        assert_eq!(count_cores("cpu  1 2 3 4\nctxt 5\n"), None);
        assert_eq!(count_cores(""), None);
        let odd = "cpu  1 2 3 4\ncpu0 1 2 3 4\ncpux 1\ncpu 1\ncpu12 junk\n";
        assert_eq!(count_cores(odd), Some(2), "cpu0 and cpu12");
    }

    #[test]
    fn cpu_use_is_the_busy_share_of_the_ticks_between_readings() {
        let used = used_percent(times(BEFORE), times(AFTER));
        assert_eq!(used, Some(37.5), "guest is not counted twice");
        let all_idle = used_percent(times("1 1 1 1 1 1 1 1"), times("1 1 1 9 9 1 1 1"));
        assert_eq!(all_idle, Some(0.0));
        let all_busy = used_percent(times("1 1 1 1 1 1 1 1"), times("9 9 9 1 1 9 9 9"));
        assert_eq!(all_busy, Some(100.0));
        let huge = used_percent(
            times("0 0 0 0"),
            times(&format!("{m} {m} {m} {m}", m = u64::MAX)),
        );
        assert_eq!(huge, Some(75.0), "sums do not overflow");
    }

    #[test]
    fn counters_going_backwards_or_standing_still_give_no_cpu_use() {
        let backwards = used_percent(times(AFTER), times(BEFORE));
        assert_eq!(backwards, None);
        let one_backwards = used_percent(times("5 5 5 5 5 5 5 5"), times("9 9 9 9 9 9 9 4"));
        assert_eq!(one_backwards, None);
        assert_eq!(used_percent(times(BEFORE), times(BEFORE)), None);
    }

    #[test]
    fn parses_meminfo() {
        let m = parse_meminfo(MEMINFO_TEXT).unwrap();
        assert_eq!(m.total_bytes, 24_684_084 * 1024);
        assert_eq!(m.used_bytes, (24_684_084 - 24_163_580) * 1024);
        assert!((m.used_percent - 2.108_662_4).abs() < 1e-6, "{m:?}");
    }

    #[test]
    fn meminfo_without_mem_available_is_none() {
        assert_eq!(parse_meminfo(MEMINFO_3_10), None);
    }

    #[test]
    fn odd_meminfo_is_none() {
        let with = |total: &str, avail: &str| {
            format!("MemTotal:   {total}\nMemFree:  5 kB\nMemAvailable: {avail}\n")
        };
        for text in [
            with("0 kB", "0 kB"),
            with("x kB", "5 kB"),
            with("10 kB", "-5 kB"),
            with("10 MB", "5 kB"),
            with("10", "5 kB"),
            with("", "5 kB"),
            with("99999999999999999999 kB", "5 kB"),
            with("18014398509481984 kB", "5 kB"),
            "MemFree:  5 kB\nMemAvailable: 5 kB\n".to_string(),
            String::new(),
        ] {
            assert_eq!(parse_meminfo(&text), None, "{text}");
        }
    }

    #[test]
    fn meminfo_keys_match_whole_names_and_the_first_line_wins() {
        let text = "MemTotalX: 1 kB\nMemTotal: 100 kB\nMemAvailable: 25 kB\nMemTotal: 7 kB\n";
        let m = parse_meminfo(text).unwrap();
        assert_eq!((m.total_bytes, m.used_bytes), (102_400, 76_800));
        assert_eq!(m.used_percent, 75.0);
        let extra = "MemTotal: 100 kB junk\nMemAvailable:\t25 kB\n";
        assert_eq!(parse_meminfo(extra), Some(m));
    }

    #[test]
    fn more_available_than_total_is_zero_used() {
        let m = parse_meminfo("MemTotal: 100 kB\nMemAvailable: 150 kB\n").unwrap();
        assert_eq!((m.used_bytes, m.used_percent), (0, 0.0));
    }

    #[test]
    fn the_boot_id_must_look_like_a_uuid() {
        let id = "03baefe5-2f5f-4666-a14a-9260aa567c46";
        assert_eq!(parse_boot_id(BOOT_ID_TEXT).as_deref(), Some(id));
        assert_eq!(parse_boot_id(&format!("  {id}\n\n")).as_deref(), Some(id));
        let upper = id.to_uppercase();
        assert_eq!(parse_boot_id(&upper), Some(upper.clone()));
        for bad in [
            "",
            "\n",
            "03baefe5-2f5f-4666-a14a-9260aa567c4",
            "03baefe5-2f5f-4666-a14a-9260aa567c466",
            "03baefe5_2f5f-4666-a14a-9260aa567c46",
            "03baefe5-2f5f-4666-a14a-9260aa567c4g",
            "03baefe52f5f4666a14a9260aa567c46",
            "03baefe5-2f5f-4666-a14a-9260aa567c46 and more",
            "03baefe5-2f5f-4666-a14a-9260aa567c\u{e9}",
        ] {
            assert_eq!(parse_boot_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn uptime_is_the_first_field_in_seconds() {
        let uptime = parse_uptime(UPTIME_TEXT).unwrap();
        assert!(
            (uptime.as_secs_f64() - 10_643.37).abs() < 1e-6,
            "{uptime:?}"
        );
        assert_eq!(parse_uptime("42\n"), Some(Duration::from_secs(42)));
        for bad in ["", "\n", "abc 1.0", "-1.5 3.0", "inf 1", "NaN 1", "1e400"] {
            assert_eq!(parse_uptime(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_kernel_release_is_its_first_line_trimmed() {
        assert_eq!(
            parse_kernel(OSRELEASE_TEXT).as_deref(),
            Some("6.1.0-18-amd64")
        );
        assert_eq!(
            parse_kernel(" 6.6.31+rpt-rpi-v8 \nx\n").as_deref(),
            Some("6.6.31+rpt-rpi-v8")
        );
        assert_eq!(parse_kernel(""), None);
        assert_eq!(parse_kernel("  \n6.1\n"), None);
    }

    #[test]
    fn disk_use_from_block_counts() {
        let d = disk_from(1000, 250, 4096).unwrap();
        assert_eq!(d.used_percent, 75.0);
        assert_eq!((d.free_bytes, d.total_bytes), (250 * 4096, 1000 * 4096));
        assert_eq!(disk_from(0, 0, 4096), None);
        assert_eq!(disk_from(1000, 250, 0), None);
        let more_available = disk_from(1000, 2000, 4096).unwrap();
        assert_eq!(
            (more_available.used_percent, more_available.free_bytes),
            (0.0, 1000 * 4096)
        );
        let huge = disk_from(u64::MAX, u64::MAX, 4096).unwrap();
        assert_eq!((huge.used_percent, huge.total_bytes), (0.0, u64::MAX));
    }

    #[test]
    fn c_chars_stop_at_the_first_nul() {
        let chars = |s: &[u8]| s.iter().map(|&b| b as libc::c_char).collect::<Vec<_>>();
        assert_eq!(
            c_chars_to_string(&chars(b"aarch64\0\0junk")).as_deref(),
            Some("aarch64")
        );
        assert_eq!(
            c_chars_to_string(&chars(b"x86_64")).as_deref(),
            Some("x86_64")
        );
        assert_eq!(c_chars_to_string(&chars(b"\0x86_64")), None);
        assert_eq!(c_chars_to_string(&chars(b"\xff\xfe\0")), None);
    }

    // The host, on fixture trees.

    #[test]
    fn samples_a_fixture_tree() {
        let tree = Tree::full();
        let mut host = tree.host();
        tree.write(STAT, stat(AFTER));
        let s = host.sample();
        assert_eq!(
            s.boot_id.as_deref(),
            Some("03baefe5-2f5f-4666-a14a-9260aa567c46")
        );
        assert_eq!(s.uptime, parse_uptime(UPTIME_TEXT));
        assert_eq!(s.kernel.as_deref(), Some("6.1.0-18-amd64"));
        assert_eq!(s.arch, Some(machine()));
        assert_eq!(
            s.cpu,
            Cpu {
                used_percent: Some(37.5),
                cores: Some(2)
            },
            "the first sample already has a delta"
        );
        assert_eq!(s.memory, parse_meminfo(MEMINFO_TEXT));
        let disk = s.disk.unwrap();
        assert!(
            disk.total_bytes > 0 && disk.free_bytes <= disk.total_bytes,
            "{disk:?}"
        );
    }

    #[test]
    fn each_sample_is_the_use_since_the_one_before() {
        let tree = Tree::full();
        let mut host = tree.host();
        tree.write(STAT, stat(AFTER));
        assert_eq!(host.sample().cpu.used_percent, Some(37.5));
        // From AFTER: 100 busy (user) of 200 ticks.
        tree.write(
            STAT,
            stat("630069 193692 220704 1021436 12239 0 20095 6513 40 0"),
        );
        assert_eq!(host.sample().cpu.used_percent, Some(50.0));
        assert_eq!(host.sample().cpu.used_percent, None, "no tick passed");
    }

    #[test]
    fn missing_files_are_none() {
        let tree = Tree::empty();
        let s = tree.host().sample();
        let expected = Sample {
            arch: Some(machine()),
            disk: s.disk,
            ..Sample::default()
        };
        assert_eq!(s, expected);
        assert!(s.disk.is_some(), "the root itself is there");
    }

    #[test]
    fn unreadable_files_are_none() {
        let tree = Tree::full();
        let mut host = tree.host();
        for rel in [STAT, MEMINFO, UPTIME, BOOT_ID, OSRELEASE] {
            tree.make_unreadable(rel);
        }
        let s = host.sample();
        assert_eq!((s.boot_id, s.uptime, s.kernel), (None, None, None));
        assert_eq!((s.cpu, s.memory), (Cpu::default(), None));
    }

    #[test]
    fn empty_files_are_none() {
        let tree = Tree::empty();
        for rel in [STAT, MEMINFO, UPTIME, BOOT_ID, OSRELEASE] {
            tree.write(rel, "");
        }
        let s = tree.host().sample();
        assert_eq!((s.boot_id, s.uptime, s.kernel), (None, None, None));
        assert_eq!((s.cpu, s.memory), (Cpu::default(), None));
    }

    #[test]
    fn files_missing_their_lines_are_none() {
        let tree = Tree::full();
        let mut host = tree.host();
        tree.write(STAT, "cpu0 1 2 3 4 5 6 7 8\nctxt 94884740\n");
        tree.write(MEMINFO, MEMINFO_3_10);
        tree.write(UPTIME, "\n");
        let s = host.sample();
        assert_eq!(
            s.cpu,
            Cpu {
                used_percent: None,
                cores: Some(1)
            }
        );
        assert_eq!((s.memory, s.uptime), (None, None));
    }

    #[test]
    fn counters_going_backwards_reset_the_baseline() {
        let tree = Tree::full();
        tree.write(STAT, stat(AFTER));
        let mut host = tree.host();
        tree.write(STAT, stat(BEFORE));
        assert_eq!(host.sample().cpu.used_percent, None);
        tree.write(STAT, stat(AFTER));
        assert_eq!(host.sample().cpu.used_percent, Some(37.5), "from BEFORE");
    }

    #[test]
    fn a_new_boot_id_resets_the_baseline() {
        let tree = Tree::full();
        let mut host = tree.host();
        tree.write(STAT, stat(AFTER));
        tree.write(BOOT_ID, "5c1e0c0e-8a8b-4a43-9e3d-7a1f6f0c2b11\n");
        let s = host.sample();
        assert_eq!(
            s.boot_id.as_deref(),
            Some("5c1e0c0e-8a8b-4a43-9e3d-7a1f6f0c2b11")
        );
        assert_eq!(s.cpu.used_percent, None, "counters of another boot");
        tree.write(
            STAT,
            stat("630069 193692 220704 1021436 12239 0 20095 6513 40 0"),
        );
        assert_eq!(host.sample().cpu.used_percent, Some(50.0), "from AFTER");
    }

    #[test]
    fn a_boot_id_that_cannot_be_read_for_a_while_is_no_reboot() {
        let tree = Tree::full();
        let mut host = tree.host();
        tree.write(BOOT_ID, "garbage\n");
        tree.write(STAT, stat(AFTER));
        assert_eq!(host.sample().cpu.used_percent, Some(37.5));
        tree.write(BOOT_ID, BOOT_ID_TEXT);
        tree.write(
            STAT,
            stat("630069 193692 220704 1021436 12239 0 20095 6513 40 0"),
        );
        assert_eq!(host.sample().cpu.used_percent, Some(50.0));
    }

    #[test]
    fn an_unreadable_stat_keeps_the_baseline() {
        let tree = Tree::full();
        let mut host = tree.host();
        tree.make_unreadable(STAT);
        assert_eq!(host.sample().cpu, Cpu::default());
        fs::remove_dir(tree.root.join(STAT)).unwrap();
        tree.write(STAT, "cpu  garbage\ncpu0 1 2 3 4\n");
        assert_eq!(host.sample().cpu.used_percent, None);
        tree.write(STAT, stat(AFTER));
        assert_eq!(host.sample().cpu.used_percent, Some(37.5), "from BEFORE");
    }

    #[test]
    fn a_stat_unreadable_at_the_start_gives_use_from_the_second_sample() {
        let tree = Tree::full();
        tree.make_unreadable(STAT);
        let mut host = tree.host();
        fs::remove_dir(tree.root.join(STAT)).unwrap();
        tree.write(STAT, stat(BEFORE));
        assert_eq!(host.sample().cpu.used_percent, None);
        tree.write(STAT, stat(AFTER));
        assert_eq!(host.sample().cpu.used_percent, Some(37.5));
    }

    #[test]
    fn reads_at_most_64_kib_of_a_file() {
        let tree = Tree::full();
        let mut host = tree.host();
        // A long intr line (many interrupts) after the cpu lines is cut off.
        let intr = " 0".repeat(100_000);
        tree.write(STAT, format!("{}intr{intr}\n", stat(AFTER)));
        // A MemTotal past the first 64 KiB is never seen.
        let padding = "X: 0 kB\n".repeat(10_000);
        tree.write(MEMINFO, format!("{padding}{MEMINFO_TEXT}"));
        let s = host.sample();
        assert_eq!(s.cpu.used_percent, Some(37.5));
        assert_eq!(s.memory, None);
        assert_eq!(
            read_bounded(&tree.root.join(STAT)).unwrap().len(),
            64 * 1024
        );
    }

    #[test]
    fn bytes_that_are_not_utf8_do_not_spoil_the_rest() {
        let tree = Tree::full();
        let mut host = tree.host();
        let mut meminfo = b"Junk: \xff\xfe kB\n".to_vec();
        meminfo.extend_from_slice(MEMINFO_TEXT.as_bytes());
        tree.write(MEMINFO, meminfo);
        tree.write(OSRELEASE, b"6.1.0-\xff\n");
        let s = host.sample();
        assert_eq!(s.memory, parse_meminfo(MEMINFO_TEXT));
        assert_eq!(s.kernel.as_deref(), Some("6.1.0-\u{fffd}"));
    }

    #[test]
    fn a_root_that_is_not_there_has_no_disk() {
        let missing = std::env::temp_dir().join("wm-node-no-such-root");
        assert_eq!(Host::new(&missing).sample().disk, None);
        assert_eq!(Host::new("/tmp/a\0b").sample().disk, None);
    }

    // The real machine.

    /// Keeps this thread busy until about 10 ticks per core have passed.
    fn burn_ticks(cores: u32) {
        let total = || {
            let text = read_bounded(Path::new("/proc/stat")).unwrap();
            parse_stat(&text)
                .unwrap()
                .0
                .iter()
                .map(|&t| u128::from(t))
                .sum::<u128>()
        };
        let start = total();
        for _ in 0..10_000_000 {
            if total() >= start + 10 * u128::from(cores) {
                return;
            }
        }
        panic!("the CPU counters do not move");
    }

    #[test]
    fn samples_the_real_machine() {
        let mut host = Host::new("/");
        let first = host.sample();
        let cores = first.cpu.cores.unwrap();
        assert!(cores >= 1);
        burn_ticks(cores);
        let s = host.sample();
        let used = s.cpu.used_percent.unwrap();
        assert!(used > 0.0 && used <= 100.0, "{used}");
        assert!(looks_like_uuid(s.boot_id.as_deref().unwrap()), "{s:?}");
        assert_eq!(s.boot_id, first.boot_id);
        assert!(s.uptime.unwrap() > Duration::ZERO);
        assert!(!s.kernel.unwrap().is_empty());
        assert!(!s.arch.unwrap().is_empty());
        let memory = s.memory.unwrap();
        assert!(memory.total_bytes > 0 && memory.used_bytes <= memory.total_bytes);
        assert!(memory.used_percent > 0.0 && memory.used_percent <= 100.0);
        let disk = s.disk.unwrap();
        assert!(disk.total_bytes > 0 && disk.free_bytes <= disk.total_bytes);
        assert!((0.0..=100.0).contains(&disk.used_percent));
    }

    #[test]
    fn uname_names_the_machine_this_binary_runs_on() {
        let machine = uname_machine().unwrap();
        // Rust's names for 64-bit x86 and ARM are the kernel's.
        if cfg!(any(target_arch = "x86_64", target_arch = "aarch64")) {
            assert_eq!(machine, std::env::consts::ARCH);
        }
    }
}
