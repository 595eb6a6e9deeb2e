"""Rank a py-spy collapsed-stack profile (`py-spy record --format raw`) as text.

    python -m bench.profile FILE [--top 30] [--under FUNCTION]

Two tables: functions by self time (the frame on top of the stack) and by total
time (anywhere on the stack), each as a share of all samples, so a profile can be
read, quoted in a note and compared without a browser. `--under` keeps only the
stacks that pass through a function whose frame contains that text (e.g.
`find_node`, `binding`).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

# py-spy frames read "function (module/path.py:line)"; the line number differs per sample
_LINE = re.compile(r":\d+\)$")


def read(path: Path, under: str = "") -> tuple[Counter[str], Counter[str], int]:
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [_LINE.sub(")", f) for f in stack.split(";")]
        if under and not any(under in f for f in frames):
            continue
        n = int(count)
        samples += n
        own[frames[-1]] += n
        for f in set(frames):
            total[f] += n
    return own, total, samples


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--under", default="")
    args = parser.parse_args()
    own, total, samples = read(args.file, args.under)
    for title, table in (("self", own), ("total", total)):
        print(f"{title:>6} %  function ({samples} samples)")
        for frame, n in table.most_common(args.top):
            print(f"{100 * n / max(samples, 1):>8.1f}  {frame[:150]}")
        print()


if __name__ == "__main__":
    main()
