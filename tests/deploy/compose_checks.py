"""Checks a compose file's resolved form (`docker-compose config` output) for what the README
promises; one line per check, "OK ..." or "FAIL ...". Run by tests/deploy/validate.sh.

    compose_checks.py REPO_ROOT COMPOSE_FILE RESOLVED_YAML
"""
import os
import re
import sys

import yaml

root, file, resolved = sys.argv[1:]
name = os.path.relpath(file, root)
doc = yaml.safe_load(open(resolved))
services = doc["services"]
secrets = doc.get("secrets") or {}
results = []


def check(ok, what):
    results.append(("OK " if ok else "FAIL ") + f"{name}: {what}")


for svc, s in services.items():
    image = s.get("image", "")
    if "build" in s:
        check(os.path.realpath(s["build"]["context"]) == os.path.realpath(root),
              f"{svc} is built from the repository (build.context is the repository root)")
    else:
        # pinned: an exact version tag or a digest; never latest or a floating major
        ok = bool(re.search(r"@sha256:[0-9a-f]{64}$", image)) or (
            bool(re.search(r":v?\d+\.\d+\.\d+[-\w.]*$", image)) and ":latest" not in image)
        check(ok, f"{svc} image {image!r} is pinned (exact version or digest)")
    check("ghcr.io" not in image or "build" in s,
          f"{svc} needs no unpublished registry image")
    env = s.get("environment") or {}
    leaked = [k for k in env if re.search(r"SECRET|PASSWORD|TOKEN", k)]
    check(not leaked, f"{svc} has no secret in its environment {leaked or ''}".rstrip())
    for dep, cond in (s.get("depends_on") or {}).items():
        want = "service_healthy" if services[dep].get("healthcheck") else "service_started"
        check(cond.get("condition") == want, f"{svc} waits for {dep} ({want})")
    if not svc.startswith("portcullis"):
        continue
    test = (s.get("healthcheck") or {}).get("test") or []
    check(test[:3] == ["CMD", "/usr/local/bin/portcullis", "health"],
          f"{svc} healthcheck is `portcullis health`")
    # every secret is a compose secret, and the mounted config reads exactly those, by *_file
    mounted = sorted(x["source"] for x in s.get("secrets") or [])
    check(bool(mounted) and all(m in secrets and "file" in secrets[m] for m in mounted),
          f"{svc} mounts compose secrets {mounted}")
    conf = [v.split(":")[0] for v in s.get("volumes") or []
            if v.endswith(":/etc/portcullis/portcullis.toml:ro")]
    check(len(conf) == 1, f"{svc} mounts one portcullis.toml read-only")
    if conf:
        text = open(conf[0]).read()
        rel = os.path.relpath(conf[0], root)
        used = sorted(re.findall(r'_file = "/run/secrets/([^"]+)"', text))
        check(used == mounted, f"{svc}: {rel} reads the mounted secrets through *_file keys {used}")
        check(not re.search(r"^\s*(client_)?secret\s*=", text, re.M),
              f"{svc}: {rel} has no inline secret")
print("\n".join(results))
