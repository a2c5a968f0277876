//! A throwaway PostgreSQL cluster for the tests, started from the system's binaries (`initdb`,
//! `postgres`) once per test binary, in a temp dir, on a free port; it stops when the test binary
//! exits (parent-death signal). Each test gets a database of its own. With
//! `SOP_TEST_DATABASE_URL` set, databases are created on that server instead.
//!
//! Missing binaries fail the test with the install command: PostgreSQL tests never skip.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const INSTALL: &str = "PostgreSQL is needed by these tests: apt-get install -y postgresql \
                       (or point SOP_TEST_DATABASE_URL at a server where databases may be created)";

/// Where new databases are created: `postgres://user@host:port`.
fn server() -> &'static str {
    static SERVER: OnceLock<String> = OnceLock::new();
    SERVER.get_or_init(|| match std::env::var("SOP_TEST_DATABASE_URL") {
        Ok(url) => url.trim_end_matches('/').to_string(),
        Err(_) => {
            // Shared by every test of the binary, for as long as it runs.
            let cluster = Cluster::start();
            let url = cluster.server.clone();
            std::mem::forget(cluster);
            url
        }
    })
}

/// A fresh, empty database on the shared server; its URL.
pub async fn database() -> String {
    create_database(server()).await
}

async fn create_database(server: &str) -> String {
    use sqlx::Connection;
    let name = format!("sop_test_{:016x}", rand::random::<u64>());
    // A cluster just started accepts TCP slightly before logins: retry for a while.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut admin = loop {
        match sqlx::PgConnection::connect(&format!("{server}/postgres")).await {
            Ok(c) => break c,
            Err(e) if Instant::now() > deadline => panic!("cannot reach {server}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .expect("create a test database");
    format!("{server}/{name}")
}

/// The directory holding `initdb` and `postgres`: on the PATH, else Debian's layout.
fn binaries() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    let mut debian: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    debian.sort();
    debian.reverse(); // the newest version first
    on_path
        .into_iter()
        .chain(debian)
        .find(|dir| dir.join("initdb").is_file() && dir.join("postgres").is_file())
        .unwrap_or_else(|| panic!("{INSTALL}"))
}

/// The `postgres` user's ids when we are root (initdb and postgres refuse to run as root).
fn postgres_user() -> Option<(libc::uid_t, libc::gid_t)> {
    // SAFETY: getuid has no preconditions; getpwnam returns a static record or null.
    unsafe {
        if libc::getuid() != 0 {
            return None;
        }
        let pw = libc::getpwnam(c"postgres".as_ptr());
        assert!(
            !pw.is_null(),
            "running as root, the tests start PostgreSQL as the `postgres` user, which is \
             missing: {INSTALL}"
        );
        Some(((*pw).pw_uid, (*pw).pw_gid))
    }
}

/// Runs as `user` (set before exec), and dies with the test binary when `die_with_parent`.
fn command_as(
    program: &Path,
    user: Option<(libc::uid_t, libc::gid_t)>,
    die_with_parent: bool,
) -> Command {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(program);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if let Some((uid, gid)) = user {
                if libc::setgid(gid) != 0 || libc::setuid(uid) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            // After the uid change, which would clear it.
            if die_with_parent && libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGINT) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

/// A throwaway cluster of the test binary's own. The shared one lives as long as the binary; a
/// test that stops or restarts PostgreSQL starts a private one, removed when dropped.
pub struct Cluster {
    /// `postgres://postgres@127.0.0.1:port`.
    pub server: String,
    dir: PathBuf,
    port: u16,
    bin: PathBuf,
    user: Option<(libc::uid_t, libc::gid_t)>,
}

impl Cluster {
    /// A new cluster (initdb), running.
    pub fn start() -> Cluster {
        static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let bin = binaries();
        let user = postgres_user();
        remove_stale_clusters();
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("sop-pg-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
        }
        let out = command_as(&bin.join("initdb"), user, false)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(dir.join("data"))
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cluster = Cluster {
            server: format!("postgres://postgres@127.0.0.1:{port}"),
            dir,
            port,
            bin,
            user,
        };
        cluster.run();
        cluster
    }

    /// A fresh, empty database on this cluster; its URL.
    pub async fn database(&self) -> String {
        create_database(&self.server).await
    }

    /// Starts the server on the cluster's data and waits until it takes connections.
    fn run(&self) {
        // The parent-death signal follows the thread that forked: fork from one that never ends.
        let (started, wait) = std::sync::mpsc::channel();
        let (postgres, data, dir, port, user) = (
            self.bin.join("postgres"),
            self.dir.join("data"),
            self.dir.clone(),
            self.port,
            self.user,
        );
        std::thread::spawn(move || {
            let child = command_as(&postgres, user, true)
                .arg("-D")
                .arg(&data)
                .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
                .arg("-c")
                .arg(format!("unix_socket_directories={}", dir.display()))
                .args(["-c", "max_connections=400", "-c", "fsync=on"])
                .stdout(Stdio::null())
                .stderr(Stdio::from(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(dir.join("postgres.log"))
                        .unwrap(),
                ))
                .spawn();
            let _ = started.send(child.map(|c| c.id()));
            loop {
                std::thread::park();
            }
        });
        wait.recv().unwrap().expect("start postgres");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "PostgreSQL did not start: see {}",
                self.dir.join("postgres.log").display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Fast shutdown (what `pg_ctl stop` does: clients are disconnected, in-flight transactions
    /// rolled back); returns once the server is gone.
    pub fn stop(&self) {
        let pid_file = self.dir.join("data/postmaster.pid");
        let Ok(text) = std::fs::read_to_string(&pid_file) else {
            return;
        };
        let pid: i32 = text.lines().next().unwrap().trim().parse().unwrap();
        // SAFETY: kill has no memory preconditions.
        unsafe { libc::kill(pid, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while pid_file.exists() {
            assert!(Instant::now() < deadline, "PostgreSQL did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server, waits `down`, starts it again on the same data and port.
    pub fn restart(&self, down: Duration) {
        self.stop();
        std::thread::sleep(down);
        self.run();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Clusters left by test binaries that are gone (their postgres died with them).
fn remove_stale_clusters() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("sop-pg-")
            .and_then(|p| p.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
