"""Benchmark the SQLite store on a temporary file: one table of operations per second.

Run from the repository root: python -m bench.store [N]   (N keys, default 5000)
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable

from bench._common import in_parallel, print_table
from pinnace.store import open_sqlite

VALUE = b'{"kind":"Pod","metadata":{"name":"x"},"spec":{}}' * 20  # ~1 KB, like a small pod


async def rate(count: int, op: Callable[[int], Awaitable[object]]) -> float:
    start = time.perf_counter()
    for i in range(count):
        await op(i)
    return count / (time.perf_counter() - start)


async def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = await open_sqlite(f"{tmp}/state.db", compact_interval=3600)
        revisions: dict[int, int] = {}

        async def create(i: int) -> None:
            revisions[i] = (await store.create(f"/pods/ns/{i:06d}", VALUE)).mod_revision

        async def update(i: int) -> None:
            key = f"/pods/ns/{i:06d}"
            revisions[i] = (await store.update(key, VALUE, revisions[i])).mod_revision

        async def get(i: int) -> None:
            await store.get(f"/pods/ns/{i:06d}")

        # 1000 keys under their own prefix, amid the n others.
        for i in range(1000):
            await store.create(f"/svc/ns/{i:04d}", VALUE)

        async def range_1000(_: int) -> None:
            kvs, _rev = await store.range("/svc/ns/")
            assert len(kvs) == 1000

        async def create_together(i: int) -> None:
            await store.create(f"/together/ns/{i:06d}", VALUE)

        start = time.perf_counter()
        await in_parallel(n, create_together, concurrency=16)
        together = n / (time.perf_counter() - start)

        rows = [
            ("create", n, await rate(n, create)),
            ("create, 16 at once", n, together),
            ("update (CAS)", n, await rate(n, update)),
            ("get", n, await rate(n, get)),
            ("range of 1000 keys", 50, await rate(50, range_1000)),
        ]
        await store.close()

    print_table(["operation", "count", "per second"],
                [(name, count, f"{per_second:,.0f}") for name, count, per_second in rows])


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 5000))
