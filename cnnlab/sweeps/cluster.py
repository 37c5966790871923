"""Connecting to Ray: a local instance sized to this machine, or an existing cluster by address.

Policies:
- Usage statistics off unless the user set RAY_USAGE_STATS_ENABLED; no dashboard for a local Ray
  (`include_dashboard=False`); a cluster's dashboard is the cluster's business.
- A cluster address is checked before `ray.init` (which retries for a minute or more): a TCP connect
  (3 s), then one authenticated call to its GCS (token clusters: RAY_AUTH_MODE=token, the token in
  ~/.ray/auth_token, RAY_AUTH_TOKEN_PATH or RAY_AUTH_TOKEN). An unreachable address or a refused token
  is a `LabError` within seconds. Token authentication is never turned off here: when the mode is
  unset and a token exists, the mode is set to token.
- `RAY_ADDRESS` is used when no address is given; `local` forces a local instance.
"""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError

PROBE_TCP_S = 3.0
PROBE_GCS_S = 15.0


@dataclass
class RayInfo:
    """What the driver is connected to."""

    address: str | None  # None: a local Ray started by the lab
    cpus: int
    temp_dir: str | None


def ray_env_defaults() -> None:
    """Environment for Ray in this process and the processes it starts (set before importing ray)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # results go to the run store
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_RESULT_BUFFER_LENGTH", "1")  # every result reaches the driver at once
    # a local Ray's workers (the trials) train at normal priority, like the app's jobs; Ray's default
    # niceness of 15 let every other process on a busy machine starve them (trials at ~1% of a core)
    os.environ.setdefault("RAY_worker_niceness", "0")


def resolve_address(address: str | None) -> str | None:
    """The cluster to use: `address`, else RAY_ADDRESS; None (or 'local') means a local Ray."""
    addr = (address if address is not None else os.environ.get("RAY_ADDRESS", "")).strip()
    return None if addr in ("", "local") else addr


def _host_port(address: str) -> tuple[str, int]:
    rest = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError("address", f"{address!r} is not HOST:PORT (e.g. 127.0.0.1:6379)")
    return host.strip("[]"), int(port)


def _token_available() -> bool:
    if os.environ.get("RAY_AUTH_TOKEN"):
        return True
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or str(Path.home() / ".ray" / "auth_token")
    try:
        return bool(Path(path).read_text().strip())
    except OSError:
        return False


def check_cluster(address: str) -> None:
    """Fail fast (LabError) if nothing answers at `address` or its GCS refuses our token."""
    host, port = _host_port(address)
    try:
        with socket.create_connection((host, port), timeout=PROBE_TCP_S):
            pass
    except OSError as exc:
        raise ConfigError("address", f"cannot reach a Ray cluster at {host}:{port} ({exc.strerror or exc}); "
                       "is `ray start --head` running there, and is the port right?") from None
    if address.startswith("ray://"):
        return  # Ray Client: ray.init checks the rest
    if os.environ.get("RAY_AUTH_MODE") is None and _token_available():
        os.environ["RAY_AUTH_MODE"] = "token"
    outcome: dict = {}

    def probe() -> None:
        try:
            import ray._raylet as raylet

            client = raylet.GcsClient(address=f"{host}:{port}")
            client.internal_kv_get(b"cnnlab-probe", namespace=None, timeout=5)
            outcome["ok"] = True
        except Exception as exc:  # noqa: BLE001 - reported below
            outcome["error"] = exc

    t = threading.Thread(target=probe, daemon=True, name="cnnlab-ray-probe")
    t.start()
    t.join(PROBE_GCS_S)
    if outcome.get("ok"):
        return
    exc = outcome.get("error")
    if exc is None:
        raise ConfigError("address", f"{host}:{port} accepts connections but no Ray cluster answered within "
                       f"{PROBE_GCS_S:.0f} s (is it the GCS port of `ray start --head --port`?)")
    text = str(exc).split(". Ensure")[0]
    if type(exc).__name__ == "AuthenticationError" or "Unauthenticated" in text or "token" in text.lower():
        mode = os.environ.get("RAY_AUTH_MODE", "unset")
        raise ConfigError("address", f"the Ray cluster at {host}:{port} refused the authentication token ({text}). "
                       f"Set RAY_AUTH_MODE=token (now {mode}) and put the cluster's token in ~/.ray/auth_token "
                       "or RAY_AUTH_TOKEN.") from None
    raise ConfigError("address", f"the Ray cluster at {host}:{port} did not answer: {text}") from None


def connect(address: str | None, temp_dir: str | None = None, cpus: int | None = None) -> RayInfo:
    """ray.init for a sweep: a cluster at `address` (checked first) or a local Ray of `cpus` CPUs."""
    ray_env_defaults()
    addr = resolve_address(address)
    if addr is not None:
        check_cluster(addr)  # cheap when run_sweep has just checked it: the GCS answers at once
    import ray

    if ray.is_initialized():
        ray.shutdown()
    common = dict(log_to_driver=False, configure_logging=True, logging_level="WARNING")
    if addr is not None:
        try:
            ray.init(address=addr, **common)
        except Exception as exc:  # noqa: BLE001 - ConnectionError, AuthenticationError, version mismatch...
            raise ConfigError("address", f"could not connect to the Ray cluster at {addr}: {exc}") from None
    else:
        from ..jobs import cpu_cores

        temp_dir = temp_dir or os.environ.get("RAY_TMPDIR") or None
        if temp_dir:
            Path(temp_dir).mkdir(parents=True, exist_ok=True)
        # address="local": always a new instance, never a stale one found via /tmp/ray/ray_current_cluster
        ray.init(address="local", num_cpus=cpus or cpu_cores(), include_dashboard=False, _temp_dir=temp_dir,
                 object_store_memory=_object_store_bytes(), **common)
    total = int(ray.cluster_resources().get("CPU", 1))
    return RayInfo(address=addr, cpus=max(1, total), temp_dir=temp_dir)


def _object_store_bytes() -> int:
    """MNIST is ~55 MB as tensors; a local object store of 512 MiB is plenty and spares memory."""
    return 512 * 1024 * 1024


def shutdown() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()
