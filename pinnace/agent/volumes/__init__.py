"""Pod volumes of the node agent, laid out and updated as the kubelet does it.

    vm = VolumeManager(client, pods_dir=data_dir / "pods", node_name=node)
    vols = await vm.setup(pod)                  # every sync; VolumeError -> FailedMount Event
    mounts = vm.mounts(container, vols)         # ContainerConfig.mounts
    await vm.refresh(pod)                       # ~10 s: configMap/secret/... updates
    await vm.teardown(pod_uid); await vm.cleanup_all()

One module per volume type; `atomic_writer` is the kubelet's `..data` symlink swap;
`host` holds the mount and removal primitives.
"""

from pinnace.agent.volumes.errors import VolumeError
from pinnace.agent.volumes.manager import PreparedVolume, VolumeManager

__all__ = ["PreparedVolume", "VolumeError", "VolumeManager"]
