//! The processes a scenario runs, each as a user would start it: `cdc-relay lab` (faults only
//! through its control endpoint over HTTP), and `cdc-relay run` instances (stopped with OS
//! signals: SIGKILL, SIGTERM). Their stderr goes to files, shown when a scenario fails.
//!
//! Process handling only: it must not record the history (observe, load) or judge it (checker).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The binary under test (`make chaos` builds it with the release profile).
pub const BIN: &str = env!("CARGO_BIN_EXE_cdc-relay");

/// A file's text, or a note that it could not be read.
pub fn read_text(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| format!("({}: {e})", p.display()))
}

/// The environment variable the relays read their admin token from, and the token.
pub const ADMIN_TOKEN_ENV: &str = "CDC_RELAY_CHAOS_ADMIN_TOKEN";
pub const ADMIN_TOKEN: &str = "chaos-admin-token";

/// A free loopback port (the OS picks it; a relay's admin endpoint binds it right after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

/// A running `cdc-relay lab` and the JSON line it printed.
pub struct Lab {
    child: Child,
    pub info: Value,
    stderr: PathBuf,
}

impl Lab {
    /// Starts the lab in `dir` with `args` and reads its JSON line.
    pub fn start(dir: &Path, args: &[&str]) -> Lab {
        let stderr = dir.join("lab.err");
        let mut child = Command::new(BIN)
            .arg("lab")
            .args(args)
            .current_dir(dir)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {BIN} lab: {e}"));
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_default();
        let info: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("lab JSON {line:?}: {e}; stderr: {}", read_text(&stderr)));
        assert!(
            info["aws_endpoint_url"].is_string(),
            "the lab runs moto (scripts/setup.sh installs it): {info}; stderr: {}",
            read_text(&stderr)
        );
        Lab {
            child,
            info,
            stderr,
        }
    }

    pub fn field(&self, path: &[&str]) -> String {
        let mut v = &self.info;
        for p in path {
            v = &v[*p];
        }
        v.as_str()
            .unwrap_or_else(|| panic!("the lab's JSON has no {path:?}: {}", self.info))
            .to_string()
    }

    /// POSTs a control operation and returns the state it answered with; panics on a non-2xx.
    pub async fn control(&self, op: &str, body: Option<Value>) -> Value {
        self.request(reqwest::Method::POST, op, body).await
    }

    /// DELETEs a control resource (e.g. pending injected errors) and returns the state.
    pub async fn control_delete(&self, op: &str) -> Value {
        self.request(reqwest::Method::DELETE, op, None).await
    }

    async fn request(&self, method: reqwest::Method, op: &str, body: Option<Value>) -> Value {
        let url = format!("{}{op}", self.field(&["control_url"]));
        let mut req = reqwest::Client::new().request(method.clone(), &url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let code = resp.status();
        let answer: Value = resp.json().await.unwrap_or(Value::Null);
        assert!(code.is_success(), "{method} {op}: {code} {answer}");
        answer
    }

    pub fn log(&self) -> String {
        read_text(&self.stderr)
    }
}

impl Drop for Lab {
    /// Ctrl-C first, so the lab stops the moto it started (a SIGKILLed lab leaves moto running),
    /// then SIGKILL if it has not exited within 15 s.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill")
                .args(["-INT", &self.child.id().to_string()])
                .status();
            let until = Instant::now() + Duration::from_secs(15);
            while Instant::now() < until && matches!(self.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `cdc-relay run` process; it can be killed and started again on the same config.
pub struct Relay {
    pub name: String,
    config: PathBuf,
    stderr: PathBuf,
    pub admin: String,
    child: Option<Child>,
    /// Every start's log, appended (one file per instance).
    starts: u32,
    /// Outcome counters of earlier lives, and of this one at its last scrape.
    before: BTreeMap<String, f64>,
    life: BTreeMap<String, f64>,
}

/// The relay's record outcomes the report counts (`cdc_relay_records_processed_total`).
pub const OUTCOMES: [&str; 4] = ["written", "superseded", "stale", "dead_lettered"];

impl Relay {
    /// Writes `config` (TOML; `{admin}` is replaced by a free loopback address) and starts it.
    pub fn start(dir: &Path, name: &str, config: &str) -> Relay {
        let admin_addr = format!("127.0.0.1:{}", free_port());
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, config.replace("{admin}", &admin_addr)).unwrap();
        let mut r = Relay {
            name: name.to_string(),
            config: path,
            stderr: dir.join(format!("{name}.err")),
            admin: format!("http://{admin_addr}"),
            child: None,
            starts: 0,
            before: BTreeMap::new(),
            life: BTreeMap::new(),
        };
        r.restart();
        r
    }

    /// Starts the process (again), its log appended to the instance's file.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "{} is running", self.name);
        for (k, v) in std::mem::take(&mut self.life) {
            *self.before.entry(k).or_insert(0.0) += v;
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.stderr)
            .unwrap();
        self.starts += 1;
        let child = Command::new(BIN)
            .args(["run", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .env(ADMIN_TOKEN_ENV, ADMIN_TOKEN)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {BIN} run: {e}"));
        self.child = Some(child);
    }

    /// Reads this life's outcome counters (call before a kill: a dead process has no metrics).
    pub async fn scrape(&mut self) {
        let text = self.metrics().await;
        if text.is_empty() {
            return;
        }
        for o in OUTCOMES {
            let v = metric_sum(
                &text,
                "cdc_relay_records_processed_total",
                &[&format!("outcome=\"{o}\"")],
            );
            self.life.insert(o.to_string(), v);
        }
    }

    /// Outcome counters over every life, as far as they were scraped.
    pub fn counted(&self) -> BTreeMap<String, f64> {
        let mut all = self.before.clone();
        for (k, v) in &self.life {
            *all.entry(k.clone()).or_insert(0.0) += v;
        }
        all
    }

    /// SIGKILL: no shutdown, no final commit.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for the exit (a graceful drain); returns how long it took.
    pub fn terminate(&mut self, timeout: Duration) -> Duration {
        let started = Instant::now();
        let Some(mut c) = self.child.take() else {
            return Duration::ZERO;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        while started.elapsed() < timeout {
            if let Ok(Some(status)) = c.try_wait() {
                assert!(
                    status.success(),
                    "{} exited with {status} after SIGTERM: {}",
                    self.name,
                    self.log()
                );
                return started.elapsed();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
        panic!("{} did not exit within {timeout:?} of SIGTERM", self.name);
    }

    /// Panics with the log when the process exited on its own.
    pub fn assert_running(&mut self) {
        if let Some(c) = &mut self.child
            && let Ok(Some(status)) = c.try_wait()
        {
            panic!("{} exited with {status}: {}", self.name, self.log());
        }
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The admin endpoint's `/status`, or `Null` while it does not answer.
    pub async fn status(&self) -> Value {
        match reqwest::get(format!("{}/status", self.admin)).await {
            Ok(r) => r.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        }
    }

    /// `POST /admin/failover` or `/admin/failback` with the token; the HTTP status and answer.
    pub async fn planned(&self, what: &str) -> (u16, Value) {
        let resp = reqwest::Client::new()
            .post(format!("{}/admin/{what}", self.admin))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await;
        match resp {
            Ok(r) => {
                let code = r.status().as_u16();
                (code, r.json().await.unwrap_or(Value::Null))
            }
            Err(e) => (0, Value::String(e.to_string())),
        }
    }

    /// The admin endpoint's `/metrics` text, or empty while it does not answer.
    pub async fn metrics(&self) -> String {
        match reqwest::get(format!("{}/metrics", self.admin)).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    pub fn log(&self) -> String {
        read_text(&self.stderr)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One sample value of a Prometheus text exposition (`name{labels} value`), summed over every
/// series whose name is `name` and whose labels contain each of `labels` (`key="value"`).
pub fn metric_sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, rest) = series.split_once('{').unwrap_or((series, ""));
            (n == name && labels.iter().all(|want| rest.contains(want)))
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    #[test]
    fn metric_sum_adds_the_matching_series() {
        let text = "# HELP x\nlag{partition=\"0\",region=\"a\"} 3\nlag{partition=\"1\",region=\"a\"} 4\nlag{partition=\"1\",region=\"b\"} 5\nlagging 9\n";
        assert_eq!(super::metric_sum(text, "lag", &["region=\"a\""]), 7.0);
        assert_eq!(super::metric_sum(text, "lag", &[]), 12.0);
        assert_eq!(super::metric_sum(text, "lagging", &[]), 9.0);
    }
}
