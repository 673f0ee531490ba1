"""The model registry shared by the learners (publish), deploy (roll out) and explore (serve)."""

from feedrank.registry.bundle import ModelBundle, read_bundle, write_bundle
from feedrank.registry.local import LocalModelRegistry, ModelRegistry
from feedrank.registry.manifest import (
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
