"""Ray cluster addresses, checked before any work: shared by the Tune search and the LLM side's scale-out."""

from __future__ import annotations

import socket

from recbole_hnlm.errors import ClusterUnreachableError, ConfigurationError


def check_ray_address(address: str, timeout_s: float) -> None:
    """Fail fast, naming ``address``, where nothing answers there (``auto`` is checked by Ray itself)."""
    if address == "auto":
        return
    host, separator, port = address.removeprefix("ray://").rpartition(":")
    if not separator or not host or not port.isdigit():
        raise ConfigurationError(
            f"--ray_address={address!r} is not host:port. Fix: e.g. --ray_address=10.0.0.5:6379 on a node of the "
            "cluster, --ray_address=ray://10.0.0.5:10001 from outside it, or --ray_address=auto."
        )
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as error:
        raise ClusterUnreachableError(
            f"No Ray cluster answers at {address} ({error or 'no answer'} within {timeout_s:g} s). Fix: start one "
            "there (`ray start --head` prints its address), check the host and port, or leave --ray_address out "
            "to run on this machine."
        ) from None
