//! Test helper shared by every test suite in the workspace.
//!
//! [`Server`] starts a real `redis-server` (or the binary named by the
//! `REDIS_SERVER` environment variable, e.g. a `valkey-server`) on a free
//! loopback port, with the module loaded, in its own temporary directory.
//! Dropping the [`Server`] kills the process and removes the directory.
//!
//! The module is found through `THROTTLE_MODULE`, or else next to the test
//! binary (`target/<profile>/libredis_throttle.so`), so `cargo test --release`
//! tests the release build that `scripts/serve.sh` runs.

pub mod clock;
pub mod cluster;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Path of the module's shared library under test.
pub fn module_path() -> PathBuf {
    if let Ok(p) = std::env::var("THROTTLE_MODULE") {
        return PathBuf::from(p);
    }
    // target/<profile>/deps/<test-binary>  →  target/<profile>/libredis_throttle.so
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .ancestors()
        .nth(2)
        .expect("test binary lives in target/<profile>/deps");
    let so = profile_dir.join("libredis_throttle.so");
    assert!(
        so.exists(),
        "module not built at {} (run `cargo build --release` or set THROTTLE_MODULE)",
        so.display()
    );
    // `cargo test --test X` does not rebuild a cdylib: refuse to test a
    // module older than its sources rather than test stale code.
    let built = std::fs::metadata(&so).and_then(|m| m.modified()).ok();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    if let (Some(built), Some(newest)) = (
        built,
        newest_source(&[root.join("src"), root.join("core/src")]),
    ) {
        assert!(
            newest <= built,
            "{} is older than the module's sources: run `cargo build --release -p redis-throttle` (scripts/test.sh does)",
            so.display()
        );
    }
    so
}

fn newest_source(dirs: &[PathBuf]) -> Option<std::time::SystemTime> {
    let mut newest = None;
    let mut stack: Vec<PathBuf> = dirs.to_vec();
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let t = e.metadata().and_then(|m| m.modified()).ok();
                newest = newest.max(t);
            }
        }
    }
    newest
}

/// The server binary: `REDIS_SERVER` or `redis-server` from PATH.
pub fn server_binary() -> String {
    std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".to_string())
}

/// True when the server under test is Valkey (its binary name says so).
pub fn is_valkey() -> bool {
    server_binary().contains("valkey")
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

static SEQ: AtomicU32 = AtomicU32::new(0);

pub fn scratch_dir(tag: &str) -> PathBuf {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "throttle-test-{}-{}-{}",
        std::process::id(),
        tag,
        n
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// How to start a server.
#[derive(Clone, Debug)]
pub struct ServerBuilder {
    module: bool,
    module_path: Option<PathBuf>,
    allow_panics: bool,
    module_args: Vec<String>,
    args: Vec<String>,
    dir: Option<PathBuf>,
    port: Option<u16>,
    env: Vec<(String, String)>,
    binary: Option<String>,
}

impl Default for ServerBuilder {
    fn default() -> Self {
        Self {
            module: true,
            module_path: None,
            allow_panics: false,
            module_args: Vec::new(),
            args: Vec::new(),
            dir: None,
            port: None,
            env: Vec::new(),
            binary: None,
        }
    }
}

impl ServerBuilder {
    /// Extra `redis-server` arguments, e.g. `["--appendonly", "yes"]`.
    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }
    /// Arguments passed after the module path in `--loadmodule`.
    pub fn module_args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.module_args.extend(args.into_iter().map(Into::into));
        self
    }
    /// Start without loading the module.
    pub fn without_module(mut self) -> Self {
        self.module = false;
        self
    }
    /// Load this module file instead of [`module_path`] (e.g. a build with
    /// extra test features).
    pub fn module_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.module_path = Some(path.into());
        self
    }
    /// The test provokes panics on purpose: do not fail on a `panic in`
    /// line in the log when the server is dropped.
    pub fn allow_panics(mut self) -> Self {
        self.allow_panics = true;
        self
    }
    /// Use this working directory (kept on drop) instead of a fresh one.
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }
    /// Use this port instead of a free one.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }
    /// Run this server binary instead of [`server_binary`].
    pub fn binary(mut self, path: impl Into<String>) -> Self {
        self.binary = Some(path.into());
        self
    }
    /// An environment variable for the server process (e.g. `LD_PRELOAD`).
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Start the server and wait until it answers PING.
    pub fn start(self) -> Server {
        let mut last_err = String::new();
        for _attempt in 0..5 {
            match self.try_start() {
                Ok(s) => return s,
                Err(e) => last_err = e,
            }
        }
        panic!("redis-server did not start: {last_err}");
    }

    /// One attempt, on the builder's port if it has one (a caller that
    /// chose the port picks another when it was taken meanwhile).
    pub fn try_start_once(self) -> Result<Server, String> {
        self.try_start()
    }

    fn try_start(&self) -> Result<Server, String> {
        let port = self.port.unwrap_or_else(free_port);
        let (dir, own_dir) = match &self.dir {
            Some(d) => {
                std::fs::create_dir_all(d).map_err(|e| e.to_string())?;
                (d.clone(), false)
            }
            None => (scratch_dir(&port.to_string()), true),
        };
        let log = dir.join("server.log");
        let mut cmd = Command::new(self.binary.clone().unwrap_or_else(server_binary));
        cmd.arg("--port")
            .arg(port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--dir")
            .arg(&dir)
            .arg("--logfile")
            .arg(&log)
            .arg("--save")
            .arg("")
            .arg("--appendonly")
            .arg("no")
            .arg("--daemonize")
            .arg("no")
            .arg("--enable-debug-command")
            .arg("yes")
            .arg("--repl-diskless-sync-delay")
            .arg("0");
        if self.module {
            let so = self.module_path.clone().unwrap_or_else(module_path);
            cmd.arg("--loadmodule").arg(so);
            cmd.args(&self.module_args);
        }
        cmd.args(&self.args);
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(
            std::fs::File::create(dir.join("stderr.log"))
                .map(Stdio::from)
                .unwrap_or_else(|_| Stdio::null()),
        );
        let child = cmd.spawn().map_err(|e| format!("spawn: {e}"))?;
        let mut server = Server {
            child: Some(child),
            port,
            dir,
            own_dir,
            allow_panics: self.allow_panics,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = server
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                server.child = None;
                return Err(format!("exited with {status}; log:\n{log}"));
            }
            // Ours, not another process's server that took the port first.
            let pid = server.child.as_ref().map(|c| c.id());
            if let Ok(mut c) = server.try_connect()
                && let Ok(info) = redis::cmd("INFO").arg("server").query::<String>(&mut c)
            {
                let theirs = info
                    .lines()
                    .find_map(|l| l.strip_prefix("process_id:"))
                    .and_then(|v| v.trim().parse::<u32>().ok());
                if theirs.is_some() && theirs == pid {
                    // and done loading its RDB or AOF: until then, commands
                    // other than INFO get -LOADING
                    let loading = redis::cmd("INFO")
                        .arg("persistence")
                        .query::<String>(&mut c)
                        .map(|i| i.lines().any(|l| l.trim() == "loading:1"))
                        .unwrap_or(true);
                    if !loading {
                        return Ok(server);
                    }
                }
                if theirs.is_some() {
                    // Another server holds the port: ours cannot bind it.
                    if let Some(mut child) = server.child.take() {
                        let _ = child.kill();
                        let _ = child.wait();
                    }
                    return Err(format!("port {port} is another server's"));
                }
            }
            if Instant::now() > deadline {
                return Err("not up (or still loading) within 30 s".into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// A running server; killed when dropped. Dropping it also fails the test
/// (unless it is already failing, or the builder said
/// [`ServerBuilder::allow_panics`]) when the server exited by itself, or its
/// log shows a panic the module caught (`panic in …`) or a crash report.
pub struct Server {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    own_dir: bool,
    allow_panics: bool,
}

impl Server {
    /// Start a server with the module loaded and default settings.
    pub fn start() -> Server {
        ServerBuilder::default().start()
    }
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }
    pub fn port(&self) -> u16 {
        self.port
    }
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
    fn try_connect(&self) -> redis::RedisResult<redis::Connection> {
        let client = redis::Client::open(self.url())?;
        client.get_connection_with_timeout(Duration::from_secs(2))
    }
    /// A new synchronous connection (RESP2).
    pub fn conn(&self) -> redis::Connection {
        self.try_connect().expect("connect to test server")
    }
    /// A new synchronous RESP3 connection.
    pub fn conn_resp3(&self) -> redis::Connection {
        let client =
            redis::Client::open(format!("{}?protocol=resp3", self.url())).expect("resp3 url");
        client.get_connection().expect("connect resp3")
    }
    /// Where the server writes its log.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }
    /// The server's log so far (for assertions and failure messages).
    pub fn log(&self) -> String {
        let mut log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        // What the process wrote to stderr (an abort's message, say).
        let stderr = std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default();
        if !stderr.is_empty() {
            log.push_str("--- stderr ---\n");
            log.push_str(&stderr);
        }
        log
    }
    /// Log lines that report a panic caught by the module (`panic in …`) or
    /// a crash (Redis's and Valkey's crash reports).
    pub fn panics_logged(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| {
                l.contains("panic in ")
                    || l.contains("crashed by signal")
                    || l.contains("Guru Meditation")
            })
            .map(str::to_string)
            .collect()
    }
    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
    /// Sends `signal` (`STOP`, `CONT`, …) to the server's process.
    pub fn signal(&self, signal: &str) {
        let pid = self.pid().expect("a running server").to_string();
        let ok = Command::new("kill")
            .args([format!("-{signal}"), pid])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{signal} failed");
    }
    /// True while the process runs.
    pub fn is_alive(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }
    /// Kill with SIGKILL and wait (the directory is kept until drop).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
    /// Stop with SHUTDOWN NOSAVE semantics by SIGTERM-like kill, keeping the dir.
    pub fn stop(&mut self) {
        self.kill();
    }
    /// Keep the working directory after drop (for a restart in the same dir).
    pub fn keep_dir(&mut self) {
        self.own_dir = false;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // A server that exited by itself (not through `kill`) crashed.
        let exited = self
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten());
        self.kill();
        if !self.allow_panics && !std::thread::panicking() {
            let panics = self.panics_logged();
            if !panics.is_empty() || exited.is_some() {
                let log = self.log();
                if self.own_dir {
                    let _ = std::fs::remove_dir_all(&self.dir);
                }
                panic!(
                    "the server on port {} exited by itself ({exited:?}) or logged a panic \
                     ({panics:?}); log:\n{log}",
                    self.port
                );
            }
        }
        if self.own_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Sends `args` to `addr` on a connection of its own, from a thread, and
/// returns what the first line of the reply was (`:1`, `*5`, `$-1`,
/// `-UNBLOCKED …`), `"closed"` when the server closed the connection, or
/// `"no answer: …"` after a minute: for held clients, whatever happens to
/// the server, an answer and never a hang.
pub fn held_call(addr: &str, args: &[&str]) -> std::sync::mpsc::Receiver<String> {
    use std::io::{BufRead, BufReader, Write};
    let mut conn = std::net::TcpStream::connect(addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("read timeout");
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    conn.write_all(req.as_bytes()).expect("send");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let got = match BufReader::new(conn).read_line(&mut line) {
            Ok(0) => "closed".to_string(),
            Ok(_) => line.trim_end().to_string(),
            Err(e) => format!("no answer: {e}"),
        };
        let _ = tx.send(got);
    });
    rx
}

/// Every [`held_call`]'s answer, each within a minute.
pub fn held_answers(rx: Vec<std::sync::mpsc::Receiver<String>>) -> Vec<String> {
    rx.into_iter()
        .map(|r| {
            r.recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| "no answer in 60 s".into())
        })
        .collect()
}

/// Whether a held client's answer is one: a reply (an array, nil), or the
/// server's own error to a client it unblocks, or a closed connection.
pub fn is_an_answer(a: &str) -> bool {
    a.starts_with('*') || ["_", "$-1", "*-1", "closed"].contains(&a) || a.starts_with("-UNBLOCKED")
}

/// Poll `f` every 10 ms until it returns `Some`, or panic after three
/// times `timeout`: the callers name what a quiet machine needs, and a
/// saturated one (both cores busy) may need more; waiting longer costs
/// nothing unless the test is failing anyway.
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout * 3;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Which server a connection talks to, from `INFO server`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Flavor {
    Redis,
    Valkey,
}

/// The server's flavour and its own version (Valkey's `valkey_version`, not
/// the Redis version it reports for compatibility), as (major, minor).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerVersion {
    pub flavor: Flavor,
    pub major: u32,
    pub minor: u32,
}

impl ServerVersion {
    /// Reads `INFO server` on `conn`.
    pub fn of(conn: &mut redis::Connection) -> ServerVersion {
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query(conn)
            .expect("INFO server");
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
        };
        let (flavor, version) = match field("valkey_version") {
            Some(v) => (Flavor::Valkey, v),
            None => (
                Flavor::Redis,
                field("redis_version").expect("redis_version"),
            ),
        };
        let mut parts = version.split('.').map(|p| p.parse().unwrap_or(0));
        ServerVersion {
            flavor,
            major: parts.next().unwrap_or(0),
            minor: parts.next().unwrap_or(0),
        }
    }

    /// Redis 7.2+ or any Valkey: `RedisModule_Microseconds`.
    pub fn has_7_2_module_api(&self) -> bool {
        self.flavor == Flavor::Valkey || (self.major, self.minor) >= (7, 2)
    }

    /// Redis 7.2+ or any Valkey: `RedisModule_SetCommandACLCategories`, so
    /// module commands can join the standard categories (`@write`, ...).
    pub fn has_command_acl_categories(&self) -> bool {
        self.has_7_2_module_api()
    }

    /// Redis 7.4+ or any Valkey: `RedisModule_AddACLCategory`, so a module
    /// can have its own ACL category (Redis 7.2 has none: measured on 7.2.6).
    pub fn has_module_acl_categories(&self) -> bool {
        self.flavor == Flavor::Valkey || (self.major, self.minor) >= (7, 4)
    }

    /// `ACL CAT <category>` lists module commands: Valkey 9+ and Redis 8+
    /// (measured on 8.2.3); Redis 7.x and Valkey 8 leave them out of every
    /// listing, though the category grants them.
    pub fn acl_cat_lists_module_commands(&self) -> bool {
        match self.flavor {
            Flavor::Valkey => self.major >= 9,
            Flavor::Redis => self.major >= 8,
        }
    }
}
