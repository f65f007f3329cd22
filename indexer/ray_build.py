"""Embedding a build's passages on a Ray cluster (``semindex build --ray ADDRESS``).

The driver discovers, reads, links and cuts passages as a local build does, and writes the
generation itself; only embedding, nearly all of a large build's time, runs on the cluster:
Ray Data's ``map_batches`` over an actor pool, one :class:`BatchEmbedder` per CPU. Each actor
loads the model from the package installed on its node (never a hub) through the same
:class:`~indexer.build_model.BuildModel` path as a local build, at the precision the driver
settled, and refuses to embed when its weights or int8 export differ from the driver's. An
int8 vector is a function of its text alone, so the vectors equal a local build's; fp32
batches differ only in padding, within what ``semindex build --check`` allows.
"""

from __future__ import annotations

import logging
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from indexer.errors import SemindexError

if TYPE_CHECKING:
    import numpy as np

    from indexer.build_model import BuildModel

INSTALL_HINT = "--ray needs Ray on this machine and every node: pip install 'semindex[ray]'"
BATCH_SIZE = 64
RETRIES = 3


@dataclass
class ClusterRun:
    """What the cluster did, for the manifest's ``build`` entry: the address asked for, how
    many passages each worker process (node IP, pid) embedded, and the seconds embedding took
    (from joining the cluster to the last vector back)."""

    address: str
    counts: dict[tuple[str, int], int] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        workers = [{"node": node, "pid": pid, "passages": count} for (node, pid), count in sorted(self.counts.items())]
        return {"address": self.address, "nodes": sorted({node for node, _ in self.counts}), "workers": workers,
                "seconds": round(self.seconds, 3)}


def require_ray() -> None:
    """Fail in one line when Ray is not installed."""
    try:
        import ray  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError:
        raise SemindexError(INSTALL_HINT) from None


def connect(address: str) -> None:
    """Join the cluster at ``address`` (``local``: start one in this process; ``auto``: the one
    this machine belongs to; ``host:port``: its head), once per process."""
    require_ray()
    import ray

    if ray.is_initialized():
        return
    if address not in ("local", "auto"):
        _probe(address)
    try:
        # a cluster started here gets no dashboard; one joined keeps its own settings
        own = {"include_dashboard": False} if address == "local" else {}
        ray.init(address=address, log_to_driver=False, logging_level="ERROR", **own)
    except (ConnectionError, ValueError, RuntimeError, TimeoutError) as error:
        reason = " ".join(str(error).split())[:200]
        raise SemindexError(f"--ray {address}: cannot join the Ray cluster ({reason})") from None
    import ray.data

    # its execution notes and tracebacks are not the build's output (a failure is one line)
    logging.getLogger("ray.data").setLevel(logging.CRITICAL)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    # an embedder that dies while it loads the model is replaced, a few times (Ray Data's
    # default fails the build at once; one that dies later is restarted, see embed_on_ray)
    context.max_consecutive_actor_init_deaths = RETRIES


class BatchEmbedder:
    """A Ray Data actor: the build's model, loaded once, embedding batches of passage texts."""

    def __init__(self, *, model: str | None, precision: str, fingerprint: str, quantization: tuple[int, int]) -> None:
        from indexer.build_model import BuildModel
        from indexer.embedder import Embedder, ModelError

        # local_only: a node loads the model from its own disk (the package, a folder, its
        # Hugging Face cache), never from a hub
        self.model = BuildModel(embedder=Embedder(model=model, local_only=True), precision=precision)
        self.single = precision != "fp32"  # int8 runs text by text anyway: one core per actor
        if self.model.fingerprint != fingerprint or self.model.quantization() != tuple(quantization):
            raise ModelError(f"the model on Ray node {_node_id()} is not the driver's (weights or int8 export "
                             "differ); install the same semindex and model package on every node")

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import numpy as np

        texts = [str(text) for text in batch["text"]]
        if self.single:
            vectors = np.concatenate([self.model.encode([text]) for text in texts])
        else:
            vectors = self.model.encode(texts, batch_size=BATCH_SIZE)
        count = len(texts)
        return {"row": batch["row"], "vector": vectors.astype(np.float32),
                "pid": np.full(count, os.getpid()), "node": np.array([_node_id()] * count)}


def embed_on_ray(model: BuildModel, texts: list[str], *, address: str, model_name: str | None) -> tuple[Any, ClusterRun]:
    """Vectors of ``texts`` (rows in order), embedded by an actor pool on the cluster at
    ``address``, and what the cluster did."""
    import numpy as np

    began = time.perf_counter()
    connect(address)
    import ray
    import ray.data

    run = ClusterRun(address=address)
    vectors = np.zeros((len(texts), model.dimension), dtype=np.float32)
    if not texts:
        return vectors, run
    precision = model.settled_precision()  # the driver decides (and makes the export) first
    workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
    # batches of BATCH_SIZE, smaller when that would leave actors idle; similar lengths together
    batch_size = max(1, min(BATCH_SIZE, math.ceil(len(texts) / (4 * workers))))
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    items = ray.data.from_items([{"row": i, "text": texts[i]} for i in order],
                                override_num_blocks=math.ceil(len(texts) / batch_size))
    with warnings.catch_warnings():
        # max_restarts and max_task_retries have no named parameter yet (Ray 2.60 warns)
        warnings.simplefilter("ignore", DeprecationWarning)
        embedded = items.map_batches(
            BatchEmbedder, batch_size=batch_size, batch_format="numpy", num_cpus=1,
            compute=ray.data.ActorPoolStrategy(size=workers),
            # a dead worker is restarted and its batch run again, a few times: a node that keeps
            # failing fails the build (Ray Data's default would retry forever)
            max_restarts=RETRIES, max_task_retries=RETRIES,
            fn_constructor_kwargs={"model": model_name, "precision": precision, "fingerprint": model.fingerprint,
                                   "quantization": model.quantization()},
        )
    addresses = {node["NodeID"]: node["NodeManagerAddress"] for node in ray.nodes()}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # Ray Data's tuning hints
            for batch in embedded.iter_batches(batch_size=None, batch_format="numpy"):
                vectors[batch["row"]] = batch["vector"]
                for node, pid in zip(batch["node"], batch["pid"]):
                    key = (addresses.get(str(node), str(node)), int(pid))
                    run.counts[key] = run.counts.get(key, 0) + 1
    except Exception as error:  # a Ray task error wraps the worker's own
        cause = getattr(error, "cause", None) or error
        reason = " ".join(str(cause).split())[:300]
        raise SemindexError(f"--ray {address}: embedding failed on the cluster ({reason})") from None
    run.seconds = time.perf_counter() - began
    return vectors, run


def _probe(address: str) -> None:
    """Fail in one line when nothing listens at ``host:port`` (before Ray retries for a minute)."""
    import socket

    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise SemindexError(f"--ray {address}: not local, auto or a head's host:port")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=10).close()
    except OSError as error:
        raise SemindexError(f"--ray {address}: no Ray head answers there ({error.strerror or error})") from None


def _node_id() -> str:
    import ray

    return ray.get_runtime_context().get_node_id()
