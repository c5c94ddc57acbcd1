"""The service logins' settings: every problem named at once, no password ever echoed."""

from __future__ import annotations

import pytest

from cli.main import main
from eventstore.logins import LoginSettingsError, logins_from, owner_of


def test_logins_when_passwords_missing_then_each_is_named() -> None:
    with pytest.raises(LoginSettingsError) as caught:
        logins_from({})
    assert any("CLAIRE_APP_PASSWORD" in p for p in caught.value.problems)
    assert any("CLAIRE_PROJECTOR_PASSWORD" in p for p in caught.value.problems)


def test_logins_when_a_name_is_a_privilege_role_then_refused() -> None:
    values = {
        "CLAIRE_APP_LOGIN": "claire_app",
        "CLAIRE_APP_PASSWORD": "a-long-password-1",
        "CLAIRE_PROJECTOR_PASSWORD": "a-long-password-2",
    }
    with pytest.raises(LoginSettingsError, match="CLAIRE_APP_LOGIN"):
        logins_from(values)


@pytest.mark.parametrize("name", ["pg_monitor", "pg_write_all_data", "pg_anything"])
def test_logins_when_a_name_is_reserved_by_postgresql_then_refused_naming_the_variable(
    name: str,
) -> None:
    values = {
        "CLAIRE_PROJECTOR_LOGIN": name,
        "CLAIRE_APP_PASSWORD": "a-long-password-1",
        "CLAIRE_PROJECTOR_PASSWORD": "a-long-password-2",
    }
    with pytest.raises(LoginSettingsError, match="CLAIRE_PROJECTOR_LOGIN"):
        logins_from(values)


def test_logins_when_a_name_is_the_owner_the_job_connects_as_then_refused() -> None:
    values = {
        "CLAIRE_APP_LOGIN": "claire",
        "CLAIRE_APP_PASSWORD": "a-long-password-1",
        "CLAIRE_PROJECTOR_PASSWORD": "a-long-password-2",
    }
    owner = owner_of("postgresql://claire:secret@postgres:5432/claire")
    with pytest.raises(LoginSettingsError, match=r"CLAIRE_APP_LOGIN.*owner"):
        logins_from(values, owner=owner)
    assert [login.name for login in logins_from(values, owner="postgres")] == [
        "claire",
        "claire_projection",
    ]


def test_logins_when_password_unusable_then_refused_without_showing_it() -> None:
    values = {"CLAIRE_APP_PASSWORD": "short'; --", "CLAIRE_PROJECTOR_PASSWORD": "b" * 20}
    with pytest.raises(LoginSettingsError) as caught:
        logins_from(values)
    assert "short'; --" not in str(caught.value)


def test_logins_when_valid_then_defaults_and_groups_and_repr_hides_password() -> None:
    app, projector = logins_from(
        {"CLAIRE_APP_PASSWORD": "a" * 16, "CLAIRE_PROJECTOR_PASSWORD": "b" * 16}
    )
    assert (app.name, app.group) == ("claire_service", "claire_app")
    assert (projector.name, projector.group) == ("claire_projection", "claire_projector")
    assert "a" * 16 not in repr(app)


def test_db_upgrade_create_logins_when_unconfigured_then_exit_2_and_nothing_done(
    monkeypatch: pytest.MonkeyPatch, tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CLAIRE_APP_PASSWORD", raising=False)
    monkeypatch.delenv("CLAIRE_PROJECTOR_PASSWORD", raising=False)
    code = main(
        [
            "--database-url",
            "postgresql://nobody@127.0.0.1:9/none",
            "db",
            "upgrade",
            "--create-logins",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "CLAIRE_APP_PASSWORD is not set" in err and "Traceback" not in err
