"""Custom resources beside ConfigMaps, against a real `pinnace server` over HTTPS.

    python -m bench.crd [--objects 500] [--concurrency 8]

Prints one table: creates/s and lists/s of custom objects (a schema with defaults,
bounds and a printer column) next to the same for ConfigMaps in the same run — the
ConfigMap rows are the baseline — and the time from a CRD's create to `Established`
and to `kubectl explain <kind>.spec.<field>` printing the schema's description.
Then creates/s and lists/s in a definition's second version, v2 (storage v1), with
conversion `None` [baseline] and with conversion `Webhook` (an HTTPS webhook in this
process; each create is converted twice: v2 -> v1 to store, v1 -> v2 for v2's cache).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from bench._common import free_port, in_parallel, print_table, read_kubeconfig, stop
from pinnace.apiserver import pki

GROUP = "bench.example.com"
KUBECTL = os.environ.get("KUBECTL", "/usr/bin/kubectl")


def definition(plural: str, kind: str, conversion: dict[str, Any] | None = None
               ) -> dict[str, Any]:
    out = _definition(plural, kind)
    if conversion is not None:  # a second version, v2, served beside v1 (storage)
        v2 = dict(out["spec"]["versions"][0], name="v2", storage=False)
        out["spec"]["versions"].append(v2)
        out["spec"]["conversion"] = conversion
    return out


def _definition(plural: str, kind: str) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP, "scope": "Namespaced",
            "names": {"plural": plural, "kind": kind},
            "versions": [{
                "name": "v1", "served": True, "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {"name": "Size", "type": "integer", "jsonPath": ".spec.size"}],
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "required": ["size"], "properties": {
                        "size": {"type": "integer", "minimum": 1, "maximum": 1000,
                                 "description": "The size of the thing."},
                        "key": {"type": "string", "maxLength": 500},
                        "mode": {"type": "string", "default": "fast"}}},
                    "status": {"type": "object",
                               "x-kubernetes-preserve-unknown-fields": True}}}},
            }],
        },
    }


async def convert(request: web.Request) -> web.Response:
    """A conversion webhook that only rewrites apiVersion (the schemas are alike)."""
    req = (await request.json())["request"]
    return web.json_response({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview",
        "response": {"uid": req["uid"], "result": {"status": "Success"}, "convertedObjects": [
            {**o, "apiVersion": req["desiredAPIVersion"]} for o in req["objects"]]}})


async def run(tmp: Path, objects: int, concurrency: int) -> list[tuple[str, str]]:
    certs = pki.ensure_pki(tmp / "webhook", hosts=["127.0.0.1"])
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(certs.server_cert, certs.server_key)
    app = web.Application()
    app.router.add_post("/convert", convert)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=tls).start()
    webhook = {"url": f"https://127.0.0.1:{port}/convert",
               "caBundle": base64.b64encode(certs.ca_pem).decode()}
    try:
        return await _measure(tmp, objects, concurrency, webhook)
    finally:
        await runner.cleanup()


async def _measure(tmp: Path, objects: int, concurrency: int, webhook: dict[str, str]
                   ) -> list[tuple[str, str]]:
    kubeconfig = tmp / "data" / "kubeconfig"
    base, token, ca = read_kubeconfig(kubeconfig)
    ctx = ssl.create_default_context(cadata=ca.decode())
    headers = {"Authorization": f"Bearer {token}"}
    conn = aiohttp.TCPConnector(ssl=ctx, limit=concurrency)
    rows: list[tuple[str, str]] = []
    async with aiohttp.ClientSession(connector=conn, headers=headers) as s:
        crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"

        async def established(name: str) -> None:
            while True:
                async with s.get(f"{base}{crds}/{name}") as r:
                    got = await r.json()
                if any(c["type"] == "Established" and c["status"] == "True"
                       for c in (got.get("status") or {}).get("conditions") or []):
                    return
                await asyncio.sleep(0.005)

        # time to Established (the definition the throughput rows then use)
        t0 = time.perf_counter()
        async with s.post(base + crds, json=definition("things", "Thing")) as r:
            assert r.status == 201, await r.text()
        await established(f"things.{GROUP}")
        to_established = time.perf_counter() - t0

        # time to `kubectl explain` (a second definition: kubectl's cache is cold for it)
        env = {"HOME": str(tmp), "KUBECONFIG": str(kubeconfig), "PATH": os.environ["PATH"]}
        t0 = time.perf_counter()
        async with s.post(base + crds, json=definition("gadgets", "Gadget")) as r:
            assert r.status == 201, await r.text()
        while True:
            proc = await asyncio.create_subprocess_exec(
                KUBECTL, "explain", "gadget.spec.size", env=env,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
            out, _ = await proc.communicate()
            if b"The size of the thing." in out:
                break
        to_explain = time.perf_counter() - t0

        async def throughput(path: str, body: Any) -> tuple[float, float]:
            async def create(i: int) -> None:
                async with s.post(base + path, json=body(i)) as r:
                    assert r.status == 201, await r.text()
                    await r.read()

            async def list_all(_: int) -> None:
                async with s.get(base + path) as r:
                    assert r.status == 200
                    await r.read()
            t = time.perf_counter()
            await in_parallel(objects, create, concurrency)
            creates = objects / (time.perf_counter() - t)
            t = time.perf_counter()
            await in_parallel(50, list_all, concurrency)
            return creates, 50 / (time.perf_counter() - t)

        cm_creates, cm_lists = await throughput(
            "/api/v1/namespaces/default/configmaps", lambda i: {
                "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"cm-{i}"},
                "data": {"size": str(i % 1000 + 1), "key": "x" * 200}})
        cr_creates, cr_lists = await throughput(
            f"/apis/{GROUP}/v1/namespaces/default/things", lambda i: {
                "apiVersion": f"{GROUP}/v1", "kind": "Thing", "metadata": {"name": f"t-{i}"},
                "spec": {"size": i % 1000 + 1, "key": "x" * 200}})

        converted: dict[str, tuple[float, float]] = {}
        for plural, kind, conversion in (
                ("plains", "Plain", {"strategy": "None"}),
                ("hooked", "Hooked", {"strategy": "Webhook", "webhook": {
                    "conversionReviewVersions": ["v1"], "clientConfig": webhook}})):
            async with s.post(base + crds, json=definition(plural, kind, conversion)) as r:
                assert r.status == 201, await r.text()
            await established(f"{plural}.{GROUP}")
            path = f"/apis/{GROUP}/v2/namespaces/default/{plural}"
            while True:  # served once Established is written; the routes follow at once
                async with s.get(base + path) as r:
                    if r.status == 200:
                        break
                await asyncio.sleep(0.005)
            converted[plural] = await throughput(path, lambda i, k=kind: {
                "apiVersion": f"{GROUP}/v2", "kind": k, "metadata": {"name": f"c-{i}"},
                "spec": {"size": i % 1000 + 1, "key": "x" * 200}})
    rows += [
        ("CRD create -> Established (ms)", f"{to_established * 1000:.0f}"),
        ("CRD create -> kubectl explain works (ms)", f"{to_explain * 1000:.0f}"),
        (f"ConfigMap creates/s ({objects}, {concurrency} clients) [baseline]",
         f"{cm_creates:.0f}"),
        (f"custom object creates/s ({objects}, {concurrency} clients)", f"{cr_creates:.0f}"),
        (f"ConfigMap lists/s ({objects} objects) [baseline]", f"{cm_lists:.1f}"),
        (f"custom object lists/s ({objects} objects)", f"{cr_lists:.1f}"),
        ("v2 creates/s, conversion None [baseline]", f"{converted['plains'][0]:.0f}"),
        ("v2 creates/s, conversion Webhook", f"{converted['hooked'][0]:.0f}"),
        ("v2 lists/s, conversion None [baseline]", f"{converted['plains'][1]:.1f}"),
        ("v2 lists/s, conversion Webhook", f"{converted['hooked'][1]:.1f}"),
    ]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--objects", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="pinnace-bench-crd-"))
    proc = subprocess.Popen([sys.executable, "-m", "pinnace.cli", "server", "--data-dir",
                             str(tmp / "data"), "--port", str(free_port())],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not (tmp / "data" / "kubeconfig").exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("pinnace server did not start")
            time.sleep(0.02)
        rows = asyncio.run(run(tmp, args.objects, args.concurrency))
    finally:
        stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)
    print_table(["measure", "value"], rows, note="shared machine")


if __name__ == "__main__":
    main()
