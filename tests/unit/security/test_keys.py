"""API keys (minted once, stored hashed, scoped, expiring, rotatable), rate limits, access rules."""

from __future__ import annotations

import stat
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

from nstarx_jupyter.errors import (
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
    RateLimitedError,
    UnauthenticatedError,
)
from nstarx_jupyter.security import AccessRules, Guard, KeyStore, admin_token
from nstarx_jupyter.security.keys import RELOAD_S


def test_a_key_is_shown_once_and_stored_only_as_a_digest(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    store = KeyStore(path)
    record, key = store.create("notebook", ["iris"])
    assert key.startswith(f"{record.prefix}_")
    assert len(key) > 40
    text = path.read_text()
    assert key not in text
    assert key.split("_", 2)[2] not in text  # not even the secret part (which may hold "_")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert store.verify(key) == record
    assert "digest" not in record.public().model_dump()


def test_keys_persist_and_a_revoked_key_stays_revoked(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    store = KeyStore(path)
    kept, kept_key = store.create("a")
    gone, gone_key = store.create("b", ["iris"])
    store.revoke(gone.prefix)  # by prefix, as listings show it
    again = KeyStore(path)
    assert again.verify(kept_key).id == kept.id
    with pytest.raises(UnauthenticatedError, match="revoked"):
        again.verify(gone_key)
    assert [k.id for k in again.records()] == [kept.id, gone.id]
    assert again.records()[1].revoked is not None


def test_deleting_a_deployment_revokes_the_keys_its_deploy_minted(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    store = KeyStore(path)
    minted, minted_key = store.create("notebook deploy of iris", ["iris"], deployment="iris")
    chosen, chosen_key = store.create("app", ["iris"])  # made on purpose: it stays
    other, _ = store.create("notebook deploy of wine", ["wine"], deployment="wine")
    assert minted.public().deployment == "iris"
    assert "deployment" not in chosen.public().model_dump()
    rotated, rotated_key = store.rotate(minted.id)
    assert rotated.deployment == "iris"
    revoked = store.revoke_minted_for("iris")
    assert [key.id for key in revoked] == [rotated.id]  # the rotated one had stopped already
    again = KeyStore(path)  # as another process reads the file
    with pytest.raises(UnauthenticatedError, match="revoked"):
        again.verify(rotated_key)
    with pytest.raises(UnauthenticatedError, match="revoked"):
        again.verify(minted_key)
    assert again.verify(chosen_key).id == chosen.id
    assert again.get(other.id).state() == "active"
    assert again.revoke_minted_for("iris") == []
    with pytest.raises(InvalidInputError, match="not a deployment name"):
        store.create("x", ["iris"], deployment="*")


@pytest.mark.parametrize(
    "given", ["", "nsx_", "nsx_00000000_x", "Bearer", "x" * 200, "nsx_zzzzzzzz_" + "a" * 43]
)
def test_malformed_and_unknown_keys_are_refused(tmp_path: Path, given: str) -> None:
    store = KeyStore(tmp_path / "keys.json")
    store.create()
    with pytest.raises(UnauthenticatedError, match="not valid"):
        store.verify(given)


def test_a_tampered_key_with_a_real_id_is_refused() -> None:
    store = KeyStore()
    _, key = store.create()
    with pytest.raises(UnauthenticatedError):
        store.verify(key[:-1] + ("A" if key[-1] != "A" else "B"))


def test_mistakes_in_the_store_are_named(tmp_path: Path) -> None:
    store = KeyStore()
    with pytest.raises(NotFoundError, match="no API key 'nsx_12345678'"):
        store.revoke("12345678")
    with pytest.raises(InvalidInputError, match="scopes"):
        store.create("x", [])
    with pytest.raises(InvalidInputError, match="'delete:iris' is not"):
        store.create("x", ["delete:iris"])
    with pytest.raises(InvalidInputError, match="'Iris!' is not a deployment name"):
        store.create("x", ["predict:Iris!"])
    with pytest.raises(InvalidInputError, match="expires"):
        store.create("x", expires=time.time() - 1)
    with pytest.raises(InvalidInputError, match="rate_limit"):
        store.create("x", rate_limit=0)
    broken = tmp_path / "keys.json"
    broken.write_text("{not json")
    with pytest.raises(InvalidInputError, match="not a key file"):
        KeyStore(broken)


def test_scopes_say_what_a_key_may_do() -> None:
    store = KeyStore()
    caller, _ = store.create("app", ["iris"])  # a bare name is predict:NAME
    assert caller.scopes == ("predict:iris",)
    assert caller.allows("predict", "iris")
    assert caller.allows("read", "iris")
    assert not caller.allows("predict", "wine")
    assert not caller.allows("manage", "iris")
    assert not caller.allows("metrics")
    assert not caller.allows("admin")
    owner, _ = store.create("ops", ["manage:*", "metrics"])
    assert owner.allows("manage", "wine")
    assert owner.allows("predict", "wine")
    assert owner.allows("metrics")
    assert not owner.allows("admin")
    admin, _ = store.create("root", ["admin"])
    assert all(admin.allows(a, "x") for a in ("predict", "read", "manage", "metrics", "admin"))


def test_an_expired_key_stops_working() -> None:
    now = [time.time()]
    store = KeyStore(clock=lambda: now[0])
    record, key = store.create("temp", expires=now[0] + 60)
    assert store.verify(key) == record
    now[0] += 61
    with pytest.raises(UnauthenticatedError, match="expired"):
        store.verify(key)
    assert record.state(now[0]) == "expired"


def test_rotation_gives_a_new_key_and_retires_the_old_one_after_the_grace(tmp_path: Path) -> None:
    now = [time.time()]
    store = KeyStore(tmp_path / "keys.json", clock=lambda: now[0])
    old, old_key = store.create("app", ["predict:iris"], rate_limit=5, burst=2)
    new, new_key = store.rotate(old.prefix, grace_s=60)
    assert (new.name, new.scopes, new.rate_limit, new.burst) == ("app", old.scopes, 5, 2)
    assert store.verify(new_key) == new
    assert store.verify(old_key).rotated_to == new.id  # still valid during the grace
    now[0] += 61
    with pytest.raises(UnauthenticatedError, match="revoked"):
        store.verify(old_key)
    assert store.verify(new_key) == new
    with pytest.raises(InvalidInputError, match="revoked"):
        store.rotate(old.id)


def test_a_key_revoked_by_another_process_stops_within_a_second(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    server = KeyStore(path)
    cli = KeyStore(path)  # `nstarx keys` in a terminal: the same file
    record, key = cli.create("app")
    deadline = time.monotonic() + RELOAD_S + 0.5
    while time.monotonic() < deadline:  # a new key appears on its own too
        try:
            server.verify(key)
            break
        except UnauthenticatedError:
            time.sleep(0.05)
    assert server.verify(key) == record
    cli.revoke(record.id)
    started = time.monotonic()
    while True:
        try:
            server.verify(key)
        except UnauthenticatedError:
            break
        assert time.monotonic() - started < 1.0, "still accepted a second after revocation"
        time.sleep(0.02)
    # Both writers keep each other's changes (lock, re-read, write).
    server.create("from-server")
    assert {k.name for k in cli.records()} >= {"app", "from-server"}


def _bearer(key: str) -> str:
    return f"Bearer {key}"


class _Served:
    """A server's answers to the guard (`DeploymentFacts`): what it serves, on which models."""

    def __init__(self, names: set[str] | None, models: Mapping[str, list[str]] | None = None):
        self.names, self.models = names, models or {}

    def serves(self, name: str) -> bool:
        return self.names is None or name in self.names

    def registry_models(self, name: str) -> Iterable[str]:
        return self.models.get(name, [])


def test_the_guard_checks_every_caller() -> None:
    guard = Guard(KeyStore(), "admin-secret", facts=_Served({"iris", "wine"}))
    _, iris_key = guard.keys.create("app", ["predict:iris"])
    gone, gone_key = guard.keys.create("old", ["predict:iris"])
    guard.keys.revoke(gone.id)
    with pytest.raises(UnauthenticatedError, match="needs an API key"):
        guard.require(None, "predict", "iris")
    with pytest.raises(UnauthenticatedError, match="not valid"):
        guard.require(_bearer("nsx_bad"), "predict", "iris")
    with pytest.raises(UnauthenticatedError, match="revoked"):
        guard.require(_bearer(gone_key), "predict", "iris")
    with pytest.raises(UnauthenticatedError, match="Bearer KEY"):
        guard.require(f"Basic {iris_key}", "predict", "iris")
    assert guard.require(_bearer(iris_key), "predict", "iris").name == "app"
    with pytest.raises(ForbiddenError, match=r"key nsx_\w+ \('app'\) may not predict 'wine'"):
        guard.require(_bearer(iris_key), "predict", "wine")
    _, nameless = guard.keys.create("", ["predict:iris"])
    with pytest.raises(ForbiddenError, match=r"key nsx_\w+ may not predict 'wine'"):
        guard.require(_bearer(nameless), "predict", "wine")  # no "('')" for a nameless key
    # A name the server does not serve is a 404 for a scoped key as for any caller (README).
    with pytest.raises(NotFoundError, match="model 'nope' not found"):
        guard.require(_bearer(iris_key), "predict", "nope")
    with pytest.raises(NotFoundError, match="model 'nope' not found"):
        guard.require(_bearer(iris_key), "read", "nope")
    caller = guard.require(_bearer(iris_key), "predict", "iris")
    assert not guard.may(caller, "read", "nope")  # listings: just not shown
    with pytest.raises(ForbiddenError, match="may not predict 'wine'"):
        guard.require(_bearer(iris_key), "predict", "wine")
    with pytest.raises(ForbiddenError, match="may not manage 'nope'"):
        guard.require(_bearer(iris_key), "manage", "nope")  # a deploy may create it
    with pytest.raises(ForbiddenError, match="may not manage 'iris'"):
        guard.require(_bearer(iris_key), "manage", "iris")
    with pytest.raises(ForbiddenError, match="may not read the metrics of the server"):
        guard.require(_bearer(iris_key), "metrics")
    with pytest.raises(ForbiddenError, match="may not administer the server"):
        guard.require(_bearer(iris_key), "admin")
    assert guard.require(_bearer("admin-secret"), "admin").is_admin
    # A public deployment (auth=False) takes anonymous calls and metadata reads, nothing else.
    guard.public.add("iris")
    assert guard.require(None, "predict", "iris").key == "-"
    assert guard.require(None, "read", "iris").key == "-"
    with pytest.raises(UnauthenticatedError):
        guard.require(None, "manage", "iris")
    # --no-auth opens the data plane, never the control API.
    open_guard = Guard(KeyStore(), "admin-secret", enabled=False)
    assert open_guard.require(None, "manage", "wine").key == "-"
    with pytest.raises(UnauthenticatedError):
        open_guard.require(None, "any", control=True)


def test_the_rate_limit_is_a_token_bucket() -> None:
    clock = [1000.0]
    guard = Guard(KeyStore(), "admin-secret", clock=lambda: clock[0])
    _, key = guard.keys.create("app", rate_limit=2, burst=3)
    for _ in range(3):  # the burst
        guard.require(_bearer(key), "predict", "iris")
    with pytest.raises(RateLimitedError, match="over its rate limit of 2") as info:
        guard.require(_bearer(key), "predict", "iris")
    assert info.value.retry_after_s == 1  # 0.5 s to the next token, rounded up for the header
    clock[0] += info.value.retry_after_s
    guard.require(_bearer(key), "predict", "iris")  # waiting that long succeeds
    guard.require(_bearer(key), "predict", "iris")  # 1 s at 2/s gave two tokens
    with pytest.raises(RateLimitedError):
        guard.require(_bearer(key), "predict", "iris")
    # Refused calls take no token; other keys and the admin have their own (or no) bucket.
    _, other = guard.keys.create("other", rate_limit=1)
    guard.require(_bearer(other), "predict", "iris")
    for _ in range(50):
        guard.require(_bearer("admin-secret"), "predict", "iris")


def test_access_rules_on_registry_models(tmp_path: Path) -> None:
    rules = AccessRules(tmp_path / "access.json")
    guard = Guard(KeyStore(), "admin-secret", rules, facts=_Served(None, {"fraud-v2": ["fraud"]}))
    _, app_key = guard.keys.create("fraud-app", ["predict:*"])
    _, bob_key = guard.keys.create("bob", ["predict:*", "manage:*"])
    # No rules yet: the scopes decide.
    guard.require(_bearer(bob_key), "predict", "fraud-v2")
    rules.set("fraud", call=["fraud-app"], deploy=["alice"])
    assert guard.require(_bearer(app_key), "predict", "fraud-v2").name == "fraud-app"
    with pytest.raises(ForbiddenError, match=r"'fraud' does not let .*'bob'.* call it"):
        guard.require(_bearer(bob_key), "predict", "fraud-v2")
    # Reading metadata is allowed to whoever may call or deploy; bob may do neither.
    assert guard.require(_bearer(app_key), "read", "fraud-v2")
    with pytest.raises(ForbiddenError):
        guard.require(_bearer(bob_key), "read", "fraud-v2")
    assert guard.require(_bearer("admin-secret"), "predict", "fraud-v2").is_admin
    # Other deployments are not affected; the rules persist in the file.
    guard.require(_bearer(bob_key), "predict", "iris")
    assert AccessRules(tmp_path / "access.json").rules() == {
        "fraud": {"call": ["fraud-app"], "deploy": ["alice"]}
    }
    with pytest.raises(InvalidInputError, match="'write' is not read, deploy or call"):
        rules.set("fraud", write=["x"])
    assert rules.set("fraud", call=None, deploy=None) == {}
    assert rules.rules() == {}


def test_the_admin_token_file_is_owner_only(tmp_path: Path) -> None:
    token = admin_token(tmp_path / "security")
    path = tmp_path / "security" / "admin-token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert admin_token(tmp_path / "security") == token  # kept across restarts
    path.chmod(0o644)
    with pytest.raises(InvalidInputError, match="readable by others"):
        admin_token(tmp_path / "security")


def test_the_cli_asks_what_a_new_key_may_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from nstarx_jupyter.cli import main

    monkeypatch.setenv("NSTARX_HOME", str(tmp_path))
    assert main(["keys", "create"]) == 2  # no silent all-models key
    refused = capsys.readouterr()
    assert "--all for every deployment" in refused.err
    assert "nstarx keys create iris" in refused.err
    assert refused.out == ""
    assert main(["keys", "create", "--all", "--name", "everything"]) == 0
    assert "predict:*" in capsys.readouterr().out
    assert main(["keys", "create", "iris"]) == 0
    assert "predict:iris" in capsys.readouterr().out
