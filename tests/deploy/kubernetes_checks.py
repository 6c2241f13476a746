"""Checks the Kubernetes manifests for what the README promises, beyond their schema (which
kubernetes-validate checks); one line per check, "OK ..." or "FAIL ...". Run by
tests/deploy/validate.sh with the kubernetes-validate virtualenv's Python (PyYAML).

    kubernetes_checks.py CARGO_TOML MANIFEST...

* every image has an exact tag (no :latest, no untagged image); portcullis' is Cargo.toml's version;
* a portcullis Deployment has a startupProbe, a preStop, and terminationGracePeriodSeconds
  longer than the preStop sleep plus its config's drain_timeout (30 s by default);
* the cookie session store runs one replica (no HPA on it): two replicas could refresh one
  session at once, and a provider that detects refresh-token reuse revokes the grant;
* no Service exposes the admin port; the admin listener binds the pod's address or the
  Service does not carry it;
* every app Service that a portcullis config names as an upstream has a NetworkPolicy letting
  only portcullis pods in; a Redis Service likewise;
* a gateway (replicas > 1) has a PodDisruptionBudget and a HorizontalPodAutoscaler.
"""
import re
import sys
import tomllib
import urllib.parse

import yaml

cargo, manifests = sys.argv[1], sys.argv[2:]
version = re.search(r'^version = "([^"]+)"', open(cargo).read(), re.M).group(1)
results = []


def check(ok, what):
    results.append(("OK " if ok else "FAIL ") + what)


def seconds(text):
    m = re.fullmatch(r"(\d+)\s*(s|m)", text.strip())
    return int(m.group(1)) * (60 if m.group(2) == "m" else 1) if m else None


def selects(selector, labels):
    return all(labels.get(k) == v for k, v in (selector or {}).items())


for path in manifests:
    name = path.split("config/", 1)[-1]
    docs = [d for d in yaml.safe_load_all(open(path)) if d]
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    configs = {}
    for cm in by_kind.get("ConfigMap", []):
        for key, value in (cm.get("data") or {}).items():
            if key.endswith(".toml"):
                configs[(cm["metadata"]["name"], key)] = tomllib.loads(value)
    deployments = by_kind.get("Deployment", [])
    services = by_kind.get("Service", [])
    policies = by_kind.get("NetworkPolicy", [])
    portcullis_labels = []
    upstream_hosts = set()
    redis_hosts = set()

    for dep in deployments:
        dname = dep["metadata"]["name"]
        pod = dep["spec"]["template"]
        for c in pod["spec"]["containers"]:
            image = c["image"]
            tag = image.rsplit(":", 1)[1] if ":" in image.split("/")[-1] else ""
            check(tag and tag != "latest" and re.search(r"\d", tag),
                  f"{name}: {dname}/{c['name']} image {image} has an exact tag")
            if "portcullis/portcullis" not in image:
                continue
            portcullis_labels.append(pod["metadata"]["labels"])
            check(tag == version, f"{name}: {dname} runs portcullis {tag} (Cargo.toml: {version})")
            cfg = None
            for vol in pod["spec"].get("volumes", []):
                if "configMap" in vol:
                    for m in c.get("volumeMounts", []):
                        if m["name"] == vol["name"] and m.get("subPath"):
                            cfg = configs.get((vol["configMap"]["name"], m["subPath"]))
            check(cfg is not None, f"{name}: {dname} mounts its portcullis.toml from the ConfigMap")
            cfg = cfg or {}
            server = cfg.get("server", {})
            drain = seconds(server.get("drain_timeout", "30s"))
            pre = ((c.get("lifecycle") or {}).get("preStop") or {}).get("sleep", {}).get("seconds", 0)
            grace = pod["spec"].get("terminationGracePeriodSeconds", 30)
            check(pre > 0, f"{name}: {dname} has a preStop sleep")
            check(drain is not None and grace > pre + drain,
                  f"{name}: {dname} terminationGracePeriodSeconds {grace} > preStop {pre} + drain_timeout {drain}")
            check("startupProbe" in c, f"{name}: {dname} has a startupProbe")
            admin = server.get("admin_listen", "")
            check(admin.startswith("${POD_IP}") or admin.startswith("0.0.0.0") or admin.startswith("127."),
                  f"{name}: {dname} admin_listen {admin!r}")
            session = cfg.get("session", {})
            replicas = dep["spec"].get("replicas", 1)
            hpa = [h for h in by_kind.get("HorizontalPodAutoscaler", [])
                   if h["spec"]["scaleTargetRef"]["name"] == dname]
            if session.get("store", "cookie") == "cookie":
                check(replicas == 1 and not hpa,
                      f"{name}: {dname} uses the cookie store with one replica and no autoscaler")
            else:
                check(bool(hpa), f"{name}: {dname} has a HorizontalPodAutoscaler")
                check(any(selects(p["spec"]["selector"].get("matchLabels"), pod["metadata"]["labels"])
                          for p in by_kind.get("PodDisruptionBudget", [])),
                      f"{name}: {dname} has a PodDisruptionBudget")
                if "redis_url" in session:
                    redis_hosts.add(urllib.parse.urlsplit(session["redis_url"]).hostname)
            for r in cfg.get("route", []):
                host = urllib.parse.urlsplit(r["upstream"]).hostname
                if host not in ("127.0.0.1", "localhost", "::1"):
                    upstream_hosts.add(host)

    for svc in services:
        sname = svc["metadata"]["name"]
        ports = svc["spec"]["ports"]
        exposed = [p for p in ports if p.get("targetPort") in ("admin", 9090) or p["port"] == 9090]
        check(not exposed, f"{name}: Service {sname} does not expose the admin port")
        if sname in upstream_hosts | redis_hosts:
            sel = svc["spec"]["selector"]
            pols = [p for p in policies if selects(p["spec"]["podSelector"].get("matchLabels"), sel)]
            only_gateway = bool(pols) and all(
                all(set(f) == {"podSelector"} and any(selects(f["podSelector"].get("matchLabels"), l)
                                                       for l in portcullis_labels)
                    for rule in p["spec"].get("ingress", []) for f in rule.get("from", []))
                and all(rule.get("from") for rule in p["spec"].get("ingress", []))
                for p in pols)
            check(only_gateway, f"{name}: only portcullis pods may reach Service {sname} (NetworkPolicy)")

print("\n".join(results))
