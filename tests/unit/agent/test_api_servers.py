"""The agent's API servers from the `kubernetes` Endpoints (agent/api_servers.py)."""

from __future__ import annotations

from pinnace.agent.api_servers import server_urls


def test_every_listed_address_on_the_https_port() -> None:
    endpoints = {"subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "fd00::2"}],
                              "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]},
                             {"addresses": [{"ip": "10.0.0.9"}], "ports": []}]}
    assert server_urls(endpoints) == ["https://10.0.0.1:6443", "https://[fd00::2]:6443"]
    assert server_urls({}) == []
