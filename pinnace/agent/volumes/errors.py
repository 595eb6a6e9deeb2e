"""The one error the volume manager raises: `VolumeError(reason, message)`.

`reason` is the Event reason the pod worker records (FailedMount for anything
`setup` meets; CreateContainerConfigError for a volumeMount that cannot be
honoured), `message` is worded as the kubelet words it, so users see the same
text `kubectl describe pod` shows on Kubernetes.
"""

from __future__ import annotations

FAILED_MOUNT = "FailedMount"
CREATE_CONTAINER_CONFIG_ERROR = "CreateContainerConfigError"


class VolumeError(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def setup_failed(volume: str, cause: str) -> VolumeError:
    """The kubelet's operation-generator wording for a failed SetUp."""
    return VolumeError(FAILED_MOUNT, f'MountVolume.SetUp failed for volume "{volume}" : {cause}')


class SetUpError(Exception):
    """Raised by a volume type with the cause only; the manager adds the volume name."""
