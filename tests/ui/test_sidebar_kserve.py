"""The sidebar against a KServe cluster: a real etcd + kube-apiserver (tests/support/kube.py).

The picker lists the kubeconfig's context; picking it (and the test's namespace) shows the
InferenceService the backend applied, with its status and its way to Ready as `FakeController`
writes KServe's conditions; the canary slider, promote, delete and the deploy form change the
InferenceService on the API server, read back with the official `kubernetes` client.
"""

from __future__ import annotations

import shutil
import time
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from playwright.sync_api import expect

from nstarx_jupyter.deployment.kserve_backend import KServeBackend
from nstarx_jupyter.deployment.spec import DeploymentSpec
from tests.support.kube import GROUP, FakeController, kube_cluster, kube_namespace
from tests.ui.conftest import SCREENSHOTS

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from playwright.sync_api import Locator, Page

    from tests.support.kube import Cluster
    from tests.ui.conftest import Lab

__all__ = ["kube_cluster", "kube_namespace"]  # the fixtures, imported for this module

pytestmark = [pytest.mark.ui, pytest.mark.integration, pytest.mark.k8s,
              pytest.mark.xdist_group("ui"), pytest.mark.timeout(600)]  # fmt: skip

NAME = "iris-k8s"
MODEL = "iris-k8s-ui"  # a registry model of its own: the other UI tests count theirs
CONTEXT = "nstarx-test"  # the context tests/support/kube.py writes into its kubeconfig
V1, V2 = "s3://models/iris/1", "s3://models/iris/2"
UNROUTED = "http://127.0.0.1:9"  # a status URL nothing answers at: no figures, still Ready
TIMEOUT_MS = 30_000


@pytest.fixture
def cluster_lab(lab: Lab, kube_cluster: Cluster) -> Iterator[Lab]:
    """The lab's `$KUBECONFIG` is the test cluster's for this test, absent again after."""
    shutil.copyfile(kube_cluster.kubeconfig, lab.kubeconfig)
    yield lab
    lab.kubeconfig.unlink(missing_ok=True)


@pytest.fixture
def registered(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    """One version of an iris classifier in the lab's registry (`$NSTARX_HOME/mlflow`)."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from nstarx_jupyter.registry import Registry

    # The catalog answers once the lab opened its registry (a second first opening of a fresh
    # store would race it through MLflow's migrations).
    catalog = httpx.get(f"{lab.url}nstarx/models", timeout=120,
                        headers={"authorization": f"token {lab.token}"})  # fmt: skip
    assert catalog.status_code == 200, catalog.text
    monkeypatch.setenv("NSTARX_HOME", str(lab.nstarx_home))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    x, y = load_iris(return_X_y=True, as_frame=True)
    Registry().register(LogisticRegression(max_iter=500).fit(x, y), MODEL)


@pytest.fixture
def backend(cluster_lab: Lab, kube_namespace: str) -> Iterator[KServeBackend]:
    """The KServe backend on the test namespace, as the notebook would make it."""
    made = KServeBackend(CONTEXT, kube_namespace, kubeconfig=cluster_lab.kubeconfig)
    yield made
    made.close()


@pytest.fixture
def isvc(cluster_lab: Lab, kube_namespace: str) -> Iterator[Callable[[], dict[str, Any]]]:
    """Reads the InferenceService as the API server stores it, with the `kubernetes` client."""
    from kubernetes import client, config

    api_client = config.new_client_from_config(config_file=str(cluster_lab.kubeconfig),
                                               persist_config=False)  # fmt: skip
    objects = client.CustomObjectsApi(api_client)

    def read() -> dict[str, Any]:
        return dict(objects.get_namespaced_custom_object(
            GROUP, "v1beta1", kube_namespace, "inferenceservices", NAME))  # fmt: skip

    yield read
    api_client.close()


def _until(check: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not after {timeout_s:g} s: {what}")
        time.sleep(0.2)


def test_the_sidebar_steers_an_inference_service_on_the_picked_cluster(
    cluster_lab: Lab,
    page: Page,
    backend: KServeBackend,
    kube_cluster: Cluster,
    kube_namespace: str,
    isvc: Callable[[], dict[str, Any]],
    registered: None,
) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    controller = FakeController(kube_cluster, kube_namespace)
    backend.apply(DeploymentSpec.build(name=NAME, storage_uri=V1, auth=False))
    controller.conditions(NAME, PredictorConfigurationReady="True", PredictorRouteReady="True")

    sidebar = _open_sidebar(page, cluster_lab)
    picker = sidebar.get_by_role("combobox", name="Backend")
    expect(picker.locator("option", has_text=CONTEXT)).to_have_count(1, timeout=TIMEOUT_MS)
    expect(picker).to_have_value("local")

    # Pick the cluster, then the test's namespace (the context's default is `default`).
    picker.select_option(f"kserve:{CONTEXT}")
    namespace = sidebar.get_by_role("textbox", name="Namespace")
    expect(namespace).to_have_value("default")
    deployments = sidebar.locator("#nstarx-deployments-body")
    expect(deployments).to_contain_text("No InferenceServices in nstarx-test / default")
    namespace.fill(kube_namespace)
    namespace.press("Enter")
    card = sidebar.get_by_role("article", name=NAME)
    expect(card.get_by_role("status", name="Status: Loading")).to_be_visible(timeout=TIMEOUT_MS)
    progress = card.get_by_role("list", name=f"Progress of {NAME}")
    expect(progress.get_by_role("listitem")).to_have_text(
        ["accepted", "predictor scheduled", "model loaded", "ready"])  # fmt: skip
    expect(progress.get_by_label("model loaded: current")).to_be_visible()
    expect(card).to_contain_text(kube_namespace)
    _screenshot(sidebar, "sidebar-kserve-progress")

    # A failing condition: its reason shows; then Ready, and the progress line goes.
    controller.conditions(NAME, PredictorReady=("False", "ModelLoadFailed", "no such bucket"))
    expect(card.get_by_role("status", name="Status: Failed")).to_be_visible(timeout=TIMEOUT_MS)
    expect(card).to_contain_text("ModelLoadFailed: no such bucket")
    controller.ready(NAME, UNROUTED)
    expect(card.get_by_role("status", name="Status: Ready")).to_be_visible(timeout=TIMEOUT_MS)
    expect(progress).to_have_count(0)
    # What only the local server has is not shown (no error either).
    expect(card.get_by_test_id("figure-cost/1k")).to_have_count(0)
    expect(card.get_by_role("group", name=f"Sparklines of {NAME}")).to_have_count(0)
    expect(card.get_by_test_id("figure-p50")).to_have_text("\u2013")  # no figures: a dash

    # A canary of v2 from the notebook's side: the card shows it, with the slider.
    spec = backend.describe(NAME).spec
    backend.apply(spec.replace(storage_uri=V2, canary_traffic_percent=10))
    controller.ready(NAME, UNROUTED, canary_percent=10)
    expect(card).to_contain_text("canary; stable 1", timeout=TIMEOUT_MS)
    slider = card.get_by_role("slider", name=f"Canary share of {NAME}")
    expect(slider).to_have_value("10")
    box = slider.bounding_box()
    assert box is not None
    slider.click(position={"x": box["width"] * 0.55, "y": box["height"] / 2})
    moved = int(slider.input_value())
    assert 35 <= moved <= 75, moved
    _until(lambda: isvc()["spec"]["predictor"].get("canaryTrafficPercent") == moved,
           f"canaryTrafficPercent {moved} on the API server")  # fmt: skip
    assert isvc()["spec"]["predictor"]["model"]["storageUri"] == V2
    _screenshot(sidebar, "sidebar-kserve-canary")

    # The choice is kept: in a new page the sidebar still shows the cluster's deployments.
    sidebar = _open_sidebar(page, cluster_lab)
    picker = sidebar.get_by_role("combobox", name="Backend")
    expect(picker).to_have_value(f"kserve:{CONTEXT}", timeout=TIMEOUT_MS)
    expect(sidebar.get_by_role("textbox", name="Namespace")).to_have_value(kube_namespace)
    card = sidebar.get_by_role("article", name=NAME)

    # Promote: all traffic to v2, no canary left on the API server.
    card.get_by_role("button", name="Promote").click()
    _until(lambda: "canaryTrafficPercent" not in isvc()["spec"]["predictor"],
           "the canary promoted on the API server")  # fmt: skip
    stored = isvc()
    assert stored["spec"]["predictor"]["model"]["storageUri"] == V2
    assert "serving.nstarx.io/stable-spec" not in stored["metadata"].get("annotations", {})

    # Delete, after the confirmation naming the cluster: gone from the API server.
    card.get_by_role("button", name="Delete").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text(f"{CONTEXT} / {kube_namespace}")
    dialog.get_by_role("button", name="Delete").click()
    expect(card).to_have_count(0, timeout=TIMEOUT_MS)
    assert [d.name for d in backend.deployments()] == []

    # The deploy form on the cluster: the registry version, from where it was uploaded.
    sidebar.get_by_role("button", name=f"Model {MODEL}").click()
    sidebar.get_by_role("button", name=f"Deploy {MODEL} version 1").click()
    form = sidebar.get_by_role("form", name=f"Deploy {MODEL} version 1")
    expect(form).to_contain_text(f"To {CONTEXT} / {kube_namespace}")
    form.get_by_role("textbox", name="Deployment name").fill(NAME)
    form.get_by_role("textbox", name="Storage URI").fill("file:///tmp/iris")
    form.get_by_role("button", name="Deploy", exact=True).click()
    expect(page.locator(".jp-toast-message").last).to_contain_text("not remote storage",
                                                                   timeout=TIMEOUT_MS)  # fmt: skip
    form.get_by_role("textbox", name="Storage URI").fill(V1)
    form.get_by_role("button", name="Deploy", exact=True).click()
    applied = sidebar.get_by_role("region", name=f"Deployed {NAME}")
    expect(applied).to_contain_text("its progress shows in the list", timeout=TIMEOUT_MS)
    assert isvc()["spec"]["predictor"]["model"]["storageUri"] == V1
    card = sidebar.get_by_role("article", name=NAME)
    expect(card.get_by_role("status", name="Status: Unknown")).to_be_visible(timeout=TIMEOUT_MS)
    expect(card.get_by_label("predictor scheduled: current")).to_be_visible()
    applied.get_by_role("button", name="Done").click()

    # Back to the local server: its (empty) list, not the cluster's.
    picker.select_option("local")
    expect(sidebar.get_by_role("textbox", name="Namespace")).to_have_count(0)


def _open_sidebar(page: Page, lab: Lab) -> Locator:
    """The lab, then the sidebar through its tab (clicked until selected: a click while the lab
    still starts can be lost)."""
    page.goto(lab.page_url("lab"))
    tab = page.get_by_role("tab", name="Model serving")
    expect(tab).to_be_visible(timeout=60_000)
    sidebar = page.locator("#nstarx-sidebar")
    heading = sidebar.get_by_role("heading", name="Model serving")
    for _ in range(5):
        if tab.get_attribute("aria-selected") != "true":
            tab.click()
        try:
            expect(heading).to_be_visible(timeout=10_000)
        except AssertionError:
            continue
        return sidebar
    raise AssertionError("the Model serving tab did not open the sidebar")


def _screenshot(element: Locator, name: str) -> None:
    shot = SCREENSHOTS / f"{name}.png"
    element.screenshot(path=shot)
    print(f"screenshot: {shot}")
