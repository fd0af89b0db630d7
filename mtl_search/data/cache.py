"""A cache of parsed data files, so that a file is parsed once, not by every process.

Every ``--workers`` process, ``refine`` and ``export --retrain`` loads the study's data
again; parsing a CSV or the census file (pandas, category codes, standardising) costs
seconds each time. The parsed splits are kept in one safetensors file per entry, named by a
SHA-256 key of everything the result depends on: the source, its options and task
declarations, the file's path, size and SHA-256 of its content, and the code that parses it
(``mtl_search/data/*.py``, ``mtl_search/tasks.py``). A changed file or option is another key.

Folder: ``$MTL_SEARCH_CACHE`` (``off`` turns the cache off), else ``$XDG_CACHE_HOME/mtl-search``,
else ``~/.cache/mtl-search``; entries lie in its ``data/`` folder and may be deleted at any time.

An entry holds tensors and JSON text only, nothing that is unpickled, and is never trusted:
its key and a SHA-256 of its tensors are checked on every read, and an entry that does not
match or cannot be read is parsed again and replaced, with a one-line note on stderr. Only a
source read from a single data file is cached (not a table described by a YAML file, whose
table file is named inside it). Warnings about the data are shown when the file is parsed,
not again on a cache hit.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch

from mtl_search.data.base import MultiTaskData, Split
from mtl_search.tasks import Task

CACHE_ENV = "MTL_SEARCH_CACHE"
FORMAT = 1  # of an entry's layout; a new layout makes new keys
SPLITS = ("train", "validation", "test")
DESCRIPTION_SUFFIXES = (".yaml", ".yml")

# what this process's loads did: read from the cache, stored into it, entries found unusable
counts = {"hits": 0, "stored": 0, "rejected": 0}


class _Unusable(Exception):
    """An entry that cannot be used; the message says why."""


def cache_folder() -> Path | None:
    """Where entries go, or None when ``$MTL_SEARCH_CACHE`` is ``off``."""
    setting = os.environ.get(CACHE_ENV, "").strip()
    if setting.lower() == "off":
        return None
    if setting:
        return Path(setting).expanduser() / "data"
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or Path.home() / ".cache"
    return Path(base) / "mtl-search" / "data"


def cached_load(
    source: str,
    options: dict[str, Any],
    data_file: str | None,
    declarations: list[str],
    parse: Callable[[], MultiTaskData],
) -> MultiTaskData:
    """``parse()``'s data, from the cache when an entry for exactly these inputs is there."""
    folder = cache_folder()
    if folder is None or not _cacheable(options, data_file):
        return parse()
    key = entry_key(source, options, Path(str(data_file)), declarations)
    path = folder / f"{key}.safetensors"
    if path.exists():
        try:
            data = read_entry(path, key)
        except _Unusable as reason:
            counts["rejected"] += 1
            print(
                f"mtl-search: note: data cache entry {path} is unusable ({reason}); parsing {data_file} again",
                file=sys.stderr,
            )
        else:
            counts["hits"] += 1
            return data
    data = parse()
    if data.train.mapped is not None:  # a streamed table has its own entry on disk (data/streamed.py)
        return data
    if write_entry(path, key, data):
        counts["stored"] += 1
    return data


def _cacheable(options: dict[str, Any], data_file: str | None) -> bool:
    if not data_file or "description" in options or Path(data_file).suffix.lower() in DESCRIPTION_SUFFIXES:
        return False
    return Path(data_file).is_file()  # a missing file is the loader's error to report


def entry_key(source: str, options: dict[str, Any], data_file: Path, declarations: list[str]) -> str:
    digest, size = _file_digest(data_file)
    inputs = {
        "format": FORMAT,
        "code": _code_digest(),
        "source": source,
        "options": {str(k): str(v) for k, v in sorted(options.items())},
        "tasks": list(declarations),
        "file": str(data_file.resolve()),
        "bytes": size,
        "sha256": digest,
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def _file_digest(path: Path) -> tuple[str, int]:
    """The file's SHA-256 and size, read once a process while the file's size and time are unchanged."""
    status = path.stat()
    return _digest_of(str(path.resolve()), status.st_size, status.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _digest_of(path: str, size_now: int, modified: int) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


@functools.lru_cache(maxsize=1)
def _code_digest() -> str:
    """The parsing code's SHA-256: an entry made by other code is not read back."""
    package = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted((package / "data").glob("*.py")) + [package / "tasks.py"]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _tensor_digest(tensors: list[tuple[str, torch.Tensor]]) -> str:
    digest = hashlib.sha256()
    for name, tensor in tensors:
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}\0".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
    return digest.hexdigest()


def write_entry(path: Path, key: str, data: MultiTaskData) -> bool:
    """Store ``data`` under ``key`` (written aside, then moved in place); False if it could not be."""
    from safetensors.torch import save_file

    layout, tensors = [], []
    for split_name in SPLITS:
        split = getattr(data, split_name)
        for part in ("inputs", "targets"):
            for name, tensor in getattr(split, part).items():
                layout.append([split_name, part, name])
                tensors.append((str(len(tensors)), tensor.detach().cpu().contiguous()))
    manifest = {
        "name": data.name,
        "tasks": [task.to_dict() for task in data.tasks],
        "input_schema": data.input_schema,
        "description": data.description,
        "preprocessing": data.preprocessing,
        "layout": layout,
    }
    metadata = {"key": key, "format": str(FORMAT), "manifest": json.dumps(manifest), "tensors": _tensor_digest(tensors)}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".part")
        os.close(handle)
        try:
            save_file({name: tensor.clone() for name, tensor in tensors}, temporary, metadata=metadata)
            os.replace(temporary, path)  # readers see the old entry or the whole new one
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)
    except (OSError, ValueError, TypeError, RuntimeError):
        return False  # a read-only or full cache folder must not stop a run
    return True


def read_entry(path: Path, key: str) -> MultiTaskData:
    """The data stored at ``path``; :class:`_Unusable` unless its key and tensors check out."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as entry:
            metadata = entry.metadata() or {}
            tensors = [(name, entry.get_tensor(name)) for name in sorted(entry.keys(), key=int)]
    except Exception as error:  # safetensors raises its own errors on a damaged header or payload
        raise _Unusable(f"cannot be read: {' '.join(str(error).split())[:120]}") from None
    if metadata.get("key") != key or metadata.get("format") != str(FORMAT):
        raise _Unusable("made for other inputs")
    if _tensor_digest(tensors) != metadata.get("tensors"):
        raise _Unusable("its tensors do not match their SHA-256")
    try:
        manifest = json.loads(metadata["manifest"])
        splits: dict[str, Split] = {name: Split(inputs={}, targets={}) for name in SPLITS}
        for (split_name, part, name), (_, tensor) in zip(manifest["layout"], tensors, strict=True):
            getattr(splits[split_name], part)[name] = tensor
        return MultiTaskData(
            name=manifest["name"],
            tasks=[Task.from_dict(task) for task in manifest["tasks"]],
            train=splits["train"],
            validation=splits["validation"],
            test=splits["test"],
            input_schema=manifest["input_schema"],
            description=manifest["description"],
            preprocessing=manifest["preprocessing"],
        )
    except (KeyError, TypeError, ValueError) as error:
        raise _Unusable(f"its manifest is malformed ({type(error).__name__})") from None
