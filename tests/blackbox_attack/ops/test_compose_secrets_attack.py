"""Attack on compose.yaml's secrets (docs/OPERATIONS.md: "Each container keeps only its own
password: compose blanks the other passwords that `.env` hands to every service")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
PASSWORDS = {
    "POSTGRES_PASSWORD",
    "CLAIRE_APP_PASSWORD",
    "CLAIRE_PROJECTOR_PASSWORD",
    "GRAFANA_ADMIN_PASSWORD",
}
# What each container needs, from docs/OPERATIONS.md's table: the services their own login's
# password (inside DATABASE_URL), migrate the owner's and the two logins' it creates.
NEEDS = {
    "migrate": {"POSTGRES_PASSWORD", "CLAIRE_APP_PASSWORD", "CLAIRE_PROJECTOR_PASSWORD"},
}


def services() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]


def reachable_passwords(service: dict[str, Any]) -> set[str]:
    """The .env passwords a container ends up holding (env_file hands it all of .env)."""
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    held = set()
    for name in PASSWORDS:
        if name in environment:
            if environment[name] not in ("", None):
                held.add(name)
        elif service.get("env_file"):
            held.add(name)
    for value in environment.values():
        for name in PASSWORDS:
            if value and "${" + name in str(value):
                held.add(name)
    return held


CLAIRE_CONTAINERS = ["feed", "signal", "risk", "execution", "projector", "alerts", "relay"]


@pytest.mark.parametrize(
    "name",
    [
        *CLAIRE_CONTAINERS,
        "migrate",
    ],
)
def test_compose_when_a_container_starts_then_it_holds_only_the_passwords_it_needs(
    name: str,
) -> None:
    service = services()[name]
    needs = NEEDS.get(name)
    if needs is None:
        # A Claire service: its own password only inside its DATABASE_URL, no bare password.
        environment = service["environment"]
        needs = {n for n in PASSWORDS if "${" + n in str(environment.get("DATABASE_URL", ""))}
        bare = {n for n in PASSWORDS if environment.get(n) not in ("", None)}
        assert bare == set(), f"{name} keeps {bare}"
        assert len(needs) == 1, f"{name} DATABASE_URL holds {needs}"
        return
    assert reachable_passwords(service) <= needs, reachable_passwords(service) - needs


def test_compose_when_interpolated_then_no_service_connects_as_the_owner() -> None:
    for name in CLAIRE_CONTAINERS:
        url = str(services()[name]["environment"]["DATABASE_URL"])
        assert not url.startswith("postgresql://claire:"), name
        assert "POSTGRES_PASSWORD" not in url, name
    projector = str(services()["projector"]["environment"]["DATABASE_URL"])
    assert "CLAIRE_PROJECTOR_LOGIN" in projector and "CLAIRE_PROJECTOR_PASSWORD" in projector
