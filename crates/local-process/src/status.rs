//! A process's `/proc/<pid>/status`, kept open.
//!
//! The local Lambda reports every invocation's `Max Memory Used` (the
//! process's `VmHWM`), as Lambda's REPORT line does. Opening the file by path
//! and parsing every field (procfs) cost ≈ 63 µs per read on the project's
//! machine, a tenth of the stack's CPU per `$connect` under load; one `pread`
//! of a file kept open and a scan for the one line cost ≈ 12 µs (most of it
//! the kernel writing the file). A file kept open also keeps naming the
//! process it was opened for, never another that later reuses the id.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt as _;

/// `/proc/<pid>/status` of one process, open for repeated reads.
#[derive(Debug)]
pub struct ProcStatus {
    pid: u32,
    file: File,
}

/// Longer than any status file (≈ 1.5 KB); a longer one is read in pieces.
const CHUNK: usize = 4096;

impl ProcStatus {
    /// Opens the status file of process `raw` (which must be alive).
    pub fn open(raw: u32) -> io::Result<Self> {
        let pid = crate::pid(raw)?;
        let path = format!("/proc/{}/status", pid.as_raw_nonzero());
        let file = File::open(&path)
            .map_err(|error| io::Error::new(error.kind(), format!("opening {path}: {error}")))?;
        Ok(ProcStatus { pid: raw, file })
    }

    /// `VmHWM`, the peak resident set size, in bytes.
    pub fn peak_rss_bytes(&self) -> io::Result<u64> {
        self.kib("VmHWM").map(|kib| kib.saturating_mul(1024))
    }

    /// `VmRSS`, the resident set size now, in bytes.
    pub fn rss_bytes(&self) -> io::Result<u64> {
        self.kib("VmRSS").map(|kib| kib.saturating_mul(1024))
    }

    /// The value of a `Name:   123 kB` line, read afresh.
    fn kib(&self, name: &str) -> io::Result<u64> {
        let text = self.read()?;
        field_kib(&text, name)
            .ok_or_else(|| io::Error::other(format!("/proc/{}/status has no {name}", self.pid)))
    }

    /// The whole file, in one `pread` when it fits in [`CHUNK`]: the kernel
    /// writes a proc file afresh for every read, so a second read only to
    /// learn that the first was all would double the cost. A read that
    /// fills the chunk may have more behind it, and the next one follows.
    fn read(&self) -> io::Result<String> {
        read_in_chunks::<CHUNK>(&self.file)
    }
}

/// A proc file from its start, in reads of `N` bytes until one comes short.
fn read_in_chunks<const N: usize>(file: &File) -> io::Result<String> {
    let mut bytes = Vec::new();
    let mut chunk = [0u8; N];
    loop {
        let n = file.read_at(&mut chunk, bytes.len() as u64)?;
        bytes.extend_from_slice(&chunk[..n]);
        if n < N {
            break;
        }
    }
    String::from_utf8(bytes).map_err(io::Error::other)
}

/// `123` from the line `name:\t   123 kB`.
fn field_kib(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(':')?;
        value.split_whitespace().next()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_is_found_by_its_whole_name() {
        let text = "Name:\tx\nVmHWMx:\t1 kB\nVmHWM:\t   6705 kB\nVmRSS:\t  512 kB\n";
        assert_eq!(field_kib(text, "VmHWM"), Some(6705));
        assert_eq!(field_kib(text, "VmRSS"), Some(512));
        assert_eq!(field_kib(text, "VmSwap"), None);
        assert_eq!(field_kib("VmHWM:\tlots kB\n", "VmHWM"), None);
    }

    #[test]
    fn every_read_is_afresh_from_the_same_process() {
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .expect("sleep starts");
        let status = ProcStatus::open(child.id()).expect("open");
        // The child may still be starting (its memory growing) while it is
        // read: only what holds at any moment is checked — the peak never
        // falls, and the size now is never above a peak read after it.
        let first = status.peak_rss_bytes().expect("VmHWM of a live process");
        assert!(first > 0);
        let now = status.rss_bytes().expect("VmRSS");
        let second = status.peak_rss_bytes().expect("read again");
        assert!(now <= second && first <= second, "{first} {now} {second}");
        let by_path = peak_rss_bytes_by_path(child.id());
        let third = status.peak_rss_bytes().expect("a third read");
        assert!(
            second <= by_path && by_path <= third,
            "{second} {by_path} {third}"
        );
        child.kill().expect("kill");
        child.wait().expect("reap");
    }

    fn peak_rss_bytes_by_path(pid: u32) -> u64 {
        let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        field_kib(&text, "VmHWM").expect("VmHWM") * 1024
    }

    /// A status file longer than one read is read to its end, piece by
    /// piece, whatever the size of the pieces.
    #[test]
    fn a_file_longer_than_a_chunk_is_read_whole() {
        let status = ProcStatus::open(std::process::id()).expect("our own status");
        let whole = read_in_chunks::<CHUNK>(&status.file).expect("in one read");
        assert!(whole.len() < CHUNK, "{} bytes", whole.len());
        for text in [
            read_in_chunks::<64>(&status.file).expect("in 64-byte reads"),
            read_in_chunks::<7>(&status.file).expect("in 7-byte reads"),
        ] {
            let names = |text: &str| -> Vec<String> {
                text.lines()
                    .filter_map(|line| line.split_once(':').map(|(name, _)| name.to_owned()))
                    .collect()
            };
            assert_eq!(names(&text), names(&whole));
            assert!(
                field_kib(&text, "VmHWM").is_some_and(|kib| kib > 0),
                "{text}"
            );
        }
    }

    #[test]
    fn no_process_has_no_status() {
        assert!(ProcStatus::open(0).is_err());
        assert!(ProcStatus::open(u32::MAX).is_err());
    }
}
