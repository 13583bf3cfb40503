//! The kill deadline `leasedlock` hands to the guard, so that the command's group is killed at
//! the lease's safe end even when `leasedlock` itself cannot act then (stopped with SIGSTOP,
//! frozen, starved of CPU).
//!
//! `leasedlock` writes the deadline, as nanoseconds of `CLOCK_MONOTONIC` (one clock for every
//! process of the machine), to a file in a private directory (mode 0700) and replaces it by
//! renaming whenever a renewal moves it later. The guard reads it at start and again each time
//! the deadline it knows comes due: a later one means "renewed, keep going"; the same one, or
//! none it can read, means "kill the group now". No signal is needed to announce an update:
//! `leasedlock` writes every update before the deadline it replaces, because it re-reads the
//! lease `--grace` before that deadline.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::time::{clock_gettime, ClockId};

/// The time on `CLOCK_MONOTONIC`.
fn monotonic_now() -> io::Result<Duration> {
    clock_gettime(ClockId::CLOCK_MONOTONIC)
        .map(Duration::from)
        .map_err(io::Error::from)
}

/// `at` on `CLOCK_MONOTONIC` (which `Instant` also reads on Linux; only the difference to now is
/// used, so that does not matter).
fn monotonic(at: Instant) -> io::Result<Duration> {
    let now = Instant::now();
    let mono = monotonic_now()?;
    Ok(match at.checked_duration_since(now) {
        Some(ahead) => mono + ahead,
        None => mono.saturating_sub(now - at),
    })
}

/// How long from now until the `CLOCK_MONOTONIC` time `deadline` (zero once it has passed).
pub(crate) fn until(deadline: Duration) -> io::Result<Duration> {
    Ok(deadline.saturating_sub(monotonic_now()?))
}

/// Reads a deadline file: `None` when it is missing or does not hold a deadline.
pub(crate) fn read(path: &Path) -> Option<Duration> {
    let text = std::fs::read_to_string(path).ok()?;
    text.trim().parse::<u64>().ok().map(Duration::from_nanos)
}

/// The writing side: a private directory holding the deadline file; removed when dropped.
#[derive(Debug)]
pub(crate) struct DeadlineFile {
    dir: PathBuf,
    file: PathBuf,
}

impl DeadlineFile {
    /// Creates the directory and writes the first deadline.
    pub(crate) fn create(at: Instant) -> io::Result<DeadlineFile> {
        use std::os::unix::fs::DirBuilderExt;
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "leasedlock-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        let deadline = DeadlineFile {
            file: dir.join("deadline"),
            dir,
        };
        deadline.set(at)?;
        Ok(deadline)
    }

    /// The file the guard reads.
    pub(crate) fn path(&self) -> &Path {
        &self.file
    }

    /// Replaces the deadline (atomically: the guard reads the old or the new one, whole).
    pub(crate) fn set(&self, at: Instant) -> io::Result<()> {
        let ns = monotonic(at)?.as_nanos();
        let tmp = self.dir.join("deadline.tmp");
        std::fs::write(&tmp, ns.to_string())?;
        std::fs::rename(&tmp, &self.file)
    }
}

impl Drop for DeadlineFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_deadline_reads_back_on_the_monotonic_clock() {
        let at = Instant::now() + Duration::from_secs(3);
        let file = DeadlineFile::create(at).expect("create");
        let read_back = read(file.path()).expect("a deadline");
        let left = until(read_back).expect("clock");
        assert!(left <= Duration::from_secs(3), "{left:?}");
        assert!(left > Duration::from_secs(2), "{left:?}");
        // A later one replaces it.
        file.set(at + Duration::from_secs(10)).expect("set");
        let later = read(file.path()).expect("a deadline");
        assert!(later > read_back);
        // A passed one is due at once.
        file.set(Instant::now() - Duration::from_millis(1))
            .expect("set");
        assert_eq!(
            until(read(file.path()).expect("a deadline")).expect("clock"),
            Duration::ZERO
        );
        let dir = file.path().parent().expect("dir").to_path_buf();
        drop(file);
        assert!(!dir.exists(), "the directory is removed");
    }

    #[test]
    fn garbage_is_no_deadline() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("deadline");
        assert_eq!(read(&path), None);
        std::fs::write(&path, "soon").expect("write");
        assert_eq!(read(&path), None);
    }
}
