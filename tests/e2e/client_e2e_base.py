"""`kubernetes.e2e_test.base` (and its aio twin) pointed at a pinnace cluster.

The official `kubernetes` wheel ships live-cluster tests (`kubernetes/dynamic/test_client.py`,
`test_discovery.py`, `kubernetes/aio/dynamic/client_test.py`, `discovery_test.py`) that do
`from kubernetes.e2e_test import base` and call `base.get_e2e_configuration()`; the wheel
does not ship that module. `kubernetes` is a regular package, so a second directory on
`sys.path` cannot add a subpackage to it; instead this module, loaded as a pytest plugin
(`-p tests.e2e.client_e2e_base`), registers itself under both module names in
`sys.modules` before the test modules are imported. Nothing is written into site-packages.

The cluster is named by the kubeconfig in `$PINNACE_E2E_KUBECONFIG` (server URL, CA data
and bearer token, exactly what `pinnace up` writes).
"""

from __future__ import annotations

import os
import sys
import types
from typing import Any

KUBECONFIG_ENV = "PINNACE_E2E_KUBECONFIG"
ALIASES = ("kubernetes.e2e_test", "kubernetes.aio.e2e_test")


def _kubeconfig() -> str:
    path = os.environ.get(KUBECONFIG_ENV)
    if not path:
        raise RuntimeError(f"set {KUBECONFIG_ENV} to the kubeconfig of a running cluster")
    return path


def get_e2e_configuration() -> Any:
    """A `kubernetes.client.Configuration` for the cluster (sync suite's `base`)."""
    from kubernetes import client, config

    configuration = client.Configuration()
    config.load_kube_config(config_file=_kubeconfig(), client_configuration=configuration)
    return configuration


def get_aio_e2e_configuration() -> Any:
    """A `kubernetes.aio.client.Configuration` for the cluster (aio suite's `base`).

    The aio suite calls `get_e2e_configuration()` from a synchronous `setUpClass`, so the
    kubeconfig is loaded with the synchronous loader and copied field by field.
    """
    from kubernetes.aio.client import Configuration

    sync = get_e2e_configuration()
    configuration = Configuration(host=sync.host)
    configuration.ssl_ca_cert = sync.ssl_ca_cert
    configuration.verify_ssl = sync.verify_ssl
    configuration.api_key = dict(sync.api_key)
    configuration.api_key_prefix = dict(sync.api_key_prefix)
    return configuration


def install() -> None:
    """Register `kubernetes.e2e_test.base` and `kubernetes.aio.e2e_test.base`."""
    for package_name in ALIASES:
        base = types.ModuleType(f"{package_name}.base", __doc__)
        base.get_e2e_configuration = (  # type: ignore[attr-defined]
            get_aio_e2e_configuration if ".aio." in package_name else get_e2e_configuration)
        package = types.ModuleType(package_name)
        package.__path__ = []  # a package, so `from package import base` resolves
        package.base = base  # type: ignore[attr-defined]
        sys.modules[package_name] = package
        sys.modules[base.__name__] = base


def pytest_configure(config: Any) -> None:
    install()
