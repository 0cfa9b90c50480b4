"""One namespace's KServe objects through the Kubernetes API: read, list, apply, delete, watch.

What `KServeBackend` and a split's `GraphDeployments` (`kserve_graphs.py`) both do with the API
server, below both of them: server-side apply as the field manager `nstarx` (never forced), and
the API server's answers as the package's errors, each one line (`kube_api.api_error`).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from nstarx_jupyter.deployment.kube_api import FIELD_MANAGER, GROUP, KINDS, NoKServeError, api_error
from nstarx_jupyter.errors import NotFoundError, UnavailableError

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["ISVC", "KubeObjects"]

ISVC = "InferenceService"
_APPLY = "application/apply-patch+yaml"


class KubeObjects:
    """KServe's custom objects in `namespace` (the default of each call) of one cluster."""

    def __init__(self, k8s: Any, api_client: Any, namespace: str) -> None:
        """`k8s` is the `kubernetes` package, `api_client` its `ApiClient` for the cluster."""
        self.k8s = k8s
        self.api_client = api_client
        self.namespace = namespace
        self._objects = k8s.client.CustomObjectsApi(api_client)

    def apply(self, doc: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply one manifest as `nstarx`; the object as stored."""
        version, plural, namespaced = KINDS[doc["kind"]]
        name = doc["metadata"]["name"]
        common = {"body": doc, "field_manager": FIELD_MANAGER, "force": False,
                  "_content_type": _APPLY}  # fmt: skip
        with self.errors(doc["kind"], name, doc["metadata"].get("namespace")):
            if namespaced:
                where: tuple[str, ...] = (GROUP, version, doc["metadata"].setdefault(
                    "namespace", self.namespace), plural, name)  # fmt: skip
                result = self._objects.patch_namespaced_custom_object(*where, **common)
            else:
                where = (GROUP, version, plural, name)
                result = self._objects.patch_cluster_custom_object(*where, **common)
            if result is None:  # 201 Created: the client deserialises only a patch's 200
                get = (self._objects.get_namespaced_custom_object if namespaced
                       else self._objects.get_cluster_custom_object)  # fmt: skip
                result = get(*where)
        return dict(result)

    def get(
        self, kind: str, name: str, *, missing_ok: bool = False, namespace: str | None = None
    ) -> dict[str, Any] | None:
        """One object; None when it is missing and `missing_ok` (not when KServe is)."""
        namespace = namespace or self.namespace
        version, plural, _ = KINDS[kind]
        try:
            with self.errors(kind, name, namespace):
                found = self._objects.get_namespaced_custom_object(
                    GROUP, version, namespace, plural, name
                )
        except NotFoundError as exc:
            if missing_ok and not isinstance(exc, NoKServeError):
                return None
            raise
        return dict(found)

    def listed(
        self, kind: str, *, labels: str | None = None, namespace: str | None = None
    ) -> dict[str, Any]:
        """The list answer (its `items` and the `metadata.resourceVersion` to watch from)."""
        version, plural, _ = KINDS[kind]
        selector = {"label_selector": labels} if labels else {}
        with self.errors(kind, None, namespace):
            listed = self._objects.list_namespaced_custom_object(
                GROUP, version, namespace or self.namespace, plural, **selector
            )
        return dict(listed)

    def remove(self, kind: str, name: str, namespace: str | None = None) -> None:
        """Delete one object."""
        version, plural, _ = KINDS[kind]
        namespace = namespace or self.namespace
        with self.errors(kind, name, namespace):
            self._objects.delete_namespaced_custom_object(GROUP, version, namespace, plural, name)

    def next_event(
        self, kind: str, version: str, remaining_s: float, **selectors: str
    ) -> dict[str, Any] | None:
        """The next watch event on `kind` (`field_selector` / `label_selector`) after `version`.

        None when the watch timed out or its version expired (410 Gone): read again then.
        """
        api_version, plural, _ = KINDS[kind]
        watcher = self.k8s.watch.Watch()
        stream = watcher.stream(
            self._objects.list_namespaced_custom_object, GROUP, api_version, self.namespace,
            plural, resource_version=version, timeout_seconds=max(1, int(remaining_s + 0.999)),
            _request_timeout=remaining_s + 10, **selectors,
        )  # fmt: skip
        try:
            with self.errors(kind, None):
                for event in self._expired_is_the_end(stream):
                    return dict(event)
        finally:
            watcher.stop()
        return None

    def _expired_is_the_end(self, stream: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """The watch's events, ending quietly at 410 Gone (the version left the watch cache).

        The client raises that ERROR event as an exception; the caller then reads the object
        again and watches from its new version.
        """
        try:
            yield from stream
        except self.k8s.client.exceptions.ApiException as exc:
            if exc.status != 410:
                raise

    @contextlib.contextmanager
    def errors(self, kind: str, name: str | None, namespace: str | None = None) -> Iterator[None]:
        """Kubernetes API answers as the package's errors, each one line."""
        exceptions = self.k8s.client.exceptions
        try:
            yield
        except exceptions.ApiException as exc:
            raise api_error(exc, kind, name, namespace or self.namespace) from None
        except (OSError, _urllib3_errors()) as exc:
            host = self.api_client.configuration.host
            raise UnavailableError(f"cannot reach the Kubernetes API at {host}: {exc}") from None


def _urllib3_errors() -> type[Exception]:
    import urllib3  # the kubernetes client's own HTTP client: installed with it

    return urllib3.exceptions.HTTPError
