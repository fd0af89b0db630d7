"""Serving optuna-dashboard on a study storage with the trials' artifact store attached."""

from __future__ import annotations

import errno
import socket
from pathlib import Path

import optuna

from mtl_search.errors import UserError


def check_port_free(host: str, port: int) -> None:
    """A UserError naming the port when the address cannot be bound (in use, or not ours)."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((host, port))
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise UserError(f"--port {port}: already in use on {host} (choose another --port)") from None
        raise UserError(f"--host {host} --port {port}: cannot listen there ({error.strerror or error})") from None


def serve(storage: optuna.storages.BaseStorage, host: str, port: int, artifact_dir: Path | None) -> None:
    """Run the dashboard until interrupted (blocks)."""
    from optuna_dashboard import run_server

    store = (
        optuna.artifacts.FileSystemArtifactStore(artifact_dir)
        if artifact_dir is not None and artifact_dir.is_dir()
        else None
    )
    check_port_free(host, port)
    run_server(storage, host=host, port=port, artifact_store=store)
