"""The deployment files: they parse, name only metrics and labels the service exports, pass promtool (config, rules,
and unit tests of the alert expressions), and the Dockerfile and Kubernetes manifests keep their contract (CUDA
runtime base, non-root, health through gRPC, GPU, probes on the gRPC port)."""

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.utils import floatToGoString

from inspector.service.metrics import LATENCY_BUCKETS, STAGES, STATISTICS, Metrics
from inspector.inference.postprocess import ACCEPT, REJECT, REVIEW
from inspector.v1 import inspector_pb2 as pb

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PROMETHEUS = DEPLOY / "prometheus"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "inspector.json"
K8S = DEPLOY / "k8s"

# Labels Prometheus or the Prometheus Operator add to every scraped series.
TARGET_LABELS = {"job", "instance", "namespace", "pod", "service", "endpoint", "container"}
METRIC_NAME = re.compile(r"\binspector_[a-z0-9_]*[a-z0-9]")
SELECTOR = re.compile(r"\b(inspector_[a-z0-9_]*[a-z0-9])\s*\{([^}]*)\}")
MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)"')
GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")


# --- what the service exports -----------------------------------------------------------------------------------------


def exported_series() -> dict[str, set[str]]:
    """Every series name the service can export, with its label names (``le`` on buckets), from a fresh registry."""
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    labels_of = {}
    for collector in vars(metrics).values():
        if hasattr(collector, "describe") and hasattr(collector, "_labelnames"):
            for family in collector.describe():
                labels_of[family.name] = set(collector._labelnames)
    series = {}
    for family in registry.collect():
        labels = labels_of.get(family.name) or {k for s in family.samples for k in s.labels}  # process_*, python_*
        if family.type == "counter":
            series.update({family.name + "_total": labels, family.name + "_created": labels})
        elif family.type == "histogram":
            series.update({family.name + "_bucket": labels | {"le"}, family.name + "_count": labels,
                           family.name + "_sum": labels, family.name + "_created": labels})
        else:
            series[family.name] = labels
    return series


EXPORTED = exported_series()
FAMILIES = {re.sub(r"_(total|created|bucket|count|sum)$", "", name) for name in EXPORTED}
METHODS = {m.name for s in pb.DESCRIPTOR.services_by_name.values() for m in s.methods}
LATENCY_LE = {floatToGoString(b) for b in LATENCY_BUCKETS} | {"+Inf"}
# Label values a query may match exactly; a typo here would make a rule or panel silently empty.
VALUES = {
    "verdict": {ACCEPT, REVIEW, REJECT},
    "stage": set(STAGES),
    "result": {"success", "failure"},
    "method": METHODS,
    "statistic": set(STATISTICS),
    "job": {"inspector"},
}


def test_exported_set_is_what_the_service_declares():
    assert {"inspector_frames_total", "inspector_stage_seconds_bucket", "inspector_request_seconds_count",
            "inspector_in_flight_frames", "inspector_model_info", "inspector_model_swaps_total"} <= set(EXPORTED)
    assert "inspector_frames" not in EXPORTED and "inspector_stage_seconds" not in EXPORTED  # not series names
    assert EXPORTED["inspector_frames_total"] == {"verdict", "camera"}
    assert EXPORTED["inspector_stage_seconds_bucket"] == {"stage", "le"}
    assert EXPORTED["inspector_drift_psi"] == {"statistic"}
    assert "Inspect" in METHODS and "ActivateVersion" in METHODS


def check_promql(expr: str, where: str) -> list[str]:
    """Problems with the metric names, selector labels and grouping labels of one PromQL expression."""
    problems = []
    names = set(METRIC_NAME.findall(expr))
    problems += [f"{where}: {n} is not a series the service exports" for n in sorted(names - set(EXPORTED))]
    for name, body in SELECTOR.findall(expr):
        for label, op, value in MATCHER.findall(body):
            if label not in EXPORTED.get(name, set()) | TARGET_LABELS:
                problems.append(f"{where}: {name} has no label {label!r}")
            elif op == "=" and label in VALUES and value not in VALUES[label]:
                problems.append(f"{where}: {name}{{{label}={value!r}}} matches no value the service sets")
            elif op == "=" and label == "le" and name in ("inspector_request_seconds_bucket",
                                                          "inspector_stage_seconds_bucket") and value not in LATENCY_LE:
                problems.append(f"{where}: {name} has no bucket le={value!r} (buckets: {sorted(LATENCY_LE)})")
    allowed = set().union(*(EXPORTED.get(n, set()) for n in names)) | TARGET_LABELS
    for group in GROUPING.findall(expr):
        for label in filter(None, (g.strip() for g in group.split(","))):
            if label not in allowed:
                problems.append(f"{where}: grouping by {label!r}, a label none of {sorted(names)} has")
    return problems


def test_check_promql_catches_mistakes():
    assert check_promql('sum by (camera) (rate(inspector_frames_total{verdict="REJECT"}[5m]))', "ok") == []
    assert check_promql("rate(inspector_request_seconds[5m])", "x")  # a histogram's family name is no series
    assert check_promql("rate(inspector_frame_total[5m])", "x")
    assert check_promql('inspector_frames_total{verdict="reject"}', "x")
    assert check_promql('inspector_frames_total{stage="infer"}', "x")
    assert check_promql('inspector_request_seconds_bucket{le="0.04"}', "x")
    assert check_promql("sum by (stage) (inspector_frames_total)", "x")


# --- everything parses ------------------------------------------------------------------------------------------------


def yaml_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yml", ".yaml"))


def test_deploy_files_exist():
    expected = ["prometheus/prometheus.yml", "prometheus/alerts.yml", "compose.yaml",
                "grafana/provisioning/datasources/prometheus.yaml", "grafana/provisioning/dashboards/inspector.yaml",
                "grafana/dashboards/inspector.json", "k8s/deployment.yaml", "k8s/service.yaml",
                "k8s/servicemonitor.yaml", "k8s/hpa.yaml", "k8s/pvc.yaml"]
    assert [f for f in expected if not (DEPLOY / f).is_file()] == []
    assert (ROOT / "Dockerfile").is_file() and (ROOT / ".dockerignore").is_file()


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_yaml_parses(path):
    docs = list(yaml.safe_load_all(path.read_text()))
    assert docs and all(isinstance(d, dict) for d in docs), f"{path}: expected one or more mappings"


def test_dashboard_json_parses():
    dashboard = json.loads(DASHBOARD.read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert dashboard["uid"] and dashboard["title"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    assert all(p.get("title") and p.get("targets") for p in panels)
    assert all(t["datasource"]["type"] == "prometheus" for p in panels for t in p["targets"])


# --- metric names everywhere ------------------------------------------------------------------------------------------


def alert_rules() -> list[dict]:
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def dashboard_queries() -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target and templating query of the dashboard."""
    dashboard = json.loads(DASHBOARD.read_text())
    found = []
    for panel in dashboard["panels"]:
        found += [(f"panel {panel['title']!r}", t["expr"]) for t in panel.get("targets", [])]
    for var in dashboard["templating"]["list"]:
        query = var.get("query")
        if isinstance(query, dict):
            query = query.get("query")
        if var["type"] == "query":
            found.append((f"variable {var['name']!r}", query))
    return found


def test_alert_rules_name_only_exported_metrics():
    problems = []
    for rule in alert_rules():
        problems += check_promql(rule["expr"], f"alert {rule['alert']}")
        for text in rule.get("annotations", {}).values():  # prose may name a family (a histogram) too
            problems += [f"alert {rule['alert']} annotation: unknown metric {n}"
                         for n in METRIC_NAME.findall(text) if n not in EXPORTED and n not in FAMILIES]
    assert problems == []


def test_dashboard_names_only_exported_metrics():
    queries = dashboard_queries()
    problems = [p for where, expr in queries for p in check_promql(expr, where)]
    assert problems == []
    used = {n for _, expr in queries for n in METRIC_NAME.findall(expr)}
    # the panels the dashboard is for
    assert {"inspector_frames_total", "inspector_defects_total", "inspector_stage_seconds_bucket",
            "inspector_request_seconds_bucket", "inspector_batch_size_frames_bucket", "inspector_stage_frames",
            "inspector_open_streams", "inspector_capacity_used_ratio", "inspector_in_flight_frames",
            "inspector_drift_psi", "inspector_model_info"} <= used
    text = DASHBOARD.read_text()
    assert [n for n in METRIC_NAME.findall(text) if n not in EXPORTED and n not in FAMILIES] == []


def test_every_metric_a_deploy_file_names_is_exported():
    """Rules, panels and the HPA are checked above as queries; here every file, comments and prose included."""
    files = [p for p in DEPLOY.rglob("*") if p.is_file()] + [ROOT / "Dockerfile"]
    named = {(str(p.relative_to(ROOT)), n) for p in files for n in METRIC_NAME.findall(p.read_text())}
    assert {f for f, _ in named} >= {"deploy/prometheus/alerts.yml", "deploy/grafana/dashboards/inspector.json",
                                     "deploy/k8s/hpa.yaml"}
    assert sorted((f, n) for f, n in named if n not in EXPORTED and n not in FAMILIES) == []


def test_hpa_names_only_exported_metrics():
    text = (K8S / "hpa.yaml").read_text()
    assert [n for n in METRIC_NAME.findall(text) if n not in EXPORTED] == []
    hpa = yaml.safe_load(text)
    assert hpa["apiVersion"] == "autoscaling/v2" and hpa["kind"] == "HorizontalPodAutoscaler"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "inspector"}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 8)
    [metric] = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods"
    assert metric["pods"]["metric"]["name"] == "inspector_capacity_used_ratio"  # readiness' signal too
    assert metric["pods"]["target"]["type"] == "AverageValue"


def test_every_alert_has_for_severity_and_summary():
    rules = alert_rules()
    assert {"InspectorRejectRateSpike", "InspectorLatencySLOBurnFast", "InspectorInputDrift",
            "InspectorCameraNoFrames", "InspectorModelSwapFailed", "InspectorSaturated"} <= {r["alert"] for r in rules}
    for rule in rules:
        assert rule.get("for"), rule["alert"]
        assert rule.get("labels", {}).get("severity") in ("info", "warning", "critical"), rule["alert"]
        assert rule.get("annotations", {}).get("summary"), rule["alert"]


# --- promtool ---------------------------------------------------------------------------------------------------------


def run_promtool(promtool, *args, cwd=PROMETHEUS):
    done = subprocess.run([promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"promtool {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_promtool_check_config(promtool):
    out = run_promtool(promtool, "check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert "SUCCESS" in out
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    assert config["rule_files"] == ["alerts.yml"]
    [job] = [j for j in config["scrape_configs"] if j["job_name"] == "inspector"]
    assert job["scrape_interval"] == "5s"
    assert job["static_configs"][0]["targets"] == ["inspector:9400"]


def test_promtool_check_rules(promtool):
    out = run_promtool(promtool, "check", "rules", str(PROMETHEUS / "alerts.yml"))
    assert f"SUCCESS: {len(alert_rules())} rules found" in out


TARGET = {"job": "inspector", "instance": "inspector:9400"}


def series(name: str, values: str, **labels) -> dict:
    body = ",".join(f'{k}="{v}"' for k, v in {**labels, **TARGET}.items())
    return {"series": f"{name}{{{body}}}", "values": values}


def firing(alertname: str, at: str, *alerts: dict) -> dict:
    return {"eval_time": at, "alertname": alertname, "exp_alerts": [{"exp_labels": labels} for labels in alerts]}


# promtool unit tests of the alert expressions (1-minute samples; "0+100x480" is 0, 100, ... for 8 hours).
RULE_TESTS = [
    {  # reject spike: cam-1 jumps from 1 % to 17 % at 400m; cam-2 steady 3 %; other steady 10 % (high, not a spike);
       # cam-4 jumps to 25 % on only 4 frames a minute (under 50 frames in 10m)
        "input_series": [
            series("inspector_frames_total", "0+100x480", verdict="ACCEPT", camera="cam-1"),
            series("inspector_frames_total", "0+1x400 420+20x79", verdict="REJECT", camera="cam-1"),
            series("inspector_frames_total", "0+100x480", verdict="ACCEPT", camera="cam-2"),
            series("inspector_frames_total", "0+3x480", verdict="REJECT", camera="cam-2"),
            series("inspector_frames_total", "0+90x480", verdict="ACCEPT", camera="other"),
            series("inspector_frames_total", "0+10x480", verdict="REJECT", camera="other"),
            series("inspector_frames_total", "0+3x480", verdict="ACCEPT", camera="cam-4"),
            series("inspector_frames_total", "0x400 1+1x79", verdict="REJECT", camera="cam-4"),
        ],
        "alert_rule_test": [
            firing("InspectorRejectRateSpike", "400m"),
            firing("InspectorRejectRateSpike", "420m", {"severity": "warning", "camera": "cam-1"}),
        ],
    },
    {  # no frames: cam-3 stops at 100m; cam-5 never sent any; cam-6 keeps sending
        "input_series": [
            series("inspector_frames_total", "0+10x100 1000+0x200", verdict="ACCEPT", camera="cam-3"),
            series("inspector_frames_total", "0x300", verdict="ACCEPT", camera="cam-5"),
            series("inspector_frames_total", "0+10x300", verdict="ACCEPT", camera="cam-6"),
        ],
        "alert_rule_test": [
            firing("InspectorCameraNoFrames", "105m"),
            firing("InspectorCameraNoFrames", "115m", {"severity": "warning", "camera": "cam-3"}),
            firing("InspectorCameraNoFrames", "200m"),  # silent for over an hour: resolved
        ],
    },
    {  # a failed swap at 30m; successful ones do not alert
        "input_series": [
            series("inspector_model_swaps_total", "0x30 1x30", result="failure"),
            series("inspector_model_swaps_total", "0x10 1x50", result="success"),
        ],
        "alert_rule_test": [
            firing("InspectorModelSwapFailed", "20m"),
            firing("InspectorModelSwapFailed", "33m", {"severity": "warning", "result": "failure", **TARGET}),
            firing("InspectorModelSwapFailed", "45m"),
        ],
    },
    {  # saturated from 10m to 40m (a dip to 0.9 at 25m is still saturated); at 0.9 from 50m: busy, not saturated
        "input_series": [series("inspector_capacity_used_ratio", "0.5x10 1x14 0.9 1x14 0.5x10 0.9x30")],
        "alert_rule_test": [
            firing("InspectorSaturated", "12m"),
            firing("InspectorSaturated", "30m", {"severity": "warning", **TARGET}),
            firing("InspectorSaturated", "75m"),
        ],
    },
    {  # brightness drifts from 10m on; contrast does not
        "input_series": [
            series("inspector_drift_psi", "0.1x10 0.3x30", statistic="brightness"),
            series("inspector_drift_psi", "0.1x40", statistic="contrast"),
        ],
        "alert_rule_test": [
            firing("InspectorInputDrift", "20m"),
            firing("InspectorInputDrift", "30m", {"severity": "warning", "statistic": "brightness", **TARGET}),
        ],
    },
    {  # 20 % of Inspect calls over 50 ms burns both budgets; slow admin calls do not count
        "input_series": [
            series("inspector_request_seconds_count", "0+100x120", method="Inspect"),
            series("inspector_request_seconds_bucket", "0+80x120", method="Inspect", le="0.05"),
            series("inspector_request_seconds_count", "0+10x120", method="ActivateVersion"),
            series("inspector_request_seconds_bucket", "0x120", method="ActivateVersion", le="0.05"),
        ],
        "alert_rule_test": [
            firing("InspectorLatencySLOBurnFast", "100m", {"severity": "critical"}),
            firing("InspectorLatencySLOBurnSlow", "100m", {"severity": "warning"}),
        ],
    },
    {  # 0.5 % over 50 ms is within the SLO; a scrape target down for 3 minutes
        "input_series": [
            series("inspector_request_seconds_count", "0+100x120", method="Inspect"),
            series("inspector_request_seconds_bucket", "0+99.5x120", method="Inspect", le="0.05"),
            series("up", "0x3 1x20"),
        ],
        "alert_rule_test": [
            firing("InspectorLatencySLOBurnFast", "100m"),
            firing("InspectorLatencySLOBurnSlow", "100m"),
            firing("InspectorDown", "2m", {"severity": "critical", **TARGET}),
            firing("InspectorDown", "10m"),
        ],
    },
]


def test_alert_rules_fire_when_they_should(promtool, tmp_path):
    """promtool test rules on the real expressions, ``for`` and labels (annotations, checked above, left out)."""
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules, sort_keys=False))
    tests = {"rule_files": ["rules.yml"], "evaluation_interval": "1m",
             "tests": [{"interval": "1m", **t} for t in RULE_TESTS]}
    (tmp_path / "tests.yml").write_text(yaml.safe_dump(tests, sort_keys=False))
    assert "SUCCESS" in run_promtool(promtool, "test", "rules", "tests.yml", cwd=tmp_path)
    tested = {t["alertname"] for group in RULE_TESTS for t in group["alert_rule_test"]}
    assert tested == {r["alert"] for r in alert_rules()}


# --- compose and Grafana ----------------------------------------------------------------------------------------------


def compose_path(source: str) -> Path:
    return (DEPLOY / source).resolve()


def test_compose_has_the_three_services():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"inspector", "prometheus", "grafana"} <= set(services)

    inspector = services["inspector"]
    build = inspector["build"]
    context = compose_path(build if isinstance(build, str) else build["context"])
    assert context == ROOT and (context / (build.get("dockerfile", "Dockerfile"))).is_file()
    assert any(str(v).endswith(":/models") for v in inspector["volumes"])
    ports = {str(p).rsplit(":", 1)[-1] for p in inspector["ports"]}
    assert {"50051", "9400"} <= ports
    assert "inspector.healthcheck" in inspector["healthcheck"]["test"]

    assert services["prometheus"]["image"].startswith("prom/prometheus")
    mounts = {v.split(":")[1]: compose_path(v.split(":")[0]) for v in services["prometheus"]["volumes"]
              if v.startswith(".")}
    assert mounts["/etc/prometheus"] == PROMETHEUS
    assert "--config.file=/etc/prometheus/prometheus.yml" in services["prometheus"]["command"]

    grafana = services["grafana"]
    assert grafana["image"].startswith("grafana/grafana")
    mounts = {v.split(":")[1]: compose_path(v.split(":")[0]) for v in grafana["volumes"] if v.startswith(".")}
    assert mounts["/etc/grafana/provisioning"] == DEPLOY / "grafana" / "provisioning"
    provider = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/inspector.yaml").read_text())["providers"][0]
    assert mounts[provider["options"]["path"]] == DASHBOARD.parent  # the provider reads where the dashboards are
    datasource = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yaml").read_text())
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
    assert datasource["datasources"][0]["type"] == "prometheus"


# --- Dockerfile -------------------------------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", "\n".join(line for line in (ROOT / "Dockerfile").read_text().splitlines()
                                          if not line.lstrip().startswith("#")))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip() if " " in line.strip() else "")
            for line in (raw.strip() for raw in text.splitlines()) if line]


def test_dockerfile_contract():
    instructions = dockerfile_instructions()
    args = {}
    for op, rest in instructions:
        args.setdefault(op, []).append(rest)
    [base] = args["FROM"]
    assert re.fullmatch(r"nvidia/cuda:[0-9.]+-(cudnn[0-9]*-)?runtime-ubuntu[0-9.]+", base), base

    user = args["USER"][-1].split(":")[0]
    assert user not in ("root", "0")
    uid = user if user.isdigit() else r"\d+"
    assert any(re.search(rf"\buseradd\b.*--uid\s+{uid}\b", r) for r in args["RUN"]), "USER must be created"

    assert any("/models" in v for v in args["VOLUME"])
    exposed = {p for v in args["EXPOSE"] for p in v.split()}
    assert {"50051", "50052", "9400"} <= exposed

    [healthcheck] = args["HEALTHCHECK"]
    assert "inspector.healthcheck" in healthcheck and "127.0.0.1:50052" in healthcheck

    [entrypoint] = args["ENTRYPOINT"]
    assert json.loads(entrypoint) == ["inspector", "serve", "--store", "/models", "--host", "0.0.0.0",
                                      "--health-port", "50052"]
    run = " ".join(args["RUN"])
    assert "torch==2.14.1" in run and "torchvision==0.29.1" in run and "pip install ." in run
    ops = [op for op, _ in instructions]
    assert ops.index("USER") > max(i for i, op in enumerate(ops) if op == "RUN")  # nothing runs as root after USER

    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".git", "build"} <= set(ignored) and any(p.startswith("models/") for p in ignored)


# --- Kubernetes -------------------------------------------------------------------------------------------------------


def test_k8s_deployment_gpu_and_grpc_probes():
    deployment = yaml.safe_load((K8S / "deployment.yaml").read_text())
    assert deployment["kind"] == "Deployment"
    pod = deployment["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 30
    [container] = pod["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc": 50051, "health": 50052, "metrics": 9400}
    argv = container.get("command", []) + container.get("args", [])
    assert argv[:2] == ["inspector", "serve"] and "--store" in argv and argv[argv.index("--store") + 1] == "/models"
    assert argv[argv.index("--host") + 1] == "0.0.0.0"
    assert argv[argv.index("--health-port") + 1] == str(ports["health"])
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["grpc"]["port"] == ports["health"], probe
    # readiness follows saturation (the Inspector service's status); liveness and startup the overall status only
    assert container["readinessProbe"]["grpc"]["service"] == "inspector.v1.Inspector"
    assert "service" not in container["livenessProbe"]["grpc"] and "service" not in container["startupProbe"]["grpc"]

    [mount] = [m for m in container["volumeMounts"] if m["mountPath"] == "/models"]
    [volume] = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    pvc = yaml.safe_load((K8S / "pvc.yaml").read_text())
    assert volume["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert pvc["spec"]["resources"]["requests"]["storage"] == "5Gi"
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_k8s_service_and_servicemonitor_select_the_pods():
    deployment = yaml.safe_load((K8S / "deployment.yaml").read_text())
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    service = yaml.safe_load((K8S / "service.yaml").read_text())
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["selector"].items() <= pod_labels.items()
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert ports["grpc"]["port"] == 50051 and ports["metrics"]["port"] == 9400

    monitor = yaml.safe_load((K8S / "servicemonitor.yaml").read_text())
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1" and monitor["kind"] == "ServiceMonitor"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]
