"""The stand-in images built by scripts/build-test-images: imported into the image store,
listed by `pinnace image ls`, and run from their unpacked layers; the nginx and perl ones
carry the Debian userland (sh, bash, GNU coreutils and tar, ...) the real images have.

Each command runs the way a container's root filesystem will be made: an overlay mount of
the unpacked layer (plus an empty upper dir) with /dev and /proc, in a private mount
namespace (`unshare --mount`) so every mount vanishes with the process, then `chroot`.
Needs root, apt and a reachable Debian mirror (the build takes a few seconds).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from pinnace.agent.images import ImageStore
from pinnace.agent.images.command import main as image_command

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("apt-get") is None or shutil.which("unshare") is None,
    reason="needs root, apt-get and unshare")

IMAGES = {"busybox:1.28": "busybox_1.28.tar", "nginx:1.19": "nginx_1.19.tar",
          "perl:5.34.0": "perl_5.34.0.tar"}
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# mounts the overlay rootfs with /dev and /proc inside a private mount namespace, then chroots
_IN_ROOTFS = ('mount -t overlay overlay -o "lowerdir=$0,upperdir=$1/upper,workdir=$1/work" '
              '"$1/merged" && mount --bind /dev "$1/merged/dev" && '
              'mount -t proc proc "$1/merged/proc" && shift && exec chroot "$MERGED" "$@"')


@pytest.fixture(scope="module")
def built(test_images: Path) -> Path:
    return test_images


@pytest.fixture(scope="module")
def store(built: Path, tmp_path_factory: pytest.TempPathFactory) -> ImageStore:
    data = tmp_path_factory.mktemp("data")
    status = image_command(["import", "--data-dir", str(data),
                            *(str(built / f) for f in IMAGES.values())])
    assert status == 0
    return ImageStore(data)


def run_in(store: ImageStore, ref: str, tmp_path: Path, *cmd: str) -> subprocess.CompletedProcess:
    lowerdir = ":".join(str(p) for p in reversed(store.unpacked_layers(ref)))
    for d in ("upper/dev", "upper/proc", "work", "merged"):
        (tmp_path / d).mkdir(parents=True)
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", _IN_ROOTFS,
         lowerdir, str(tmp_path), *cmd],
        env={"PATH": PATH, "MERGED": str(tmp_path / "merged")},
        capture_output=True, text=True, timeout=60)


def test_the_build_is_deterministic_and_the_archives_are_oci_and_docker(built: Path) -> None:
    for ref, name in IMAGES.items():
        with tarfile.open(built / name) as tar:
            members = set(tar.getnames())
            assert {"oci-layout", "index.json", "manifest.json"} <= members
            index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
            docker = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        annotations = index["manifests"][0]["annotations"]
        full = f"docker.io/library/{ref}"
        assert annotations["io.containerd.image.name"] == full
        assert annotations["org.opencontainers.image.ref.name"] == full
        assert docker[0]["RepoTags"] == [ref]
        assert len(docker[0]["Layers"]) == 1


def test_images_are_listed(store: ImageStore, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert image_command(["ls", "--data-dir", str(store.root.parent)]) == 0
    rows = [line.split()[:2] for line in capsys.readouterr().out.splitlines()[1:]]
    assert rows == [["docker.io/library/busybox", "1.28"], ["docker.io/library/nginx", "1.19"],
                    ["docker.io/library/perl", "5.34.0"]]
    nginx = store.resolve("nginx:1.19")
    assert nginx.cmd == ["nginx", "-g", "daemon off;"]
    assert nginx.exposed_ports == ["80/tcp"] and nginx.stop_signal == "SIGQUIT"
    assert store.resolve("busybox:1.28").cmd == ["sh"]
    assert store.resolve("perl:5.34.0").env == [f"PATH={PATH}"]


def pi_digits(n: int) -> str:
    """π to `n` significant digits (truncated), by Machin's formula in integers."""
    scale = 10 ** (n + 10)

    def arctan_inv(x: int) -> int:
        total, term, k, sign = 0, scale // x, 1, 1
        while term:
            total += sign * term // k
            term //= x * x
            k += 2
            sign = -sign
        return total

    pi = 4 * (4 * arctan_inv(5) - arctan_inv(239)) // 10 ** 10
    text = str(pi)[:n]
    return f"{text[0]}.{text[1:]}"


def test_busybox_runs(store: ImageStore, tmp_path: Path) -> None:
    result = run_in(store, "busybox:1.28", tmp_path, "/bin/sh", "-c",
                    "echo ok; id -un; stat -c %a /tmp")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["ok", "root", "1777"]


def test_perl_computes_2000_digits_of_pi(store: ImageStore, tmp_path: Path) -> None:
    result = run_in(store, "perl:5.34.0", tmp_path, "perl", "-Mbignum=bpi", "-wle",
                    "print bpi(2000)")
    assert result.returncode == 0, result.stderr
    digits = result.stdout.strip()
    assert digits.startswith("3.14159265358979323846") and len(digits) == 2001
    # bpi rounds its last digit: compare the 1999 before it with Machin's formula
    assert digits[:-1] == pi_digits(1999)


def test_nginx_config_is_valid(store: ImageStore, tmp_path: Path) -> None:
    result = run_in(store, "nginx:1.19", tmp_path, "nginx", "-t")
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


# What the real (Debian-based) nginx and perl images carry and kubectl relies on: `kubectl cp`
# runs GNU tar in the container, `kubectl exec -- cat ...` needs cat, scripts need sh and bash
_USERLAND_CHECK = """
set -e
readlink /bin/sh
tar --version | head -n 1
bash -c 'echo "bash $BASH_VERSION"' | cut -d. -f1
ls --version | head -n 1
grep --version | head -n 1
sed --version | head -n 1
find --version | head -n 1
echo squeezed | gzip | gzip -d
echo 'a b' | awk '{ print $2 }'
which tar
cat /etc/os-release | grep -c '^ID=debian$'
test -e /lib/terminfo/x/xterm && test -s /etc/profile && test -s /root/.bashrc
grep -x /bin/bash /etc/shells
"""


@pytest.mark.parametrize("ref", ["nginx:1.19", "perl:5.34.0"])
def test_nginx_and_perl_carry_a_debian_userland(store: ImageStore, tmp_path: Path,
                                                ref: str) -> None:
    result = run_in(store, ref, tmp_path, "/bin/sh", "-c", _USERLAND_CHECK)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "dash"
    assert lines[1].startswith("tar (GNU tar) ")
    assert lines[2] == "bash 5"
    assert lines[3].startswith("ls (GNU coreutils) ")
    assert lines[4].startswith("grep (GNU grep) ") and lines[5].startswith("sed (GNU sed) ")
    assert lines[6].startswith("find (GNU findutils) ")
    assert lines[7:] == ["squeezed", "b", "/bin/tar", "1", "/bin/bash"]


def test_tar_round_trip_the_way_kubectl_cp_does(store: ImageStore, tmp_path: Path) -> None:
    # kubectl cp into a pod pipes a tar to `tar -xmf - -C DIR`, out of one `tar cf - FILE`
    script = ("mkdir -p /in /out && printf 'line\\n\\001\\377' > /in/data && "
              "tar cf - -C /in data | tar -xmf - -C /out && cmp /in/data /out/data && "
              "stat -c %s /out/data")
    result = run_in(store, "nginx:1.19", tmp_path, "/bin/bash", "-c", script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "7"
