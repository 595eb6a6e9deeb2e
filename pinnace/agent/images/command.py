"""`pinnace image import|pull|ls|rm`: the node's image store from the command line.

Output follows `crictl images`: one line per name with repository, tag, image id (12 hex
digits of the config digest) and size. `pull` uses the mirrors of DIR/registries.yaml and
prints the name, image id and digest. Exit status 1 with a message on stderr when the store or
the registry refuses (unknown image, bad archive, digest mismatch).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from pinnace.agent.images.errors import ImageError
from pinnace.agent.images.pull import pull_image
from pinnace.agent.images.reference import parse
from pinnace.agent.images.registries import load_registries
from pinnace.agent.images.store import ImageInfo, ImageStore


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pinnace image",
                                     description="manage the images of this node")
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser("import", help="import an OCI or docker archive")
    p.add_argument("file", nargs="+", help="archive (.tar, also gzip-compressed)")
    p = sub.add_parser("pull", help="pull an image from its registry (or a mirror)")
    p.add_argument("ref", nargs="+", help="image reference, e.g. busybox:1.28")
    p = sub.add_parser("ls", help="list images")
    p.add_argument("-q", "--quiet", action="store_true", help="print image ids only")
    p = sub.add_parser("rm", help="remove an image name, or an image by digest or id")
    p.add_argument("ref", nargs="+")
    for p in sub.choices.values():
        p.add_argument("--data-dir", required=True, help="the node's data directory")
    return parser


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1000  # type: ignore[assignment]
    return str(n)


def _rows(images: list[ImageInfo]) -> list[tuple[str, str, str, str]]:
    rows = []
    for image in images:
        short_id = image.id.removeprefix("sha256:")[:12]
        for name in image.names or ["<none>"]:
            if name == "<none>":
                repo, tag = "<none>", "<none>"
            else:
                ref = parse(name)
                repo, tag = ref.repository, ref.tag or "<none>"
            rows.append((repo, tag, short_id, _size(image.size)))
    return sorted(rows)


def _print_table(rows: list[tuple[str, str, str, str]]) -> None:
    header = ("IMAGE", "TAG", "IMAGE ID", "SIZE")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    for row in [header, *rows]:
        print("   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def main(argv: list[str]) -> int:
    """Run `pinnace image ARGV…`; returns the exit status."""
    args = _parser().parse_args(argv)
    store = ImageStore(args.data_dir)
    try:
        if args.action == "import":
            for path in args.file:
                for image in store.import_archive(path):
                    names = ", ".join(image.names) or "<untagged>"
                    print(f"imported {names} ({image.digest})")
        elif args.action == "pull":
            registries = load_registries(args.data_dir)
            for ref in args.ref:
                image = asyncio.run(pull_image(store, ref, registries=registries))
                print(f"pulled {', '.join(image.names) or ref}: id {image.id}, "
                      f"digest {image.digest}")
        elif args.action == "ls":
            images = store.list()
            if args.quiet:
                for image in images:
                    print(image.id)
            else:
                _print_table(_rows(images))
        else:
            for ref in args.ref:
                removed = store.remove(ref)
                print(f"deleted {', '.join(removed) or ref}")
    except (ImageError, OSError) as e:
        print(f"pinnace image: {e}", file=sys.stderr)
        return 1
    return 0
