"""Model files: weights as safetensors, with the config (JSON) and schema hash in its header.

One ``.safetensors`` file per model, written atomically (temporary file + rename). The
header metadata records the file format, the model kind, :func:`schema_hash`,
:data:`ENCODING_VERSION` and the config as JSON. Nothing is ever unpickled: the file is
parsed by safetensors, and anything else (a pickle, a ``torch.save`` archive, a truncated
or corrupted file) is refused with :class:`ModelFormatError` before any tensor is used,
as is a file for another schema, encoding or model kind, or one whose tensors do not
match the shapes its config implies.
"""

from __future__ import annotations

import json
import os
import tempfile
import typing
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as save_tensors

from feedrank.core.feature_schema import schema_hash
from feedrank.models.encoding import ENCODING_VERSION
from feedrank.models.ranker import RankerConfig, RankerModel
from feedrank.models.two_tower import TwoTowerConfig, TwoTowerModel

FILE_FORMAT = "feedrank-model/1"
MAX_HEADER_BYTES = 1 << 20  # the JSON header of a model file is a few kB

Model = TwoTowerModel | RankerModel
Config = TwoTowerConfig | RankerConfig
ModelT = TypeVar("ModelT", TwoTowerModel, RankerModel)

_CONFIG_TYPES: dict[str, type[Config]] = {
    "two_tower": TwoTowerConfig,
    "ranker": RankerConfig,
}


class ModelFormatError(ValueError):
    """A model file that is not a feedrank model this code can serve."""


@dataclass(frozen=True)
class ModelManifest:
    """What a model file says about itself (its safetensors header metadata)."""

    kind: str
    schema_hash: str
    encoding_version: int
    config: Config


def save_model(model: Model, path: Path) -> None:
    """Write ``model`` to ``path`` (atomically: readers see the old file or the new one)."""
    kind = "two_tower" if isinstance(model, TwoTowerModel) else "ranker"
    metadata = {
        "format": FILE_FORMAT,
        "kind": kind,
        "schema_hash": schema_hash(),
        "encoding_version": str(ENCODING_VERSION),
        "config": json.dumps(asdict(model.config), sort_keys=True),
    }
    state = {name: tensor.detach().contiguous() for name, tensor in model.state_dict().items()}
    payload = save_tensors(state, metadata=metadata)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(payload)
            file.flush()
            os.fsync(file.fileno())
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read_manifest(path: Path) -> ModelManifest:
    """The manifest of the model file at ``path``, checked against this code's schema."""
    _check_header_size(path)
    try:
        with safe_open(str(path), framework="pt") as file:
            metadata = file.metadata() or {}
    except (SafetensorError, OSError) as error:
        raise ModelFormatError(f"{path} is not a readable safetensors file: {error}") from error
    return _manifest(metadata, path)


def load_model(path: Path) -> Model:
    """The model stored at ``path``, in eval mode; ModelFormatError if it is not valid."""
    manifest = read_manifest(path)
    config = manifest.config
    model = TwoTowerModel(config) if isinstance(config, TwoTowerConfig) else RankerModel(config)
    expected = model.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    try:
        with safe_open(str(path), framework="pt") as file:
            _check_tensor_specs(file, expected, path)
            tensors = {name: file.get_tensor(name) for name in expected}
    except (SafetensorError, OSError) as error:
        raise ModelFormatError(f"{path}: unreadable tensors: {error}") from error
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ModelFormatError(f"{path}: tensor {name!r} holds NaN or infinite values")
    model.load_state_dict(tensors, strict=True)
    model.eval()
    return model


def load_two_tower(path: Path) -> TwoTowerModel:
    """The two-tower model at ``path``; ModelFormatError for anything else."""
    return _load_kind(path, TwoTowerModel)


def load_ranker(path: Path) -> RankerModel:
    """The ranker at ``path``; ModelFormatError for anything else."""
    return _load_kind(path, RankerModel)


def config_from_json(config_type: type[Config], text: str) -> Config:
    """A config from its JSON; ModelFormatError for unknown, missing or mistyped fields.

    Fields a config class lists in ``ADDED_FIELDS`` may be missing: files written
    before the field existed get its default, which is the behaviour they were trained
    with."""
    try:
        values = json.loads(text)
    except json.JSONDecodeError as error:
        raise ModelFormatError(f"config is not valid JSON: {error}") from error
    if not isinstance(values, dict):
        raise ModelFormatError("config JSON is not an object")
    names = {item.name for item in fields(config_type)}
    required = names - getattr(config_type, "ADDED_FIELDS", frozenset())
    if not set(values) <= names or not required <= set(values):
        raise ModelFormatError(
            f"config fields differ: unknown {sorted(set(values) - names)}, "
            f"missing {sorted(required - set(values))}"
        )
    hints = typing.get_type_hints(config_type)
    arguments = {name: _typed(name, value, hints[name]) for name, value in values.items()}
    try:
        return config_type(**arguments)
    except (TypeError, ValueError) as error:
        raise ModelFormatError(f"invalid config: {error}") from error


def _load_kind(path: Path, model_type: type[ModelT]) -> ModelT:
    model = load_model(path)
    if not isinstance(model, model_type):
        raise ModelFormatError(
            f"{path} holds a {type(model).__name__}, not a {model_type.__name__}"
        )
    return model


def _check_header_size(path: Path) -> None:
    """Refuse early what cannot be a model file (e.g. a pickle's first bytes as a length)."""
    try:
        with path.open("rb") as file:
            prefix = file.read(8)
    except OSError as error:
        raise ModelFormatError(f"cannot read {path}: {error}") from error
    if len(prefix) < 8 or int.from_bytes(prefix, "little") > MAX_HEADER_BYTES:
        raise ModelFormatError(f"{path} is not a safetensors model file (bad header length)")


def _manifest(metadata: dict[str, str], path: Path) -> ModelManifest:
    if metadata.get("format") != FILE_FORMAT:
        raise ModelFormatError(f"{path}: format {metadata.get('format')!r}, want {FILE_FORMAT!r}")
    kind = metadata.get("kind", "")
    if kind not in _CONFIG_TYPES:
        raise ModelFormatError(f"{path}: unknown model kind {kind!r}")
    if metadata.get("schema_hash") != schema_hash():
        raise ModelFormatError(
            f"{path}: trained on feature schema {metadata.get('schema_hash')!r}, "
            f"this code has {schema_hash()!r}"
        )
    if metadata.get("encoding_version") != str(ENCODING_VERSION):
        raise ModelFormatError(
            f"{path}: encoding version {metadata.get('encoding_version')!r}, "
            f"this code has {ENCODING_VERSION}"
        )
    config = config_from_json(_CONFIG_TYPES[kind], metadata.get("config", ""))
    return ModelManifest(kind, schema_hash(), ENCODING_VERSION, config)


def _check_tensor_specs(file: Any, expected: dict[str, torch.Tensor], path: Path) -> None:
    """Names, shapes and dtypes in the file must be exactly those the config implies."""
    names = set(file.keys())
    if names != set(expected):
        raise ModelFormatError(
            f"{path}: tensors differ from the config: unexpected {sorted(names - set(expected))}, "
            f"missing {sorted(set(expected) - names)}"
        )
    for name, tensor in expected.items():
        spec = file.get_slice(name)
        shape, dtype = tuple(spec.get_shape()), spec.get_dtype()
        if shape != tuple(tensor.shape) or dtype != _SAFETENSORS_DTYPES[tensor.dtype]:
            raise ModelFormatError(
                f"{path}: tensor {name!r} is {dtype}{list(shape)}, "
                f"the config needs {_SAFETENSORS_DTYPES[tensor.dtype]}{list(tensor.shape)}"
            )


_SAFETENSORS_DTYPES = {torch.float32: "F32", torch.float64: "F64", torch.int64: "I64"}


def _typed(name: str, value: object, hint: object) -> Any:
    """``value`` checked against a config field's type; JSON lists become tuples."""
    if typing.get_origin(hint) is tuple:
        if not isinstance(value, list) or not all(type(item) is int for item in value):
            raise ModelFormatError(f"config field {name!r} must be a list of integers")
        return tuple(value)
    if hint is float and type(value) in (int, float):
        return float(typing.cast(float, value))
    if hint is int and type(value) is int:
        return value
    if hint is bool and type(value) is bool:
        return value
    raise ModelFormatError(f"config field {name!r} has the wrong type: {value!r}")
