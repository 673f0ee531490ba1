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
from feedrank.registry.replica import ReplicaRegistry, VersionFetch
from feedrank.registry.transfer import (
    CHUNK_BYTES,
    FileChunk,
    TransferRefusedError,
    VersionHeader,
    VersionPart,
    VersionUnavailableError,
    version_parts,
)

__all__ = [
    "CHUNK_BYTES",
    "FileChunk",
    "FileDigest",
    "LocalModelRegistry",
    "ModelBundle",
    "ModelRegistry",
    "RegistryError",
    "ReplicaRegistry",
    "TrainingData",
    "TransferRefusedError",
    "VersionFetch",
    "VersionHeader",
    "VersionManifest",
    "VersionNotFoundError",
    "VersionPart",
    "VersionRefusedError",
    "VersionUnavailableError",
    "read_bundle",
    "version_parts",
    "write_bundle",
]
