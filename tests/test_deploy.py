"""deploy/: the probes and the scrape configuration name routes this app serves."""

import re

import yaml

from tests.support.server import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy"


def test_kubernetes_probes_liveness_on_healthz_and_readiness_on_readyz(client):
    deployment = next(
        doc
        for doc in yaml.safe_load_all((DEPLOY / "kubernetes.yaml").read_text())
        if doc["kind"] == "Deployment"
    )
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    probes = {name: container[name]["httpGet"]["path"] for name in ("livenessProbe", "readinessProbe")}
    assert probes == {"livenessProbe": "/healthz", "readinessProbe": "/readyz"}
    for path in probes.values():
        assert client.get(path).status_code == 200
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > client.application.config["GRACEFUL_TIMEOUT"]


def test_prometheus_scrapes_metrics_of_each_process_and_nginx_keeps_them_private(client):
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    [job] = config["scrape_configs"]
    assert client.get(job["metrics_path"]).status_code == 200
    assert len(job["static_configs"][0]["targets"]) == 2
    assert re.search(r"location = /metrics \{\s*return 404;", (DEPLOY / "nginx.conf").read_text())
