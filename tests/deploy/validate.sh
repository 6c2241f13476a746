#!/usr/bin/env bash
# Validates the deployment examples under config/ without a Docker engine or a cluster:
#
#   * every Kubernetes manifest under config/kubernetes/ against the Kubernetes OpenAPI
#     schemas (kubernetes-validate --strict; the schemas ship inside the package, no network);
#   * config/docker-compose.yml with docker-compose v1 (`docker-compose -f FILE config -q`
#     parses, interpolates and validates against the compose schema without an engine);
#   * that the portcullis.toml embedded in each ConfigMap is byte-identical to the standalone
#     file next to the manifest, and that the compose file mounts the standalone file;
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
validate_compose() {
    local f=$ROOT/config/docker-compose.yml out
    # the compose file refuses to interpolate without these (${VAR:?...}); dummy values
    if out=$(cd "$ROOT/config" && env ZITADEL_ISSUER=https://zitadel.example.com \
        ZITADEL_CLIENT_ID=dummy-client ZITADEL_CLIENT_SECRET=dummy-secret \
        SESSION_SECRET="$(random_secret)" \
        "$VENV_COMPOSE/bin/docker-compose" -f "$f" config 2>&1); then
        pass "docker-compose config ${f#"$ROOT"/}"
    else
        fail "docker-compose config ${f#"$ROOT"/}"
        echo "$out" | sed 's/^/      /'
        return
    fi
    # the mounted config must be the standalone file that `portcullis check` validates below
    if echo "$out" | grep -q -- "- $ROOT/config/compose/portcullis.toml:/etc/portcullis/portcullis.toml:ro"; then
        pass "compose mounts config/compose/portcullis.toml at /etc/portcullis/portcullis.toml"
    else
        fail "compose does not mount config/compose/portcullis.toml at /etc/portcullis/portcullis.toml"
    fi
    # a missing secret must be an error, not an empty string
    if (cd "$ROOT/config" && env -u SESSION_SECRET ZITADEL_ISSUER=x ZITADEL_CLIENT_ID=x \
        ZITADEL_CLIENT_SECRET=x "$VENV_COMPOSE/bin/docker-compose" -f "$f" config -q) >/dev/null 2>&1; then
        fail "compose accepts a missing SESSION_SECRET"
    else
        pass "compose refuses to start without SESSION_SECRET"
    fi
}

# ---------------------------------------------------------------- portcullis check
# Configs read secrets from absolute paths that exist only in the container
# (/etc/portcullis/secrets/...). For `check`, those paths are redirected to dummy files in a
# temporary folder: the copy of the config differs from the original only in those paths.
prepare_for_check() {
    local src=$1 dst=$TMP/check/${1#"$ROOT"/}
    mkdir -p "$(dirname "$dst")" "$TMP/secrets"
    local p
    for p in $(grep -oE '"/etc/portcullis/secrets/[^"]+"' "$src" | tr -d '"' | sort -u); do
        [ -e "$p" ] && continue
        # 64 random hex characters: good enough for a session secret
        random_secret >"$TMP/secrets/$(basename "$p")"
    done
    if [ -d /etc/portcullis/secrets ]; then
        cp "$src" "$dst"
    else
        sed "s#\"/etc/portcullis/secrets/#\"$TMP/secrets/#g" "$src" >"$dst"
    fi
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
}

# ---------------------------------------------------------------- main
validate_dockerfile
if setup_venvs; then
    validate_kubernetes
    validate_compose
fi
run_checks
finish
