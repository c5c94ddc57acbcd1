"""Structural checks of the deployment files, which nothing else reads before production does.

Docker cannot run in CI, so compose.yaml is checked as data: health checks, start order,
commands, volumes, variables. Prometheus rules and the Grafana dashboard must only name metrics
that exist (docs/ARCHITECTURE.md's table and the live registry of adapters/metrics.py) with
labels they carry. promtool's own checks run in .ci/check-deploy, and here too when it is
installed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from adapters.metrics import DEPENDENCIES, SPECS, TRADING_STATES

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
PIPELINE_SERVICES = ("feed", "signal", "risk", "execution", "projector", "alerts", "relay")
METRICS_PORT = "9108"
#: Labels Prometheus adds to every scraped series (`service` by our scrape config), and `le`.
TARGET_LABELS = frozenset({"job", "instance", "service", "le"})
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
PROMQL_WORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}
)


# --------------------------------------------------------------------------- loading


@cache
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


@cache
def prometheus_config() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())


@cache
def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


@cache
def rule_tests() -> list[dict[str, Any]]:
    return yaml.safe_load((DEPLOY / "prometheus" / "tests.yml").read_text())["tests"]


@cache
def dashboard() -> dict[str, Any]:
    return json.loads((DEPLOY / "grafana" / "dashboards" / "claire.json").read_text())


@cache
def datasource() -> dict[str, Any]:
    path = DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
    (only,) = yaml.safe_load(path.read_text())["datasources"]
    return only


def dashboard_panels() -> list[dict[str, Any]]:
    return [panel for panel in dashboard()["panels"] if panel["type"] != "row"]


def dashboard_exprs() -> list[str]:
    return [target["expr"] for panel in dashboard_panels() for target in panel["targets"]]


@cache
def catalogue() -> dict[str, frozenset[str]]:
    """Metrics both documented and registered (with the labels both agree on)."""
    documented = documented_metrics()
    registered = {spec.name: frozenset(spec.labels) for spec in SPECS}
    return {
        name: documented[name] & registered[name] for name in documented.keys() & registered.keys()
    }


@cache
def documented_metrics() -> dict[str, frozenset[str]]:
    """The metrics table of docs/ARCHITECTURE.md: name -> label names."""
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    section = text.split("## Metrics", 1)[1].split("\n## ", 1)[0]
    metrics: dict[str, frozenset[str]] = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`claire_"):
            continue
        names = re.findall(r"`(claire_[a-z0-9_]+)`", cells[0])
        # Label names are the backticked words outside parentheses (those list values).
        labels = frozenset(re.findall(r"`([a-z_]+)`", re.sub(r"\([^)]*\)", "", cells[2])))
        for name in names:
            metrics[name] = labels
    return metrics


def metric_names(expr: str) -> set[str]:
    """The catalogue names an expression uses: histogram series map to their histogram."""
    found = set()
    for name in re.findall(r"\b(claire_[a-z0-9_]+)\b", expr):
        for suffix in HISTOGRAM_SUFFIXES:
            if name.endswith(suffix) and name.removesuffix(suffix) in catalogue():
                name = name.removesuffix(suffix)
        found.add(name)
    return found


def label_names(expr: str) -> set[str]:
    """Label names in selectors (`{a="x"}`) and in `by (...)`/`without (...)` clauses."""
    labels: set[str] = set()
    for selector in re.findall(r"\{([^}]*)\}", expr):
        labels.update(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", selector))
    for clause in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr):
        labels.update(word.strip() for word in clause.split(",") if word.strip())
    return labels - PROMQL_WORDS


def env_example_variables() -> set[str]:
    text = (ROOT / ".env.example").read_text()
    return set(re.findall(r"^\s*#?\s*([A-Z][A-Z0-9_]*)=", text, flags=re.MULTILINE))


# --------------------------------------------------------------------------- compose


def test_load_compose_when_parsed_then_every_pipeline_service_has_its_own_container() -> None:
    for name in PIPELINE_SERVICES:
        assert services()[name]["command"] == ["claire", "run", "--service", name]
    assert {"postgres", "redis", "migrate", "prometheus", "grafana"} <= services().keys()
    assert services()["postgres"]["image"] == "postgres:15"
    assert services()["redis"]["image"] == "redis:7"


@pytest.mark.parametrize(
    "name", sorted(yaml.safe_load((ROOT / "compose.yaml").read_text())["services"])
)
def test_compose_service_when_long_running_then_it_has_a_healthcheck_and_restarts(
    name: str,
) -> None:
    service = services()[name]
    if service.get("restart") == "no":  # a one-shot job: it is waited for by its exit code
        return
    assert service.get("restart") in ("unless-stopped", "always", "on-failure")
    check = service.get("healthcheck")
    assert check, f"{name} has no healthcheck"
    assert not check.get("disable"), f"{name} disables its healthcheck"
    assert check["test"][0] in ("CMD", "CMD-SHELL")
    for key in ("interval", "timeout", "retries"):
        assert key in check, f"{name}: healthcheck without {key}"


@pytest.mark.parametrize(
    "name", sorted(yaml.safe_load((ROOT / "compose.yaml").read_text())["services"])
)
def test_compose_dependency_when_declared_then_it_waits_for_health_or_successful_exit(
    name: str,
) -> None:
    depends_on = services()[name].get("depends_on", {})
    assert isinstance(depends_on, dict), f"{name}: depends_on must use the long form"
    for dependency, spec in depends_on.items():
        assert dependency in services(), f"{name} depends on unknown {dependency}"
        target = services()[dependency]
        if target.get("restart") == "no":
            expected = "service_completed_successfully"
        else:
            assert target.get("healthcheck") and not target["healthcheck"].get("disable")
            expected = "service_healthy"
        assert spec == {"condition": expected}, f"{name} -> {dependency}: {spec}"


def test_compose_pipeline_service_when_started_then_it_waits_for_migration_and_stores() -> None:
    for name in PIPELINE_SERVICES:
        service = services()[name]
        assert set(service["depends_on"]) == {"postgres", "redis", "migrate"}
        assert ".env" in service["env_file"]
        environment = service["environment"]
        assert environment["METRICS_PORT"] == METRICS_PORT
        assert "@postgres:5432/" in environment["DATABASE_URL"]
        assert environment["REDIS_URL"].startswith("redis://redis:6379/")
        # The health check asks the port the service listens on.
        assert f"127.0.0.1:{METRICS_PORT}/health" in " ".join(service["healthcheck"]["test"])


def test_compose_migrate_when_run_then_it_upgrades_once_and_exits() -> None:
    migrate = services()["migrate"]
    assert migrate["command"] == ["claire", "db", "upgrade", "--create-logins"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    # The job alone logs in as the owner the image creates; the services as their own logins.
    owner = services()["postgres"]["environment"]["POSTGRES_USER"]
    assert migrate["environment"]["DATABASE_URL"].startswith(f"postgresql://{owner}:")
    for name in PIPELINE_SERVICES:
        assert not services()[name]["environment"]["DATABASE_URL"].startswith(
            f"postgresql://{owner}:"
        )


def test_compose_image_when_shared_then_built_once_and_never_pulled() -> None:
    built = [name for name, service in services().items() if "build" in service]
    assert built == ["migrate"]
    image = services()["migrate"]["image"]
    for name in PIPELINE_SERVICES:
        assert services()[name]["image"] == image
        assert services()[name]["pull_policy"] == "never"
    assert (ROOT / services()["migrate"]["build"]["dockerfile"]).is_file()


def test_compose_volume_when_named_then_declared_and_when_bound_then_present_in_repo() -> None:
    declared = set(compose()["volumes"])
    used = set()
    for name, service in services().items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in declared, f"{name} uses undeclared volume {source}"
                used.add(source)
    assert used == declared
    assert "postgres-data:/var/lib/postgresql/data" in services()["postgres"]["volumes"]


def test_compose_variables_when_interpolated_then_documented_in_env_example() -> None:
    text = (ROOT / "compose.yaml").read_text()
    interpolated = set(re.findall(r"(?<!\$)\$\{([A-Z_][A-Z0-9_]*)", text))
    environment = {key for name in PIPELINE_SERVICES for key in services()[name]["environment"]}
    missing = (interpolated | environment) - env_example_variables()
    assert not missing, f"not documented in .env.example: {sorted(missing)}"


def test_compose_monitoring_when_mounted_then_paths_match_the_provisioning() -> None:
    prometheus_mounts = services()["prometheus"]["volumes"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in prometheus_mounts
    assert "--config.file=/etc/prometheus/prometheus.yml" in services()["prometheus"]["command"]
    grafana_mounts = {v.split(":")[1]: v.split(":")[0] for v in services()["grafana"]["volumes"]}
    assert grafana_mounts["/etc/grafana/provisioning"] == "./deploy/grafana/provisioning"
    providers = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "dashboards" / "claire.yml").read_text()
    )["providers"]
    for provider in providers:
        source = grafana_mounts[provider["options"]["path"]]
        assert list((ROOT / source).glob("*.json")), f"no dashboards in {source}"
    assert datasource()["url"] == "http://prometheus:9090"


# --------------------------------------------------------------------------- Prometheus


def test_scrape_config_when_loaded_then_every_pipeline_service_is_scraped_by_name() -> None:
    (job,) = [job for job in prometheus_config()["scrape_configs"] if job["job_name"] == "claire"]
    scraped = {}
    for static in job["static_configs"]:
        (target,) = static["targets"]
        scraped[static["labels"]["service"]] = target
    assert scraped == {name: f"{name}:{METRICS_PORT}" for name in PIPELINE_SERVICES}
    for rule_file in prometheus_config()["rule_files"]:
        assert (DEPLOY / "prometheus" / rule_file).is_file()


def test_alert_rules_when_loaded_then_they_name_only_catalogued_metrics_and_labels() -> None:
    known = catalogue()
    for rule in alert_rules():
        names = metric_names(rule["expr"])
        assert names <= known.keys(), f"{rule['alert']}: unknown {names - known.keys()}"
        allowed = TARGET_LABELS.union(*(known[name] for name in names))
        assert label_names(rule["expr"]) <= allowed, f"{rule['alert']}: {rule['expr']}"


def test_alert_rules_when_matching_label_values_then_they_are_values_the_services_set() -> None:
    exprs = " ".join(rule["expr"] for rule in alert_rules())
    states = set(re.findall(r'claire_trading_state\{state="([^"]+)"\}', exprs))
    dependencies = set(re.findall(r'claire_dependency_up\{dependency="([^"]+)"\}', exprs))
    assert states == {"HALTED", "REDUCING"} <= set(TRADING_STATES)
    assert dependencies == set(DEPENDENCIES)


def test_alert_rules_when_loaded_then_every_required_condition_is_covered() -> None:
    exprs = " ".join(rule["expr"] for rule in alert_rules())
    for needle in (
        'claire_trading_state{state="HALTED"}',  # drawdown halt
        "claire_market_data_age_seconds",  # data silence
        "claire_projection_lag_events",  # projection lag
        'claire_dependency_up{dependency="postgres"}',
        'claire_dependency_up{dependency="redis"}',
        "rate(claire_malformed_messages_total",
        'up{job="claire"} == 0',  # a service down
    ):
        assert needle in exprs


def test_alert_rule_when_defined_then_it_has_severity_summary_and_description() -> None:
    names = [rule["alert"] for rule in alert_rules()]
    assert len(names) == len(set(names))
    for rule in alert_rules():
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_alert_rule_when_defined_then_promtool_tests_show_it_both_firing_and_silent() -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    for case in rule_tests():
        for check in case["alert_rule_test"]:
            (firing if check["exp_alerts"] else silent).add(check["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert names == firing, f"never shown firing: {names - firing}"
    assert names == silent, f"never shown silent: {names - silent}"


def test_rule_tests_when_feeding_series_then_they_use_catalogued_metrics() -> None:
    known = catalogue()
    for case in rule_tests():
        for series in case["input_series"]:
            name = series["series"].split("{", 1)[0]
            assert name == "up" or name in known, name


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promtool_when_checking_deploy_files_then_config_rules_and_rule_tests_pass() -> None:
    prometheus = DEPLOY / "prometheus"
    for args in (
        ["check", "config", str(prometheus / "prometheus.yml")],
        ["test", "rules", str(prometheus / "tests.yml")],
    ):
        result = subprocess.run(["promtool", *args], capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout + result.stderr


# --------------------------------------------------------------------------- Grafana


def test_dashboard_when_loaded_then_panel_ids_are_unique_and_panels_do_not_overlap() -> None:
    ids = [panel["id"] for panel in dashboard()["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in dashboard()["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        area = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not area & cells, f"{panel['title']} overlaps another panel"
        cells |= area


def test_dashboard_when_loaded_then_every_query_uses_the_provisioned_datasource() -> None:
    uid = datasource()["uid"]
    assert dashboard()["uid"]
    for panel in dashboard_panels():
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] == uid
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == uid
            assert target["expr"].strip()


def test_dashboard_when_loaded_then_it_names_only_catalogued_metrics_and_labels() -> None:
    known = catalogue()
    for expr in dashboard_exprs():
        names = metric_names(expr)
        assert names <= known.keys(), f"unknown {names - known.keys()} in {expr}"
        allowed = TARGET_LABELS.union(*(known[name] for name in names))
        assert label_names(expr) <= allowed, expr


def test_dashboard_when_loaded_then_it_shows_every_required_measure() -> None:
    used = set().union(*(metric_names(expr) for expr in dashboard_exprs()))
    required = {
        "claire_equity_usdt",
        "claire_drawdown_ratio",
        "claire_exposure_ratio",
        "claire_verdicts_total",
        "claire_tick_to_verdict_seconds",
        "claire_verdict_to_fill_seconds",
        "claire_projection_lag_events",
        "claire_trading_state",
        "claire_malformed_messages_total",
    }
    assert required <= used, f"missing: {required - used}"
    assert any(
        "sum by (layer)" in expr and "claire_verdicts_total" in expr for expr in dashboard_exprs()
    )


def test_metric_catalogue_when_parsed_then_table_and_registry_agree() -> None:
    """Guards what the checks above rely on: an empty or partial catalogue would pass anything."""
    documented = documented_metrics()
    assert len(documented) == 16
    assert documented["claire_verdicts_total"] == {"layer", "decision"}
    assert documented["claire_dependency_up"] == {"dependency"}
    assert documented["claire_equity_usdt"] == frozenset()
    assert catalogue() == documented  # adapters/metrics.py registers exactly the table
    assert metric_names("rate(claire_append_seconds_bucket[1m])") == {"claire_append_seconds"}
    assert label_names('sum by (a, b) (x{c="1", d=~"2"})') == {"a", "b", "c", "d"}
