"""Joining with a token (k3s' scheme) against a real API server, and the node IPAM
controller: what `pinnace agent` does before it runs a node."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from pinnace.api import errors, join_tokens
from pinnace.client.client import Client
from pinnace.client.join import JoinError, join
from pinnace.client.transport import HttpTransport
from pinnace.cluster import ComponentRunner
from pinnace.controllers.node_ipam import NodeIpamController
from pinnace.node_commands import _token
from tests.integration.conftest import Api, eventually


def server_token(api: Api) -> str:
    return (api.server.data_dir / "node-token").read_text().strip()


async def test_node_token_is_written_and_pins_the_ca(api: Api) -> None:
    path = api.server.data_dir / "node-token"
    assert path.stat().st_mode & 0o777 == 0o600
    token = join_tokens.parse(path.read_text())
    assert token.ca_hash == join_tokens.ca_hash(api.server.ca_pem)
    assert token.credentials.startswith("server:")
    status, body = await api.request("GET", "/cacerts", token=None)
    assert status == 200 and body.encode() == api.server.ca_pem


async def whoami(api: Any, token: str) -> str | None:
    """The user name the server (an Api, or a pinnace.cluster.Cluster's server) takes
    token for; None when it refuses it (401)."""
    server = getattr(api, "server", api)
    client = Client(HttpTransport(server.url, token=token, ca_pem=server.ca_pem))
    try:
        review = await client._call("POST", "/apis/authentication.k8s.io/v1/"
                                    "selfsubjectreviews", body={
                                        "apiVersion": "authentication.k8s.io/v1",
                                        "kind": "SelfSubjectReview"})
    except errors.ApiError as e:
        assert e.code == 401
        return None
    finally:
        await client.close()
    return review["status"]["userInfo"]["username"]


async def test_a_node_joins_and_acts_as_itself(api: Api, tmp_path: Path) -> None:
    cred = await join(api.url, server_token(api), node_name="n1", data_dir=tmp_path / "n1")
    assert (tmp_path / "n1" / "node.kubeconfig").stat().st_mode & 0o777 == 0o600
    client = Client(HttpTransport.from_kubeconfig(tmp_path / "n1" / "node.kubeconfig"))
    try:
        review = await client._call("POST", "/apis/authentication.k8s.io/v1/"
                                    "selfsubjectreviews", body={
                                        "apiVersion": "authentication.k8s.io/v1",
                                        "kind": "SelfSubjectReview"})
        info = review["status"]["userInfo"]
        assert info["username"] == "system:node:n1"
        assert "system:nodes" in info["groups"]
        await client.list(client.resource("v1", "Node"))  # a node may read Nodes
    finally:
        await client.close()
    # the same machine joining again (without its saved kubeconfig) gets a new token, and
    # the old one stops working: the cluster holds only the hash of the latest
    (tmp_path / "n1" / "node.kubeconfig").unlink()
    again = await join(api.url, server_token(api), node_name="n1", data_dir=tmp_path / "n1")
    assert again.token != cred.token
    assert await whoami(api, again.token) == "system:node:n1"
    assert await whoami(api, cred.token) is None
    # a token naming another node, or with a wrong secret, is refused
    name, secret = join_tokens.split_node_token(again.token) or ("", "")
    assert await whoami(api, join_tokens.node_token("n2", secret)) is None
    assert await whoami(api, join_tokens.node_token(name, secret[:-1] + "x")) is None


async def test_node_tokens_live_in_the_cluster_as_hashes(api: Api, client: Client,
                                                         tmp_path: Path) -> None:
    """Every API server on the store accepts a node's token: it is kept in the node's
    Secret in kube-system (its hash only), not in a file of the server that issued it."""
    cred = await join(api.url, server_token(api), node_name="n1", data_dir=tmp_path / "n1")
    assert not (api.server.data_dir / "pki" / "node-tokens.csv").exists()
    stored = await client.get(client.resource("v1", "Secret"), "n1.node-password.pinnace",
                              "kube-system")
    _, secret = join_tokens.split_node_token(cred.token) or ("", "")
    assert join_tokens.secret_field(stored, "tokenHash") == \
        hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in json.dumps(stored) and secret not in json.dumps(
        [base64.b64decode(v).decode() for v in stored["data"].values()])
    # deleting the Secret revokes the token
    await client.delete(client.resource("v1", "Secret"), "n1.node-password.pinnace",
                        "kube-system")
    assert await whoami(api, cred.token) is None


async def test_tokens_of_the_old_file_work_until_the_agent_joins_again(tmp_path: Path
                                                                        ) -> None:
    """A data dir from before: the server still accepts the tokens of its
    pki/node-tokens.csv; an agent holding one joins again and gets one of the cluster."""
    from pinnace.client.join import NodeCredential, _save
    from pinnace.cluster import Cluster, ClusterConfig
    data = tmp_path / "d"
    (data / "pki").mkdir(parents=True)
    (data / "pki" / "node-tokens.csv").write_text(
        'old-token-of-n9,system:node:n9,system:node:n9,"system:nodes,system:authenticated"\n'
        'old-token-of-n8,system:node:n8,system:node:n8,"system:nodes,system:authenticated"\n')
    async with Cluster(ClusterConfig(data_dir=data, port=0, controllers=False,
                                     scheduler=False)) as cluster:
        server = cluster.server
        assert await whoami(server, "old-token-of-n9") == "system:node:n9"
        (tmp_path / "n9").mkdir()
        _save(tmp_path / "n9", NodeCredential(server.url, server.ca_pem, "old-token-of-n9",
                                              "kubelet"), "n9")
        token = (data / "node-token").read_text().strip()
        cred = await join(server.url, token, node_name="n9", data_dir=tmp_path / "n9")
        assert cred.token.startswith("node.n9.")
        assert await whoami(server, cred.token) == "system:node:n9"
        assert await whoami(server, "old-token-of-n9") is None
        assert await whoami(server, "old-token-of-n8") == "system:node:n8"
        assert "n9" not in (data / "pki" / "node-tokens.csv").read_text()
        # an agent of n8 whose join token no longer works keeps its old token
        (tmp_path / "n8").mkdir()
        _save(tmp_path / "n8", NodeCredential(server.url, server.ca_pem, "old-token-of-n8",
                                              "kubelet"), "n8")
        wrong = str(join_tokens.JoinToken(join_tokens.parse(token).ca_hash, "server:wrong"))
        kept = await join(server.url, wrong, node_name="n8", data_dir=tmp_path / "n8")
        assert kept.token == "old-token-of-n8"


async def test_a_taken_node_name_is_refused(api: Api, tmp_path: Path) -> None:
    await join(api.url, server_token(api), node_name="n1", data_dir=tmp_path / "a")
    with pytest.raises(JoinError, match="node name n1 is taken by another machine"):
        await join(api.url, server_token(api), node_name="n1", data_dir=tmp_path / "b")


async def test_a_wrong_token_is_refused(api: Api, tmp_path: Path) -> None:
    good = join_tokens.parse(server_token(api))
    wrong_secret = str(join_tokens.JoinToken(good.ca_hash, "server:not-the-secret"))
    with pytest.raises(JoinError, match=r"refused the join \(401\).*not valid"):
        await join(api.url, wrong_secret, node_name="n1", data_dir=tmp_path / "a")
    other_ca = str(join_tokens.JoinToken("0" * 64, good.credentials))
    with pytest.raises(JoinError, match=r"^token CA hash does not match the cluster CA "
                                        r"certificate hash$"):
        await join(api.url, other_ca, node_name="n1", data_dir=tmp_path / "b")
    assert not (tmp_path / "b" / "node.kubeconfig").exists()
    with pytest.raises(JoinError, match="K10"):
        await join(api.url, "just-a-secret", node_name="n1", data_dir=tmp_path / "c")


async def test_bootstrap_tokens_create_list_delete(api: Api, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]
                                                   ) -> None:
    api.server.write_kubeconfig()
    args: Any = type("Args", (), {"data_dir": str(api.server.data_dir), "action": "create",
                                  "ttl": 3600.0, "description": "for n2", "id": ""})
    assert await _token(args) == 0
    token = capsys.readouterr().out.strip()
    token_id = join_tokens.split_bootstrap(join_tokens.parse(token).credentials)[0]
    args.action = "list"
    assert await _token(args) == 0
    listed = capsys.readouterr().out
    assert token_id in listed and "for n2" in listed
    await eventually(lambda: api.server.registry.cache(  # the join reads the watch cache
        api.server.registry.kinds.by_kind("", "v1", "Secret")).get(
            "kube-system", join_tokens.secret_name(token_id)) is not None)
    await join(api.url, token, node_name="n2", data_dir=tmp_path / "n2")
    args.action, args.id = "delete", token_id
    assert await _token(args) == 0
    await eventually(lambda: api.server.registry.cache(
        api.server.registry.kinds.by_kind("", "v1", "Secret")).get(
            "kube-system", join_tokens.secret_name(token_id)) is None)
    with pytest.raises(JoinError, match="401"):
        await join(api.url, token, node_name="n3", data_dir=tmp_path / "n3")


async def test_an_expired_bootstrap_token_is_refused(api: Api, client: Client,
                                                     tmp_path: Path) -> None:
    token_id, secret = join_tokens.new_bootstrap_token()
    past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=2)
    await client.create(client.resource("v1", "Secret"), join_tokens.bootstrap_secret(
        token_id, secret, ttl=3600, description="", now=past), "kube-system")
    token = str(join_tokens.JoinToken(join_tokens.ca_hash(api.server.ca_pem),
                                      f"{token_id}.{secret}"))
    with pytest.raises(JoinError, match="expired"):
        await join(api.url, token, node_name="n1", data_dir=tmp_path / "n1")


async def test_node_ipam_gives_each_node_its_own_slice(client: Client,
                                                       components: ComponentRunner) -> None:
    nodes = client.resource("v1", "Node")
    await client.create(nodes, {"metadata": {"name": "own"},
                                "spec": {"podCIDR": "10.42.0.0/24"}})
    await components.start(NodeIpamController(client, components.factory))
    for name in ("a", "b", "c"):
        await client.create(nodes, {"metadata": {"name": name}})

    async def cidrs() -> dict[str, str] | None:
        items = (await client.list(nodes))["items"]
        got = {n["metadata"]["name"]: (n.get("spec") or {}).get("podCIDR") for n in items}
        return got if all(got.values()) else None
    await eventually(cidrs)
    got = await cidrs()
    assert got is not None and got["own"] == "10.42.0.0/24"
    assert sorted(got[n] for n in "abc") == ["10.42.1.0/24", "10.42.2.0/24", "10.42.3.0/24"]
    node = await client.get(nodes, "a")
    assert node["spec"]["podCIDRs"] == [node["spec"]["podCIDR"]]
    await client.delete(nodes, "b")
    await client.create(nodes, {"metadata": {"name": "d"}})

    async def d_gets_b_slice() -> bool:
        return ((await client.get(nodes, "d")).get("spec") or {}).get("podCIDR") == got["b"]
    await eventually(d_gets_b_slice)


async def test_a_server_without_a_node_advertises_the_address_it_is_told(tmp_path: Path
                                                                        ) -> None:
    """`pinnace server --advertise-address IP`: the agents' pods reach the API there."""
    from pinnace.cluster import Cluster, ClusterConfig
    async with Cluster(ClusterConfig(data_dir=tmp_path / "d", port=0, controllers=False,
                                     scheduler=False, advertise_address="127.0.0.7")
                       ) as cluster:
        endpoints = await cluster.client.get(cluster.client.resource("v1", "Endpoints"),
                                             "kubernetes", "default")
        assert endpoints["subsets"][0]["addresses"] == [{"ip": "127.0.0.7"}]
