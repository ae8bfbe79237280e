//! A throwaway PostgreSQL cluster: `initdb` in a temporary directory and
//! `pg_ctl` on a free loopback port, stopped and removed when dropped.
//!
//! A watchdog process stops the server if this process dies without dropping
//! the cluster (a panic across a static, `kill -9`), so no test leaves a
//! server behind. Postgres refuses to run as root, so as root the cluster
//! runs as the `postgres` user the Debian package creates.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

/// Why a cluster could not be made.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("PostgreSQL's server programs (initdb, pg_ctl) are not installed and scripts/ensure-postgres.sh could not install them: {0}")]
    NotInstalled(String),
    #[error("`{command}` failed: {detail}")]
    Command { command: String, detail: String },
    #[error("cannot prepare the cluster directory: {0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

/// A running cluster; `url(db)` names a database in it.
pub struct Cluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    as_postgres: bool,
}

impl Cluster {
    /// Makes and starts a cluster (installing Debian's `postgresql` first if
    /// its programs are missing). Tuned for tests: no fsync.
    pub fn start() -> Result<Cluster> {
        let bin = server_bindir()?;
        let as_postgres = running_as_root();
        let dir = tempfile::Builder::new().prefix("pgcluster-").tempdir()?;
        if as_postgres {
            run(Command::new("chown").arg("postgres:").arg(dir.path()))?;
        }
        let mut cluster = Cluster {
            bin,
            dir,
            port: 0,
            as_postgres,
        };
        cluster.initdb()?;
        cluster.start_server()?;
        cluster.spawn_watchdog()?;
        Ok(cluster)
    }

    /// The loopback port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `name` (superuser `postgres`, no password).
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Creates database `name` and returns its URL.
    pub fn create_database(&self, name: &str) -> Result<String> {
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        self.execute("postgres", &format!("CREATE DATABASE {quoted}"))?;
        Ok(self.url(name))
    }

    /// Runs `sql` (one or more statements) in database `name` with psql.
    pub fn execute(&self, name: &str, sql: &str) -> Result<()> {
        self.query(name, sql).map(|_| ())
    }

    /// The rows `sql` returns in database `name`, one line each, columns
    /// separated by `|`.
    pub fn query(&self, name: &str, sql: &str) -> Result<String> {
        output(
            self.tool("psql")
                .args([
                    "-X",
                    "-q",
                    "-A",
                    "-t",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-h",
                    "127.0.0.1",
                ])
                .args(["-p", &self.port.to_string(), "-U", "postgres", "-d", name])
                .args(["-c", sql]),
        )
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn tool(&self, name: &str) -> Command {
        let program = self.bin.join(name);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        }
    }

    fn initdb(&self) -> Result<()> {
        run(self
            .tool("initdb")
            .arg("-D")
            .arg(self.data())
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C"])
            .arg("--no-sync"))
    }

    /// Starts the server on a free port; retries when another process takes
    /// the port between our probe and the server's bind.
    fn start_server(&mut self) -> Result<()> {
        let mut last = None;
        for _ in 0..5 {
            let port = free_port()?;
            let options = format!(
                "-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} \
                 -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
                 -c max_connections=300",
                self.dir.path().display()
            );
            let started = run(self
                .tool("pg_ctl")
                .arg("-D")
                .arg(self.data())
                .args(["-o", &options, "-l"])
                .arg(self.dir.path().join("server.log"))
                .args(["-w", "-t", "60", "start"]));
            match started {
                Ok(()) => {
                    self.port = port;
                    return Ok(());
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::Command {
            command: "pg_ctl start".into(),
            detail: "no attempt made".into(),
        }))
    }

    /// A shell loop that stops the server once this process is gone.
    fn spawn_watchdog(&self) -> Result<()> {
        let script = format!(
            "while kill -0 {pid} 2>/dev/null && [ -d '{data}' ]; do sleep 1; done; \
             [ -d '{data}' ] && {stop}; rm -rf '{dir}'",
            pid = std::process::id(),
            data = self.data().display(),
            dir = self.dir.path().display(),
            stop = self.stop_command(),
        );
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        Ok(())
    }

    fn stop_command(&self) -> String {
        let pg_ctl = self.bin.join("pg_ctl");
        let prefix = if self.as_postgres {
            "runuser -u postgres -- "
        } else {
            ""
        };
        format!(
            "{prefix}{} -D '{}' -m immediate -w stop >/dev/null 2>&1",
            pg_ctl.display(),
            self.data().display()
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("sh")
            .args(["-c", &self.stop_command()])
            .status();
    }
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The newest installed server's `bin` directory (`PG_BINDIR` overrides).
fn server_bindir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("PG_BINDIR") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = newest_bindir() {
        return Ok(dir);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/ensure-postgres.sh");
    run(&mut Command::new(&script)).map_err(|e| Error::NotInstalled(e.to_string()))?;
    newest_bindir().ok_or_else(|| {
        Error::NotInstalled("no /usr/lib/postgresql/<version>/bin/initdb after installing".into())
    })
}

fn newest_bindir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn run(command: &mut Command) -> Result<()> {
    output(command).map(|_| ())
}

/// What `command` printed, if it succeeded.
fn output(command: &mut Command) -> Result<String> {
    let shown = format!("{command:?}");
    let out = command.stdin(Stdio::null()).output()?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(Error::Command {
            command: shown,
            detail: format!(
                "{}; {}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim(),
                String::from_utf8_lossy(&out.stdout).trim()
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_serves_new_databases_and_is_gone_after_drop() {
        let cluster = Cluster::start().unwrap();
        let url = cluster.create_database("app").unwrap();
        assert_eq!(url, cluster.url("app"));
        cluster
            .execute(
                "app",
                "CREATE TABLE t (n int); INSERT INTO t VALUES (1), (2)",
            )
            .unwrap();
        assert_eq!(
            cluster
                .query("app", "SELECT n, n * 10 FROM t ORDER BY n")
                .unwrap(),
            "1|10\n2|20"
        );
        let port = cluster.port();
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
        let dir = cluster.dir.path().to_path_buf();
        drop(cluster);
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
        assert!(!dir.exists());
    }
}
