//! Starts moto (a real AWS-API server) in server mode on 127.0.0.1 with a free port, from the
//! project's venv (`.local/venv`, made by `scripts/setup.sh`). Test and demo support only.

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
}

/// The Python that has moto: `$CDC_RELAY_MOTO_PYTHON`, else `.local/venv/bin/python` of this checkout.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("CDC_RELAY_MOTO_PYTHON") {
        return PathBuf::from(p);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".local/venv/bin/python")
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
        let py = python();
        if !py.exists() {
            return Err(MotoError::NotInstalled(format!(
                "{} does not exist",
                py.display()
            )));
        }
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
    pub fn pause(&self) -> std::io::Result<()> {
        self.signal("-STOP")
    }

    /// Resumes a paused server (SIGCONT); it answers what queued up meanwhile.
    pub fn resume(&self) -> std::io::Result<()> {
        self.signal("-CONT")
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
