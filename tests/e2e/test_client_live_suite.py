"""The official `kubernetes` package's own live-cluster tests, run against pinnace.

The wheel ships `kubernetes.dynamic.test_client` / `test_discovery` (sync) and
`kubernetes.aio.dynamic.client_test` / `discovery_test` (asyncio); they read their cluster
from `kubernetes.e2e_test.base`, which `tests/e2e/client_e2e_base.py` provides as a pytest
plugin. Each suite runs once, unmodified, in its own `python -m pytest --pyargs …`
subprocess (one after the other, against one cluster); the JUnit report is split into one
test here per upstream test, so a failure names the upstream test and its message.

Deselected upstream tests — each needs something outside the API foundation or cannot
pass against any cluster — are listed with the reason next to their `-k` term below.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.e2e.client_e2e_base import KUBECONFIG_ENV
from tests.e2e.cluster import Cluster

REPO = Path(__file__).resolve().parents[2]

SUITES: dict[str, dict] = {
    "sync": {
        "modules": ("kubernetes.dynamic.test_client", "kubernetes.dynamic.test_discovery"),
        "deselect": {
            # These ask for apiextensions.k8s.io/v1beta1 CustomResourceDefinitions, gone from
            # Kubernetes since 1.22 (pinnace serves v1, which the aio suite's copies use).
            "test_cluster_custom_resources": "needs CRDs (apiextensions.k8s.io/v1beta1)",
            "test_namespaced_custom_resources": "needs CRDs (apiextensions.k8s.io/v1beta1)",
            "test_async_namespaced_custom_resources": "needs CRDs (apiextensions.k8s.io/v1beta1)",
            # Compares two Resource objects from two Discoverers with `==`; kubernetes 37's
            # Resource defines no __eq__, so this is identity and fails on any cluster.
            # test_dynamic_client.test_discovery_cache_round_trip checks the same by value.
            "test_cache_decoder_resource_and_subresource": "client-side: Resource has no __eq__",
        },
    },
    "aio": {
        "modules": ("kubernetes.aio.dynamic.client_test", "kubernetes.aio.dynamic.discovery_test"),
        "deselect": {
            # Applies an apps/v1 Deployment body to the pods endpoint; Kubernetes answers 400
            # "the API version in the data (apps/v1) does not match ... (v1)", as pinnace does.
            "test_server_side_apply_api": "the test sends a Deployment to /pods: 400 is correct",
        },
    },
}

# The upstream tests expected to run (and pass), by suite.
EXPECTED: dict[str, tuple[str, ...]] = {
    "sync": (
        "TestDynamicClient::test_configmap_apis",
        "TestDynamicClient::test_node_apis",
        "TestDynamicClient::test_node_apis_partial_object_metadata",
        "TestDynamicClient::test_replication_controller_apis",
        "TestDynamicClient::test_server_side_apply_api",
        "TestDynamicClient::test_service_apis",
        "TestDynamicClientSerialization::test_dict_type",
        "TestDynamicClientSerialization::test_resource_field",
        "TestDynamicClientSerialization::test_resource_instance_type",
        "TestDiscoverer::test_init_cache_from_file",
    ),
    "aio": (
        "TestDynamicClient::test_configmap_apis",
        "TestDynamicClient::test_node_apis",
        "TestDynamicClient::test_node_apis_partial_object_metadata",
        "TestDynamicClient::test_replication_controller_apis",
        "TestDynamicClient::test_service_apis",
        "TestDynamicClientSerialization::test_dict_type",
        "TestDynamicClientSerialization::test_resource_field",
        "TestDynamicClientSerialization::test_resource_instance_type",
        "TestDynamicClient::test_cluster_custom_resources",
        "TestDynamicClient::test_namespaced_custom_resources",
        "TestDiscoverer::test_get_resources_for_api_version",
        "TestDiscoverer::test_init_cache_from_file",
        "TestDiscoverer::test_cache_decoder_resource_and_subresource",
    ),
}

Outcome = tuple[str, str]  # ("passed" | "failed" | "error" | "skipped", message)


def suite_command(suite: str, junit: Path) -> list[str]:
    spec = SUITES[suite]
    deselect = " and ".join(f"not {name}" for name in spec["deselect"])
    return [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
            "-p", "tests.e2e.client_e2e_base", f"--junitxml={junit}",
            "-k", deselect, "--pyargs", *spec["modules"]]


def parse_junit(path: Path) -> dict[str, Outcome]:
    results: dict[str, Outcome] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        test_id = f"{case.get('classname', '').rsplit('.', 1)[-1]}::{case.get('name')}"
        outcome: Outcome = ("passed", "")
        for tag in ("failure", "error", "skipped"):
            node = case.find(tag)
            if node is not None:
                outcome = (tag if tag != "failure" else "failed",
                           (node.get("message") or "") + "\n" + (node.text or "")[-3000:])
                break
        results[test_id] = outcome
    return results


@pytest.fixture(scope="module")
def results(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
            ) -> dict[str, dict[str, Outcome]]:
    """Run the upstream suites; suite -> upstream test id -> outcome.

    One after the other: both suites' configmap tests list `e2e-test=true` in `default`
    and expect only their own object, so in parallel each sees the other's.
    """
    work = tmp_path_factory.mktemp("live-suite")
    env = dict(cluster.env())
    env[KUBECONFIG_ENV] = str(cluster.kubeconfig)
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # nothing (not even .pyc) into site-packages
    env["TMPDIR"] = str(work)  # the discovery cache files the suites write and compare
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    out: dict[str, dict[str, Outcome]] = {}
    for suite in SUITES:
        junit = work / f"{suite}.xml"
        run = subprocess.run(suite_command(suite, junit), cwd=REPO, env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
        assert junit.exists(), f"{suite} suite did not run:\n{run.stdout[-5000:]}"
        out[suite] = parse_junit(junit)
    return out


@pytest.mark.parametrize("suite", SUITES)
def test_runs_exactly_the_expected_tests(results: dict[str, dict[str, Outcome]],
                                         suite: str) -> None:
    # A new client release adding or renaming tests shows up here, not silently.
    assert sorted(results[suite]) == sorted(EXPECTED[suite])


@pytest.mark.parametrize("suite,test_id",
                         [(s, t) for s, ids in EXPECTED.items() for t in ids])
def test_upstream(results: dict[str, dict[str, Outcome]], suite: str, test_id: str) -> None:
    outcome, message = results[suite].get(test_id, ("missing", "not run"))
    if outcome != "passed":
        pytest.fail(f"{suite} {test_id}: {outcome}\n{message}", pytrace=False)
