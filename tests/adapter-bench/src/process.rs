//! What a process costs: CPU time and resident memory, read from `/proc` (Linux only; elsewhere
//! every reading is `None` and the benchmarks print "n/a").

use std::time::Duration;

/// Clock ticks per second of `/proc/*/stat` times (`USER_HZ`, 100 on every Linux ABI).
const TICKS_PER_SECOND: u64 = 100;

/// User + system CPU time of the `stat` file at `path` (a process's or a thread's).
fn cpu_of(path: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count from its end.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After the name: state is field 3, utime field 14, stime field 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis(
        (utime + stime) * 1000 / TICKS_PER_SECOND,
    ))
}

/// CPU time this process has used so far (all threads, including finished ones).
pub fn process_cpu() -> Option<Duration> {
    cpu_of("/proc/self/stat")
}

/// CPU time the calling thread has used so far.
pub fn thread_cpu() -> Option<Duration> {
    cpu_of("/proc/thread-self/stat")
}

/// CPU time process `pid` has used so far.
pub fn cpu_of_pid(pid: u32) -> Option<Duration> {
    cpu_of(&format!("/proc/{pid}/stat"))
}

/// Resident memory of this process in bytes.
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_exist_on_linux_and_grow() {
        if !cfg!(target_os = "linux") {
            return;
        }
        let before = process_cpu().expect("process cpu");
        assert!(thread_cpu().is_some());
        assert!(resident_bytes().expect("rss") > 0);
        assert_eq!(cpu_of_pid(u32::MAX), None);
        // Spin until the tick counter moves: it only ever grows.
        let mut x = 0u64;
        while process_cpu().expect("process cpu") == before {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        assert!(process_cpu().expect("process cpu") > before, "{x}");
    }
}
