"""The batch on a Ray cluster: one actor per GPU (or per ``--workers`` on CPUs), each with its own
embedded ComfyUI whose models load once. The driver hands out items one at a time; when a worker
dies mid-item (killed, out of memory, node lost), Ray reports the actor's death, the driver discards
that attempt's staging folder, starts a replacement worker and puts the item back in the queue,
where the next free worker picks it up. Workers write to ``--output`` directly, so on a multi-node
cluster the inputs and outputs must be on a file system every node mounts at the same path (and
ComfyUI and this pack installed at the same paths).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
import uuid

from .batch import (
    BatchConfig,
    Item,
    Outcome,
    _describe,
    _progress,
    cleanup_work_dir,
    discard_attempt,
    pending,
    run_local,
)
from .host import REPO

INSTALL_HINT = ("--ray needs Ray, an optional dependency: install it into ComfyUI's Python with\n"
                "  python -m pip install 'ray>=2.40'\n(it leaves torch alone; see docs/batch.md)")
MAX_ATTEMPTS = 3


def is_loopback(address: str | None) -> bool:
    """Whether ADDRESS (host:port) names this machine's loopback interface: a cluster started with
    ``--node-ip-address 127.0.0.1``, which Ray only reaches with its single-machine switch on (without
    it, Ray replaces 127.0.0.1 by the machine's network address, where that cluster does not listen,
    and waits for it)."""
    if not address or "://" in address:
        return False
    host = address.rsplit(":", 1)[0].strip("[]") if address.count(":") <= 1 or "]" in address else address
    return host == "localhost" or host.startswith("127.") or host == "::1"


def import_ray(local: bool = False):
    """Import Ray (with the install hint when it is missing). ``local``: the cluster this process
    starts is for this machine only, so it binds to the loopback interface: Ray's own switch for
    single-machine clusters (read when Ray is imported), instead of the machine's network address."""
    if local and "ray" not in sys.modules:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        import ray
    except ImportError:
        raise SystemExit(INSTALL_HINT) from None
    return ray


class _Worker:
    """Body of the Ray actor (wrapped with ray.remote at run time: Ray stays optional)."""

    def __init__(self, config: BatchConfig):
        from .batch import ItemRunner

        self.runner = ItemRunner(config)

    def info(self) -> dict:
        import socket

        return {"pid": os.getpid(), "host": socket.gethostname()}

    def run(self, item: Item, token: str, attempt: int) -> float:
        start = time.perf_counter()
        self.runner.run(item, token, attempt)
        return time.perf_counter() - start


def _init_ray(ray, address: str | None, workers: int | None, threads: int):
    env = {"env_vars": {"PYTHONPATH": os.pathsep.join([REPO, *filter(None, [os.environ.get("PYTHONPATH")])])}}
    if address:
        _use_local_token(address)
        ray.init(address=address, runtime_env=env, log_to_driver=False)
        how = f"joined the Ray cluster at {address}"
    else:
        # a private local cluster (loopback only, see import_ray), stopped with the driver
        cpus = workers * threads if workers else os.cpu_count()
        ray.init(num_cpus=cpus, include_dashboard=False, runtime_env=env, log_to_driver=False)
        how = "started a local Ray cluster (stopped when the batch ends)"
    resources, nodes = ray.cluster_resources(), sum(bool(n.get("Alive")) for n in ray.nodes())
    print(f"batch: {how}: {nodes} node(s), {int(resources.get('CPU', 0))} CPUs, {int(resources.get('GPU', 0))} GPUs",
          file=sys.stderr)


def _use_local_token(address: str) -> None:
    """Ray (2.5x and later) gives a cluster token authentication whenever ``ray start`` finds a token
    (``~/.ray/auth_token``, which Ray writes when a local cluster starts, or $RAY_AUTH_TOKEN(_PATH)),
    but a driver given an explicit address connects without one unless RAY_AUTH_MODE=token is set,
    and is refused. So, like Ray's own ``address="auto"``, present the local token when there is one
    and the user has not chosen a mode (a cluster without authentication ignores it)."""
    if address.startswith("ray://"):
        return  # Ray Client: its own connection, set up by the user
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError:  # a Ray without token authentication
        return
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def worker_options(ray, workers: int | None, threads: int) -> tuple[int, dict]:
    """How many workers, and the resources each asks for: one GPU each where the cluster has GPUs,
    else ``threads`` CPUs each (``--workers`` of them, default: as many as the cluster's CPUs hold)."""
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    if gpus:
        return min(workers or gpus, gpus), {"num_gpus": 1, "num_cpus": 1}
    return max(1, workers or int(resources.get("CPU", 1)) // threads), {"num_cpus": threads}


def run_ray(config: BatchConfig, address: str | None, workers: int | None, items: list[Item] | None = None,
            progress: bool = True) -> list[Outcome]:
    ray = import_ray(local=address is None or is_loopback(address))
    started_here = not ray.is_initialized()
    if started_here:
        _init_ray(ray, address, workers, config.threads)
    try:
        return _run(ray, config, workers, items, progress)
    finally:
        if started_here:
            ray.shutdown()


@dataclasses.dataclass
class _Attempt:
    item: Item
    attempt: int
    token: str
    worker: object
    start: float


def _run(ray, config, workers, items, progress) -> list[Outcome]:
    if items is None:
        from .batch import plan_batch

        items = plan_batch(config)  # refused before any worker starts
    count, options = worker_options(ray, workers, config.threads)
    actor_class = ray.remote(**options, max_restarts=0, max_task_retries=0)(_Worker)
    pool = [actor_class.remote(config) for _ in range(count)]
    ray.get([w.info.remote() for w in pool])  # raises here if a worker cannot start ComfyUI
    queue, outcomes = pending(config, items)
    queue = [(item, 1) for item in queue]
    bar = _progress(len(items), len(items) - len(queue)) if progress else None
    idle, running, warming = list(pool), {}, {}
    while queue or running:
        while queue and idle:
            item, attempt = queue.pop(0)
            worker = idle.pop(0)
            token = uuid.uuid4().hex[:12]
            ref = worker.run.remote(item, token, attempt)
            running[ref] = _Attempt(item, attempt, token, worker, time.perf_counter())
        ready, _ = ray.wait([*running, *warming], num_returns=1)
        if ready[0] in warming:  # a replacement worker has started its ComfyUI
            worker = warming.pop(ready[0])
            try:
                ray.get(ready[0])
                idle.append(worker)
            except ray.exceptions.RayError as e:
                print(f"batch: a replacement worker failed to start: {e}", file=sys.stderr)
            if not idle and not running and not warming and queue:
                outcomes += [Outcome(item, False, "no worker left to run it") for item, _ in queue]
                queue.clear()
            continue
        job = running.pop(ready[0])
        try:
            ray.get(ready[0])
            outcomes.append(Outcome(job.item, True, seconds=time.perf_counter() - job.start))
            idle.append(job.worker)
        except ray.exceptions.RayActorError as e:
            # the worker died mid-item: nothing was published; a new worker takes its place and the
            # item goes back to the front of the queue, for the next free worker
            discard_attempt(config.output, job.item.key, job.token)
            ray.kill(job.worker)
            replacement = actor_class.remote(config)
            warming[replacement.info.remote()] = replacement
            if job.attempt < MAX_ATTEMPTS:
                print(f"batch: worker lost during {os.path.basename(job.item.path)} (attempt {job.attempt}); "
                      "retrying it on another worker", file=sys.stderr)
                queue.insert(0, (job.item, job.attempt + 1))
                continue
            outcomes.append(Outcome(job.item, False, f"workers died {job.attempt} times on this item: {e}"))
        except Exception as e:  # the item failed inside a healthy worker (RayTaskError wraps the cause)
            discard_attempt(config.output, job.item.key, job.token)
            cause = e.cause if getattr(e, "cause", None) is not None else e
            outcomes.append(Outcome(job.item, False, _describe(cause), time.perf_counter() - job.start))
            idle.append(job.worker)
        if bar:
            bar.update(1)
    if bar:
        bar.close()
    for worker in [*idle, *warming.values()]:
        ray.kill(worker)
    cleanup_work_dir(config.output)
    return outcomes


def execute(config: BatchConfig, ray: str | None, workers: int | None, progress: bool = True,
            items: list[Item] | None = None) -> list[Outcome]:
    """Run the batch (``items``, default: ``plan_batch(config)``): in this process when ``ray`` is
    None, else on Ray (``"local"``: a local cluster)."""
    if ray is None:
        return run_local(config, items, progress=progress)
    import_ray(local=ray == "local" or is_loopback(ray))  # a clear message before anything starts when Ray is missing
    return run_ray(config, None if ray == "local" else ray, workers, items, progress=progress)
