"""`--lb-pool` of `pinnace up`/`server`: the LoadBalancer controller's pool, a network."""

from __future__ import annotations

from typing import Any

import pytest

from pinnace.cli import _config, _parser


def test_lb_pool_flag(tmp_path: Any, capsys: Any) -> None:
    args = _parser().parse_args(["server", "--data-dir", str(tmp_path), "--lb-pool",
                                 "192.168.50.0/28"])
    assert _config(args).controller_settings.lb_pool == "192.168.50.0/28"
    default = _parser().parse_args(["server", "--data-dir", str(tmp_path)])
    assert _config(default).controller_settings.lb_pool == "127.240.0.0/16"
    with pytest.raises(SystemExit):
        _parser().parse_args(["up", "--lb-pool", "127.240.0.1/16"])  # host bits set
    assert "argument --lb-pool: 127.240.0.1/16 has host bits set" in capsys.readouterr().err
