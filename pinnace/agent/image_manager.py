"""The kubelet's image manager: make a container's image present per its imagePullPolicy.

`ensure(pod, container)` returns None once the image is in the node's store, or the
(reason, message) the container waits with: `ErrImagePull` for a pull that just failed,
`ImagePullBackOff` while the next attempt is held back (10 s doubling to 5 min per image,
like kubelet's image backoff), `ErrImageNeverPull` for policy Never without the image.
It records the Events kubelet records (Pulling, Pulled, Failed, BackOff), worded alike.

Pull credentials come from the pod's `imagePullSecrets`, read through the API at pull
time. Mirrors come from `DATA_DIR/registries.yaml`, read once per pull so an edit takes
effect without a restart.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from pinnace.agent.images import ImageError, ImageStore
from pinnace.agent.images.pull import credentials_from_pull_secrets, pull_image
from pinnace.agent.images.registries import load_registries
from pinnace.api import errors
from pinnace.api.backoff import Backoff
from pinnace.api.timestamps import go_duration
from pinnace.api.types import Obj
from pinnace.client.client import Client

Recorder = Callable[[str, str, str], Awaitable[None]]  # (type, reason, message)

BACKOFF_BASE = 10.0
BACKOFF_MAX = 300.0


@dataclass
class _PullBackoff(Backoff):
    message: str = ""  # the last pull's error, repeated while the next one is held back


class ImageManager:
    def __init__(self, client: Client, store: ImageStore, *, data_dir: str | Path) -> None:
        """`store` is the node's one image store, the runtime's too; `data_dir` holds
        registries.yaml."""
        self.client = client
        self.data_dir = Path(data_dir)
        self.store = store
        self._backoff: dict[str, _PullBackoff] = {}
        self._secrets = client.resource("v1", "Secret")

    def present(self, image: str) -> bool:
        try:
            self.store.resolve(image)
            return True
        except ImageError:
            return False

    async def ensure(self, pod: Obj, container: Obj, record: Recorder
                     ) -> tuple[str, str] | None:
        image = str(container.get("image", ""))
        # the API server defaulted it (Always for :latest or no tag, else IfNotPresent)
        policy = container.get("imagePullPolicy") or "IfNotPresent"
        if policy != "Always" and self.present(image):
            if policy == "IfNotPresent" or policy == "Never":
                await record("Normal", "Pulled",
                             f'Container image "{image}" already present on machine')
                return None
        if policy == "Never":
            message = (f'Container image "{image}" is not present with pull policy of Never')
            await record("Warning", "ErrImageNeverPull", message)
            return "ErrImageNeverPull", message
        b = self._backoff.get(image)
        now = time.time()
        if b is not None and now < b.until:
            await record("Normal", "BackOff", f'Back-off pulling image "{image}"')
            return "ImagePullBackOff", f'Back-off pulling image "{image}": {b.message}'
        await record("Normal", "Pulling", f'Pulling image "{image}"')
        started = time.monotonic()
        try:
            credentials = credentials_from_pull_secrets(await self._pull_secrets(pod))
            info = await pull_image(self.store, image, registries=load_registries(self.data_dir),
                                    credentials=credentials)
        except (ImageError, OSError, ValueError) as e:
            message = str(e)
            b = self._backoff.setdefault(image, _PullBackoff(BACKOFF_BASE, BACKOFF_MAX))
            b.fail(time.time())
            b.message = message
            await record("Warning", "Failed", f'Failed to pull image "{image}": {message}')
            await record("Warning", "Failed", "Error: ErrImagePull")
            return "ErrImagePull", message
        self._backoff.pop(image, None)
        took = go_duration(time.monotonic() - started)
        await record("Normal", "Pulled",
                     f'Successfully pulled image "{image}" in {took} ({took} including '
                     f"waiting). Image size: {info.size} bytes.")
        return None

    def retry_in(self, image: str) -> float:
        """Seconds until a held-back pull of `image` may run again (0: now)."""
        b = self._backoff.get(image)
        return b.remaining(time.time()) if b else 0.0

    async def _pull_secrets(self, pod: Obj) -> list[Obj]:
        out = []
        ns = pod["metadata"].get("namespace", "default")
        for ref in (pod.get("spec") or {}).get("imagePullSecrets") or []:
            name = ref.get("name")
            if not name:
                continue
            try:
                out.append(await self.client.get(self._secrets, name, ns))
            except errors.ApiError as e:
                if e.code != 404:  # a missing pull secret is skipped, as kubelet does
                    raise
        return out

