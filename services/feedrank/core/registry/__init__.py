"""The model registry shared by the learners (publish), deploy (roll out) and explore (serve)."""

from feedrank.core.registry.bundle import ModelBundle, read_bundle, write_bundle
from feedrank.core.registry.local import LocalModelRegistry, ModelRegistry
from feedrank.core.registry.manifest import (
    FileDigest,
    RegistryError,
    TrainingData,
    VersionManifest,
    VersionNotFoundError,
    VersionRefusedError,
)

__all__ = [
    "FileDigest",
    "LocalModelRegistry",
    "ModelBundle",
    "ModelRegistry",
    "RegistryError",
    "TrainingData",
    "VersionManifest",
    "VersionNotFoundError",
    "VersionRefusedError",
    "read_bundle",
    "write_bundle",
]
