//! A wall clock the test controls, for the servers started with it.
//!
//! An `LD_PRELOAD` shim (`testkit/clockshim.c`, built with the system C
//! compiler into the clock's own directory) makes a server's wall clock
//! read an offset and a frozen instant from a small shared file, so a test
//! steps the clock (as NTP or a VM migration would) or freezes it, for one
//! server or for several at once (a differential test gives two servers the
//! same instant). Monotonic clocks are untouched.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::ServerBuilder;

/// How long after a move every server reads the moved clock.
const SEEN_AFTER: Duration = Duration::from_micros(1100);

pub struct WallClock {
    dir: PathBuf,
    shim: PathBuf,
    file: PathBuf,
    offset_us: i64,
    frozen_us: i64,
}

impl WallClock {
    /// Builds the shim (a C compiler is needed; CI installs one with the
    /// build tools) and a clock file reading "real time, no offset".
    pub fn new() -> WallClock {
        let dir = crate::scratch_dir("wallclock");
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("clockshim.c");
        let shim = dir.join("clockshim.so");
        let status = Command::new("cc")
            .args(["-shared", "-fPIC", "-O2", "-o"])
            .arg(&shim)
            .arg(&src)
            .arg("-ldl")
            .status()
            .expect("run cc: a C compiler builds the clock shim");
        assert!(status.success(), "building {} failed", src.display());
        let mut clock = WallClock {
            file: dir.join("clock"),
            dir,
            shim,
            offset_us: 0,
            frozen_us: 0,
        };
        clock.write();
        clock
    }

    /// A server builder whose server reads this clock.
    ///
    /// Without jemalloc's background thread: it sleeps until a deadline
    /// read on the wall clock, which the kernel's futex measures on the
    /// real one, so a clock stepped back or frozen in the past made it spin
    /// (seconds of CPU for each such server).
    pub fn apply(&self, builder: ServerBuilder) -> ServerBuilder {
        builder
            .env("LD_PRELOAD", self.shim.to_string_lossy())
            .env("CLOCKSHIM_FILE", self.file.to_string_lossy())
            .args(["--jemalloc-bg-thread", "no"])
    }

    /// Writes both numbers in place. Never truncates: the servers map the
    /// file, and reading a mapping past the end of a truncated file is a
    /// SIGBUS.
    fn write(&mut self) {
        use std::io::Write;
        let mut bytes = self.offset_us.to_le_bytes().to_vec();
        bytes.extend(self.frozen_us.to_le_bytes());
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&self.file)
            .expect("open the clock file");
        f.write_all(&bytes).expect("write the clock file");
        // Valkey 9 with its TSC clock reads the wall clock at most once a
        // millisecond and adds TSC time in between: after a move, the next
        // reading a millisecond on is the first to see it.
        std::thread::sleep(SEEN_AFTER);
    }

    /// Steps the wall clock by `delta_us` (negative: back).
    pub fn step(&mut self, delta_us: i64) {
        self.offset_us += delta_us;
        self.write();
    }

    /// Freezes the wall clock at `at_us` (Unix µs, before any offset).
    pub fn freeze(&mut self, at_us: i64) {
        assert!(at_us > 0, "a frozen instant is after the epoch");
        self.frozen_us = at_us;
        self.write();
    }

    /// The instant a frozen clock reads (Unix µs, offset included).
    pub fn frozen_at_us(&self) -> i64 {
        assert!(self.frozen_us > 0, "the clock is not frozen");
        self.frozen_us + self.offset_us
    }

    /// Moves a frozen clock `by_us` ahead.
    pub fn advance(&mut self, by_us: i64) {
        assert!(self.frozen_us > 0, "advance a frozen clock");
        self.frozen_us += by_us;
        self.write();
    }
}

impl Default for WallClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for WallClock {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
