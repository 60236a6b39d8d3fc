#!/usr/bin/env bash
# Builds the drift-agent image (`make image`), with Docker or Podman where one runs, buildah
# otherwise. Python packages come from a wheelhouse built here on the host with `pip wheel`, so
# nothing inside the build reaches the network.
#
#   scripts/image.sh build     wheelhouse + image, tagged $IMAGE:$TAG (the chart's default)
#   scripts/image.sh wheels    the wheelhouse only: build/wheelhouse/{deps,project}
#   scripts/image.sh name      prints $IMAGE:$TAG
#   scripts/image.sh base      a local base image from Debian packages (mmdebstrap), for machines
#                              that cannot pull the official one; prints its name
#
# Settings (environment):
#   IMAGE       repository to tag            (default ghcr.io/drift-agent/drift-agent)
#   TAG         tag                          (default the version in pyproject.toml)
#   BASE_IMAGE  base of both stages          (default docker.io/library/python:3.11-slim-bookworm)
#   BUILDER     docker | podman | buildah    (default the first that works, in that order)
#   FORCE       1 = rebuild even when the image is up to date with its inputs
#   STORAGE_DRIVER  buildah's storage driver (default buildah's own; vfs where overlay fails)
#   PYTHON      interpreter that runs `pip wheel` (default .venv/bin/python, else python3); it must
#               be the base image's CPython minor version (3.11)
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -n1)
IMAGE=${IMAGE:-ghcr.io/drift-agent/drift-agent}
TAG=${TAG:-$VERSION}
BASE_IMAGE=${BASE_IMAGE:-docker.io/library/python:3.11-slim-bookworm}
LOCAL_BASE=localhost/drift-agent-base:bookworm
WHEELHOUSE=build/wheelhouse
# buildah without a container runtime: chroot isolation (verified on Debian 12). Its storage
# driver is buildah's default (overlay as root) unless STORAGE_DRIVER names one: vfs works where
# overlay mounts do not (rootless, nested containers), at the cost of a full copy per layer.
export BUILDAH_ISOLATION=${BUILDAH_ISOLATION:-chroot}
buildah_cmd() { buildah ${STORAGE_DRIVER:+--storage-driver "$STORAGE_DRIVER"} "$@"; }

log() { echo "image: $*" >&2; }

python_for_wheels() {
  if [ -n "${PYTHON:-}" ]; then echo "$PYTHON"
  elif [ -x .venv/bin/python ]; then echo .venv/bin/python
  else echo python3
  fi
}

pick_builder() {
  if [ -n "${BUILDER:-}" ]; then echo "$BUILDER"; return; fi
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then echo docker; return; fi
  if command -v podman >/dev/null; then echo podman; return; fi
  if command -v buildah >/dev/null; then echo buildah; return; fi
  log "no image builder: install Docker, Podman or buildah (Debian: apt-get install buildah)"
  exit 1
}

build_wheels() {
  local py deps_digest stamp
  py=$(python_for_wheels)
  mkdir -p "$WHEELHOUSE"
  # Third-party wheels: rebuilt only when the pins or the declared dependencies change, so their
  # bytes (and the image layer made from them) stay the same from one build to the next.
  deps_digest=$(cat constraints.txt pyproject.toml | sha256sum | cut -d' ' -f1)
  stamp="$WHEELHOUSE/deps/.inputs"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$deps_digest" ]; then
    log "building the dependency wheelhouse (pinned by constraints.txt)"
    rm -rf "$WHEELHOUSE/deps" "$WHEELHOUSE/all"
    "$py" -m pip wheel -q --disable-pip-version-check -c constraints.txt --wheel-dir "$WHEELHOUSE/all" . \
      2> >(grep -v "WARNING: Location" >&2)
    mkdir -p "$WHEELHOUSE/deps"
    find "$WHEELHOUSE/all" -name '*.whl' ! -name 'drift_agent-*' -exec mv {} "$WHEELHOUSE/deps/" \;
    rm -rf "$WHEELHOUSE/all"
    # The install step's requirement list: exactly the wheels present, each by file name.
    (cd "$WHEELHOUSE/deps" && ls -1 -- *.whl) | sed "s|^|/wheels/deps/|" > "$WHEELHOUSE/deps/requirements.txt"
    echo "$deps_digest" > "$stamp"
  fi
  # The project's own wheels: every build (they are small). drift-logger is not in the image; its
  # wheel is here for model servers (README, "The serving-side logger").
  rm -rf "$WHEELHOUSE/project"
  "$py" -m pip wheel -q --disable-pip-version-check --no-deps --wheel-dir "$WHEELHOUSE/project" . ./drift_logger
  log "wheelhouse ready: $WHEELHOUSE ($(du -sh "$WHEELHOUSE" | cut -f1))"
}

build_local_base() {
  local builder=buildah_cmd
  if buildah_cmd inspect --type image "$LOCAL_BASE" >/dev/null 2>&1; then echo "$LOCAL_BASE"; return; fi
  command -v mmdebstrap >/dev/null || { log "the local base needs mmdebstrap (apt-get install mmdebstrap)"; exit 1; }
  local work ctr
  work=$(mktemp -d)
  trap 'rm -rf "$work"' RETURN
  log "building $LOCAL_BASE from Debian packages (mmdebstrap, ~30 s)"
  # minbase + the interpreter; documentation and locales left out; apt's lists are cleaned by
  # mmdebstrap itself.
  mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,ca-certificates \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    bookworm "$work/rootfs.tar" >&2
  ctr=$($builder from scratch)
  $builder add "$ctr" "$work/rootfs.tar" / >/dev/null
  $builder config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$ctr"
  $builder commit --quiet "$ctr" "$LOCAL_BASE" >/dev/null
  $builder rm "$ctr" >/dev/null
  echo "$LOCAL_BASE"
}

# What the image is made from: a digest of every file that goes into it. An image already tagged
# $IMAGE:$TAG and labelled with this digest is up to date, so re-running `make image` is instant.
inputs_digest() {
  { find agent detectors actions demo -type f ! -name '*.pyc' -print0 | sort -z | xargs -0 sha256sum
    sha256sum pyproject.toml constraints.txt Containerfile scripts/image.sh; } | sha256sum | cut -d' ' -f1
}

built_inputs() {
  local format='{{index .Config.Labels "io.drift-agent.inputs"}}'
  case "$1" in
    docker|podman) "$1" image inspect --format "$format" "$IMAGE:$TAG" 2>/dev/null || true ;;
    buildah) buildah_cmd inspect --type image --format "{{index .OCIv1.Config.Labels \"io.drift-agent.inputs\"}}" \
      "$IMAGE:$TAG" 2>/dev/null || true ;;
  esac
}

image_id() {
  case "$1" in
    docker|podman) "$1" image inspect --format '{{.Id}}' "$IMAGE:$TAG" 2>/dev/null || true ;;
    buildah) buildah_cmd inspect --type image --format '{{.FromImageID}}' "$IMAGE:$TAG" 2>/dev/null || true ;;
  esac
}

remove_image() {
  case "$1" in
    docker|podman) "$1" image rm "$2" >/dev/null 2>&1 || true ;;
    buildah) buildah_cmd rmi "$2" >/dev/null 2>&1 || true ;;
  esac
}

build_image() {
  local builder revision inputs previous current
  builder=$(pick_builder)
  inputs=$(inputs_digest)
  if [ "$(built_inputs "$builder")" = "$inputs" ] && [ -z "${FORCE:-}" ]; then
    log "$IMAGE:$TAG is up to date (FORCE=1 rebuilds)"
    return
  fi
  build_wheels
  previous=$(image_id "$builder")
  revision=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
  [ -n "$(git status --porcelain 2>/dev/null)" ] && revision="$revision-dirty"
  local args=(--file Containerfile --tag "$IMAGE:$TAG"
    --build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "VERSION=$VERSION" --build-arg "REVISION=$revision"
    --build-arg "INPUTS=$inputs")
  log "building $IMAGE:$TAG with $builder on $BASE_IMAGE"
  local started=$SECONDS
  case "$builder" in
    docker) docker build "${args[@]}" . ;;
    podman) podman build --layers "${args[@]}" . ;;
    buildah) buildah_cmd bud --layers --quiet "${args[@]}" . >/dev/null ;;
    *) log "BUILDER must be docker, podman or buildah, not '$builder'"; exit 2 ;;
  esac
  log "built $IMAGE:$TAG in $((SECONDS - started)) s"
  # The image this one replaces would stay behind untagged (over a GB each time); the cached
  # layers of the install stage stay, so the next build after a source change is still quick.
  current=$(image_id "$builder")
  if [ -n "$previous" ] && [ "$previous" != "$current" ]; then
    remove_image "$builder" "$previous"
  fi
}

case "${1:-build}" in
  build) build_image ;;
  name) echo "$IMAGE:$TAG" ;;
  wheels) build_wheels ;;
  base) build_local_base ;;
  *) echo "usage: $0 [build|wheels|base|name]" >&2; exit 2 ;;
esac
