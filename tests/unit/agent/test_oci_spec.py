"""The pure parts of the runc backend: argv, env and user rules, and the spec's shape."""

from __future__ import annotations

import pytest

from pinnace.agent.runtime import Mount, oci_spec


@pytest.mark.parametrize(("command", "args", "expected"), [
    ([], [], ["/entry", "cmd"]),
    ([], ["a"], ["/entry", "a"]),
    (["run"], [], ["run"]),  # command drops the image's Cmd
    (["run"], ["x"], ["run", "x"]),
])
def test_process_args_follow_kubernetes(command: list[str], args: list[str],
                                        expected: list[str]) -> None:
    assert oci_spec.process_args(entrypoint=["/entry"], cmd=["cmd"], command=command,
                                 args=args) == expected


def test_env_container_overrides_image_and_path_defaults() -> None:
    env = oci_spec.merge_env(["A=1", "B=x=y"], {"A": "2"}, "pod")
    assert env == ["A=2", "B=x=y", f"PATH={oci_spec.DEFAULT_PATH}", "HOSTNAME=pod"]
    assert oci_spec.merge_env(["PATH=/bin"], {}, "p")[0] == "PATH=/bin"


PASSWD = "root:x:0:0::/root:/bin/sh\nnginx:x:101:102::/var/www:/bin/false\n"
GROUP = "root:x:0:\nwww:x:33:\n"


@pytest.mark.parametrize(("user", "expected"), [
    ("", (0, 0)), ("1000", (1000, 0)), ("1000:5", (1000, 5)), ("nginx", (101, 102)),
    ("nginx:www", (101, 33)), ("101", (101, 102)),
])
def test_parse_user(user: str, expected: tuple[int, int]) -> None:
    assert oci_spec.parse_user(user, PASSWD, GROUP) == expected


def test_unknown_user_is_an_error() -> None:
    with pytest.raises(ValueError, match="ghost"):
        oci_spec.parse_user("ghost", PASSWD, GROUP)


def test_spec_shape() -> None:
    spec = oci_spec.build_spec(oci_spec.SpecInput(
        rootfs="/r", args=["sh"], env=["A=1"], cwd="", uid=0, gid=0, hostname="pod",
        netns_path="/run/netns/x", cgroups_path="/pinnace/h/podu/c", memory_limit=33554432,
        mounts=[Mount("/host/data", "/data", readonly=True)]))
    process = spec["process"]
    assert process["terminal"] is False and process["cwd"] == "/"
    assert "CAP_SYS_ADMIN" not in process["capabilities"]["bounding"]
    assert "CAP_NET_BIND_SERVICE" in process["capabilities"]["effective"]
    assert process["rlimits"][0]["hard"] == 1048576
    linux = spec["linux"]
    assert {"type": "network", "path": "/run/netns/x"} in linux["namespaces"]
    assert {n["type"] for n in linux["namespaces"]} == {"pid", "ipc", "uts", "mount", "network"}
    assert linux["cgroupsPath"] == "/pinnace/h/podu/c"
    assert linux["resources"]["memory"]["limit"] == 33554432
    by_dest = {m["destination"]: m for m in spec["mounts"]}
    assert "ro" in by_dest["/sys"]["options"] and by_dest["/proc"]["type"] == "proc"
    assert by_dest["/data"]["source"] == "/host/data" and "ro" in by_dest["/data"]["options"]
    assert spec["root"] == {"path": "/r", "readonly": False} and spec["hostname"] == "pod"


def _spec(**kw: object) -> dict:
    return oci_spec.build_spec(oci_spec.SpecInput(
        rootfs="/r", args=["sh"], env=[], cwd="/", uid=0, gid=0, hostname="p",
        netns_path="/run/netns/x", cgroups_path="/c", **kw))  # type: ignore[arg-type]


def test_security_context_capabilities() -> None:
    caps = _spec(drop_capabilities=("ALL",), add_capabilities=("NET_ADMIN",))
    assert caps["process"]["capabilities"]["bounding"] == ["CAP_NET_ADMIN"]
    dropped = _spec(drop_capabilities=("chown", "CAP_KILL"))["process"]["capabilities"]
    assert "CAP_CHOWN" not in dropped["effective"] and "CAP_KILL" not in dropped["effective"]
    assert "CAP_SETUID" in dropped["effective"]
    privileged = _spec(privileged=True)
    assert "CAP_SYS_ADMIN" in privileged["process"]["capabilities"]["bounding"]
    assert privileged["linux"]["maskedPaths"] == []
    assert privileged["linux"]["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    assert "ro" not in {m["destination"]: m for m in privileged["mounts"]}["/sys"]["options"]


def test_read_only_root_no_new_privileges_groups_and_cpu_quota() -> None:
    spec = _spec(read_only_root=True, no_new_privileges=True, additional_gids=(5, 7),
                 cpu_limit_millis=250)
    assert spec["root"]["readonly"] is True
    assert spec["process"]["noNewPrivileges"] is True
    assert spec["process"]["user"]["additionalGids"] == [5, 7]
    # 250m: a quarter of each 100 ms period, as kubelet writes cpu.cfs_quota_us
    assert spec["linux"]["resources"]["cpu"] == {"quota": 25000, "period": 100000}
    assert _spec(cpu_limit_millis=1)["linux"]["resources"]["cpu"]["quota"] == 1000
