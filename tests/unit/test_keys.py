"""API keys: minted once, stored hashed, scoped, revocable; the guard's answers."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from nstarx_jupyter.errors import (
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
    UnauthenticatedError,
)
from nstarx_jupyter.security import Guard, KeyStore


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
    assert "digest" not in record.public()


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
    with pytest.raises(InvalidInputError, match="deployments"):
        store.create("x", [])
    broken = tmp_path / "keys.json"
    broken.write_text("{not json")
    with pytest.raises(InvalidInputError, match="not a key file"):
        KeyStore(broken)


def test_the_guard_lets_open_models_through_and_checks_protected_ones() -> None:
    guard = Guard(KeyStore(), admin_token="admin-secret")  # noqa: S106 - a test value
    _, iris_key = guard.keys.create("", ["iris"])
    _, any_key = guard.keys.create()
    guard.check("iris", None)  # not protected yet: open, as in KServe
    guard.protected.add("iris")
    guard.protected.add("wine")
    with pytest.raises(UnauthenticatedError, match="Authorization: Bearer KEY"):
        guard.check("iris", None)
    with pytest.raises(UnauthenticatedError, match="Bearer"):
        guard.check("iris", f"Basic {iris_key}")
    guard.check("iris", f"Bearer {iris_key}")
    guard.check("iris", f"bearer  {iris_key} ")
    with pytest.raises(ForbiddenError, match="does not cover 'wine'"):
        guard.check("wine", f"Bearer {iris_key}")
    guard.check("wine", f"Bearer {any_key}")
    guard.check("wine", "Bearer admin-secret")
    with pytest.raises(ForbiddenError, match="admin token"):
        guard.check("iris", f"Bearer {iris_key}", admin=True)
    guard.check("iris", "Bearer admin-secret", admin=True)
