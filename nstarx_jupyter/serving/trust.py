"""What the control API may make the server load: the folders and runtimes its owner allowed.

A deployment sent over the control API names a file (`storage_uri`) and maybe a runtime. The
file must lie in a folder the owner allowed (`$NSTARX_HOME`, the model repository and each
`nstarx serve --allow-path DIR`), unless the admin vouches for it with `trusted: true`; the
check is made on the path's text before anything is opened or stat'ed, and again on its real
path (symlinks followed) before it is used, with one message whether or not the file exists. A
runtime given as an import path must be one the owner allowed (`--allow-runtime`): the control
API never imports a module of a caller's choosing. Which formats need `trusted` is the
runtimes' business (`Runtime.runs_code_on_load`), checked where models load.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from nstarx_jupyter.config import nstarx_home
from nstarx_jupyter.errors import ForbiddenError, InvalidInputError
from nstarx_jupyter.model_uri import ModelUri
from nstarx_jupyter.runtimes.loader import RUNTIMES
from nstarx_jupyter.security.home import security_dir

if TYPE_CHECKING:
    from collections.abc import Iterable

    from nstarx_jupyter.deployment.spec import DeploymentSpec
    from nstarx_jupyter.security import Principal
    from nstarx_jupyter.serving.settings import ModelSettings

__all__ = [
    "TRUSTED_TYPES_OPTION",
    "ArtifactPolicy",
    "check_path_text",
    "default_policy",
    "is_import_path",
]

TRUSTED_TYPES_OPTION = "trusted_types"
"""The runtime option naming the skops types a file may hold: vouching for code, like `trusted`."""
_NAME_MAX = 255
"""Longest file name (one path part) a Linux or macOS file system takes."""
_PATH_MAX = 4096


def is_import_path(runtime: str) -> bool:
    """Whether a runtime name is an import path (`pkg.mod.Class`, `pkg.mod:Class`), not a name."""
    return "." in runtime or ":" in runtime


@dataclass(frozen=True, slots=True)
class ArtifactPolicy:
    """The folders models may come from and the runtime import paths allowed over the API."""

    folders: tuple[Path, ...]
    """Allowed folders, as given; their real paths are compared too."""
    runtimes: tuple[str, ...] = ()
    """Runtime import paths allowed besides the built-in runtimes."""
    denied: tuple[Path, ...] = ()
    """Folders inside an allowed one that stay out of reach (the keys and the admin token)."""

    @classmethod
    def build(
        cls, folders: Iterable[Path], runtimes: Iterable[str] = (), denied: Iterable[Path] = ()
    ) -> ArtifactPolicy:
        """A policy over absolute, normalised folders (and their real paths)."""
        return cls(_forms(folders), tuple(runtimes), _forms(denied))

    def check_principal(self, spec: DeploymentSpec, principal: Principal) -> None:
        """Refuse a caller who vouches for code without the admin scope.

        `trusted: true` and `options.trusted_types` both let a file run code on load: only the
        server's owner (the admin token or an `admin` key) may say so.
        """
        if principal.is_admin:
            return
        if spec.trusted:
            raise ForbiddenError(
                "trusted: only the admin may mark a model trusted (formats such as pickle and "
                "joblib run code when they load)"
            )
        if any(TRUSTED_TYPES_OPTION in options for options in _options(spec)):
            raise ForbiddenError(
                f"options.{TRUSTED_TYPES_OPTION}: only the admin may vouch for skops types"
            )

    def check_spec(self, spec: DeploymentSpec) -> None:
        """Refuse a spec whose files or runtimes lie outside what the owner allowed.

        A `trusted` spec (the admin's word, checked by `check_principal`) may name any file;
        runtimes are checked either way.
        """
        variants = spec.traffic.variants if spec.traffic is not None else []
        for uri in (spec.storage_uri, *(variant.storage_uri for variant in variants)):
            if uri is not None:
                self.check_uri(uri, trusted=spec.trusted)
        for runtime in (spec.runtime, *(variant.runtime for variant in variants)):
            if runtime is not None:
                self.check_runtime(runtime)

    def check_settings(self, settings: ModelSettings) -> None:
        """Check a model's runtime once its folder's `model-settings.json` has had its say."""
        if settings.runtime is not None:
            self.check_runtime(settings.runtime)

    def check_runtime(self, runtime: str) -> None:
        """Refuse an import path the owner did not allow (a ServingRuntime name is ignored)."""
        if runtime in RUNTIMES or not is_import_path(runtime) or runtime in self.runtimes:
            return
        raise ForbiddenError(
            f"runtime '{runtime}': over the control API a runtime is one of "
            f"{', '.join(RUNTIMES)} or an import path the server's owner allowed with "
            "`nstarx serve --allow-runtime PATH`"
        )

    def check_uri(self, uri: str, *, trusted: bool = False) -> Path:
        """The real path of a local `storage_uri`, or `ForbiddenError` when it is not allowed.

        Registry (`models:/`) and remote URIs are not paths: they pass here untouched. A
        `trusted` path may lie anywhere but in the denied folders (an unreadable one is left to
        the caller to report).

        Raises:
            InvalidInputError: `uri` is malformed (`ModelUri.parse`).
        """
        found = ModelUri.parse(uri)
        if found.is_registry or found.kind == "remote":
            return Path(uri)
        text = found.path if found.is_local else uri
        refused = ForbiddenError(
            f"storage_uri: '{uri}' is not in a folder this server may load models from "
            "($NSTARX_HOME, its model repository, `nstarx serve --allow-path DIR`)"
        )
        lexical = _lexical(text)
        if trusted:
            if lexical is not None and self._denies(lexical):
                raise refused
            return lexical or Path(text)
        if lexical is None or not self._allows(lexical):
            raise refused  # decided on the text alone: nothing outside was touched
        try:
            real = Path(os.path.realpath(lexical))
        except (OSError, ValueError):
            raise refused from None
        if not self._allows(real):  # a symlink inside that leads outside
            raise refused
        return real

    def _allows(self, path: Path) -> bool:
        inside = any(path.is_relative_to(folder) for folder in self.folders)
        return inside and not self._denies(path)

    def _denies(self, path: Path) -> bool:
        real = Path(os.path.realpath(path))  # the admin's path: it may be stat'ed
        return any(p.is_relative_to(folder) for folder in self.denied for p in (path, real))


def default_policy(
    folders: Iterable[Path] = (), runtimes: Iterable[str] = (), security: Path | None = None
) -> ArtifactPolicy:
    """`$NSTARX_HOME` and `folders` allowed, `runtimes` too; the security folder never."""
    return ArtifactPolicy.build([nstarx_home(), *folders], runtimes, [security or security_dir()])


def _lexical(text: str) -> Path | None:
    """The absolute, normalised path of `text` (`~` expanded, `..` folded), without a stat.

    None for what cannot name a file: NUL bytes, unknown users, parts over 255 bytes.
    """
    if "\0" in text or len(text.encode()) > _PATH_MAX:
        return None
    try:
        expanded = Path(text).expanduser()
    except RuntimeError:  # `~nosuchuser`
        return None
    if expanded.parts and expanded.parts[0].startswith("~"):
        return None
    path = Path(os.path.normpath(expanded.absolute()))  # folds `..` on the text, no stat
    if any(len(part.encode()) > _NAME_MAX for part in path.parts):
        return None
    return path


def _forms(folders: Iterable[Path]) -> tuple[Path, ...]:
    found: list[Path] = []
    for folder in folders:
        given = Path(folder).expanduser()
        for form in (Path(os.path.normpath(given.absolute())), given.resolve()):
            if form not in found:
                found.append(form)
    return tuple(found)


def _options(spec: DeploymentSpec) -> list[dict[str, object]]:
    variants = spec.traffic.variants if spec.traffic is not None else []
    return [spec.options, *(variant.options for variant in variants)]


def check_path_text(text: str) -> Path:
    """`text` as a local path, or `InvalidInputError` when it cannot name a file."""
    lexical = _lexical(text)
    if lexical is None:
        raise InvalidInputError(f"storage_uri: '{text}' cannot name a file")
    return lexical
