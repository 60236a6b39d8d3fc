#!/usr/bin/env bash
# Creates or reuses .venv and installs the pinned dependencies; with --test, also the Debian
# packages the test tiers start (Prometheus, Alertmanager, etcd, Go for the API server build,
# buildah and mmdebstrap for the image).
# Re-running is fast: each step is skipped when its inputs have not changed.
set -euo pipefail
cd "$(dirname "$0")/.."

want_test_packages=0
[ "${1:-}" = "--test" ] && want_test_packages=1

apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "setup: installing Debian packages: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

if [ "$want_test_packages" = 1 ]; then
  # buildah and mmdebstrap: the image tier builds the agent's image on a base made from Debian
  # packages (no registry is reachable from the test machines).
  apt_install prometheus prometheus-alertmanager etcd-server golang-go rsync jq \
    golang-github-modern-go-reflect2-dev openssl buildah mmdebstrap
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.drift-agent-installed
digest=$(cat pyproject.toml drift_logger/pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$digest" ]; then
  echo "setup: installing Python dependencies (pinned by constraints.txt)"
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip 2>/dev/null || true
  # One call, so pip takes drift-logger (a dependency of the demo and dev extras) from ./drift_logger.
  .venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt \
    -e ./drift_logger -e '.[dev]' \
    2> >(grep -v 'WARNING: Location' >&2)
  echo "$digest" > "$stamp"
fi

if [ "$want_test_packages" = 1 ]; then
  # The Kubernetes test tier needs kube-apiserver, built once from Debian's source package and
  # cached outside the repo (~/.cache/drift-agent); a cached build returns at once.
  .venv/bin/python -m tests.infra.kube build
fi
