//! Starts moto (a real AWS-API server) in server mode on 127.0.0.1 with a free port. The Python
//! that has moto is looked up at run time (`locate`): `$CDC_RELAY_MOTO_PYTHON`, else the project's
//! `.local/venv` (made by `scripts/setup.sh`) found from the working directory or from the
//! executable's location, else `python3` if it can import moto. Test and demo support only.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum MotoError {
    #[error("moto is not installed: {0} (run `make setup` or scripts/setup.sh)")]
    NotInstalled(String),
    #[error("cannot start moto: {0}")]
    Start(String),
}

/// A moto server process; killed on drop.
pub struct Moto {
    child: Child,
    endpoint: String,
    frozen: std::sync::atomic::AtomicBool,
}

/// The variable that names the Python to run moto with.
pub const PYTHON_VAR: &str = "CDC_RELAY_MOTO_PYTHON";

/// The venv `scripts/setup.sh` creates, relative to the project root.
const VENV_PYTHON: &str = ".local/venv/bin/python";

/// A Python that can run moto, and how it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MotoPython {
    pub path: PathBuf,
    /// `$CDC_RELAY_MOTO_PYTHON`, `venv <dir>` or `python3`.
    pub found_by: String,
}

/// Where to look for moto's Python (injected, so the order can be tested).
pub struct Lookup<'a> {
    /// The value of `$CDC_RELAY_MOTO_PYTHON`, if set.
    pub var: Option<PathBuf>,
    /// Directories whose `.local/venv` is tried, in order.
    pub roots: Vec<PathBuf>,
    /// Whether `python3` on the PATH imports moto.
    pub python3_has_moto: &'a dyn Fn() -> bool,
}

impl Lookup<'_> {
    /// The first usable Python, or why there is none.
    pub fn find(&self) -> Result<MotoPython, String> {
        if let Some(p) = &self.var {
            return if p.exists() {
                Ok(MotoPython {
                    path: p.clone(),
                    found_by: format!("${PYTHON_VAR}"),
                })
            } else {
                Err(format!(
                    "${PYTHON_VAR} is {}, which does not exist",
                    p.display()
                ))
            };
        }
        for root in &self.roots {
            let py = root.join(VENV_PYTHON);
            if py.exists() {
                return Ok(MotoPython {
                    path: py,
                    found_by: format!("venv {}", root.join(".local/venv").display()),
                });
            }
        }
        if (self.python3_has_moto)() {
            return Ok(MotoPython {
                path: PathBuf::from("python3"),
                found_by: "python3".into(),
            });
        }
        Err(format!(
            "${PYTHON_VAR} is not set, no {VENV_PYTHON} under {} or their parents, and python3 cannot import moto (run `make setup`)",
            self.roots
                .iter()
                .map(|r| r.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}

/// Directories to search for the project's venv: the working directory and the executable's
/// directory, each with its ancestors (a binary in `target/release/` finds the checkout's venv).
fn search_roots() -> Vec<PathBuf> {
    let mut roots = Vec::new();
    let starts = [
        std::env::current_dir().ok(),
        std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(PathBuf::from)),
    ];
    for start in starts.into_iter().flatten() {
        for dir in start.ancestors() {
            if !roots.iter().any(|r: &PathBuf| r == dir) {
                roots.push(dir.to_path_buf());
            }
        }
    }
    roots
}

fn python3_has_moto() -> bool {
    Command::new("python3")
        .args(["-c", "import moto.server, flask, flask_cors"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Finds the Python that has moto at run time (see the module docs), or says why there is none.
/// Looked up once per process.
pub fn locate() -> Result<MotoPython, String> {
    static FOUND: std::sync::OnceLock<Result<MotoPython, String>> = std::sync::OnceLock::new();
    FOUND
        .get_or_init(|| {
            Lookup {
                var: std::env::var_os(PYTHON_VAR)
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from),
                roots: search_roots(),
                python3_has_moto: &python3_has_moto,
            }
            .find()
        })
        .clone()
}

fn free_port() -> Result<u16, MotoError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| MotoError::Start(e.to_string()))
}

/// moto's server with one request at a time (werkzeug without threads). moto does not serialize
/// conditional writes to one item across its request threads (two racing `UpdateItem`s with the
/// same condition can both succeed); DynamoDB does. Tests of conditional races use this.
const SERIALIZED: &str = r#"
import os, sys
from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
os.environ.setdefault("MOTO_PORT", sys.argv[2])
run_simple(sys.argv[1], int(sys.argv[2]), DomainDispatcherApplication(create_backend_app), threaded=False, request_handler=MotoRequestHandler)
"#;

impl Moto {
    /// Starts moto and waits until it answers.
    pub fn start() -> Result<Moto, MotoError> {
        Self::launch(false)
    }

    /// Starts moto serving one request at a time: conditional writes are then atomic, as on
    /// DynamoDB (see `SERIALIZED`). Slower; for race tests only.
    pub fn start_serialized() -> Result<Moto, MotoError> {
        Self::launch(true)
    }

    fn launch(serialized: bool) -> Result<Moto, MotoError> {
        let py = locate().map_err(MotoError::NotInstalled)?.path;
        let mut last = String::new();
        // A port taken between probing and binding is retried with another.
        for _ in 0..5 {
            let port = free_port()?;
            let port_s = port.to_string();
            let args: Vec<&str> = if serialized {
                vec!["-c", SERIALIZED, "127.0.0.1", &port_s]
            } else {
                vec!["-m", "moto.server", "-H", "127.0.0.1", "-p", &port_s]
            };
            let child = Command::new(&py)
                .args(&args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| MotoError::Start(format!("{}: {e}", py.display())))?;
            let mut moto = Moto {
                child,
                endpoint: format!("http://127.0.0.1:{port}"),
                frozen: std::sync::atomic::AtomicBool::new(false),
            };
            match moto.wait_ready(Duration::from_secs(30)) {
                Ok(()) => return Ok(moto),
                Err(e) => last = e,
            }
        }
        Err(MotoError::Start(last))
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let addr = self.endpoint.trim_start_matches("http://").to_string();
        let until = Instant::now() + timeout;
        while Instant::now() < until {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("moto exited with {status}"));
            }
            if std::net::TcpStream::connect(&addr).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err("moto did not answer in time".into())
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Freezes the server (SIGSTOP) with its data: connections are accepted by the kernel but
    /// nothing answers, so clients time out — an AWS endpoint that stopped responding.
    ///
    /// Returns once the kernel shows the process stopped: SIGSTOP is delivered asynchronously,
    /// and a caller that acts on "frozen" (produces records the outage must block, say) must not
    /// race the last requests moto still answers.
    pub fn pause(&self) -> std::io::Result<()> {
        self.signal("-STOP")?;
        self.frozen
            .store(true, std::sync::atomic::Ordering::Release);
        let until = Instant::now() + Duration::from_secs(5);
        while self.process_state().is_some_and(|s| s != 'T' && s != 't') {
            if Instant::now() > until {
                return Err(std::io::Error::other(
                    "moto did not stop within 5 s of SIGSTOP",
                ));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(())
    }

    /// The process's state letter from `/proc/<pid>/stat` (`T` = stopped), or `None` where the
    /// kernel does not show it (no procfs).
    fn process_state(&self) -> Option<char> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).ok()?;
        stat.rsplit(')')
            .next()?
            .split_whitespace()
            .next()?
            .chars()
            .next()
    }

    /// Resumes a paused server (SIGCONT); it answers what queued up meanwhile.
    pub fn resume(&self) -> std::io::Result<()> {
        self.signal("-CONT")?;
        self.frozen
            .store(false, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    /// Whether `pause` froze it.
    pub fn is_frozen(&self) -> bool {
        self.frozen.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn signal(&self, sig: &str) -> std::io::Result<()> {
        let status = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()?;
        if status.success() {
            Ok(())
        } else {
            Err(std::io::Error::other(format!(
                "kill {sig} failed: {status}"
            )))
        }
    }

    /// Kills the server at once through its pid (usable while it is shared; `Drop` reaps it).
    pub fn terminate(&self) {
        let _ = self.signal("-KILL");
    }

    /// Kills the server (data is lost: moto keeps state in memory).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.resume();
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_order_is_variable_then_venv_then_python3() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("checkout");
        let venv_py = root.join(VENV_PYTHON);
        std::fs::create_dir_all(venv_py.parent().unwrap()).unwrap();
        std::fs::write(&venv_py, "").unwrap();
        let deep = root.join("target/release");
        let yes = || true;
        let no = || false;

        // The variable wins, and a wrong one is reported, not skipped.
        let explicit = dir.path().join("py");
        std::fs::write(&explicit, "").unwrap();
        let l = Lookup {
            var: Some(explicit.clone()),
            roots: vec![root.clone()],
            python3_has_moto: &yes,
        };
        assert_eq!(l.find().unwrap().path, explicit);
        let l = Lookup {
            var: Some(dir.path().join("nope")),
            roots: vec![root.clone()],
            python3_has_moto: &yes,
        };
        assert!(l.find().unwrap_err().contains("does not exist"));

        // Then the project's venv, from any of the roots (ancestors included by search_roots).
        let roots: Vec<PathBuf> = deep.ancestors().map(PathBuf::from).collect();
        let l = Lookup {
            var: None,
            roots,
            python3_has_moto: &no,
        };
        let found = l.find().unwrap();
        assert_eq!(found.path, venv_py);
        assert!(found.found_by.starts_with("venv "), "{found:?}");

        // Then python3, else a reason naming every place looked at.
        let elsewhere = dir.path().join("elsewhere");
        let l = Lookup {
            var: None,
            roots: vec![elsewhere.clone()],
            python3_has_moto: &yes,
        };
        assert_eq!(l.find().unwrap().found_by, "python3");
        let l = Lookup {
            var: None,
            roots: vec![elsewhere.clone()],
            python3_has_moto: &no,
        };
        let why = l.find().unwrap_err();
        assert!(
            why.contains(PYTHON_VAR) && why.contains(&elsewhere.display().to_string()),
            "{why}"
        );
    }
}
