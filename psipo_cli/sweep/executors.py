"""Where chunks run: in this process, in a local process pool, or on a Dask cluster.

Every executor has one method, `results(tasks, function=run_chunk)`, yielding `function(task)` (a sweep's
`ChunkOutput`s) as chunks finish (in completion order: the driver persists each at once and orders rows by
chunk id later), and `abort()`, which stops outstanding work as fast as it can (Ctrl-C). `function` must be
importable by name in the workers (a module-level function): `psipo diagnose` sends its own.

- `InlineExecutor` (`--jobs 1`): chunks one after the other in this process — no start-up cost.
- `PoolExecutor` (`--jobs N`): `concurrent.futures.ProcessPoolExecutor` with the `spawn` start method
  (no fork of a process that may hold threads or locks; the same behaviour on every platform). Workers get
  `OMP_NUM_THREADS = OPENBLAS_NUM_THREADS = MKL_NUM_THREADS = 1` in their environment *before* they
  import numpy: N workers × several BLAS threads each would oversubscribe the cores.
- `DaskExecutor` (`--executor dask`): the same chunks through `distributed.Client(address).get_executor()`;
  without a scheduler address, on a local Dask cluster of `--jobs` single-threaded worker processes started
  for the sweep and shut down after it.
  Dask's nanny already starts workers with those variables set to 1. Workers need psipo installed (the
  same version: the driver checks it); they need no shared file system, since results come back as text.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from psipo_cli.config.choices import EXECUTORS
from psipo_cli.errors import InputError
from psipo_cli.sweep.compute import BLAS_THREAD_VARS, init_worker, run_chunk

SCHEDULER_ENV = "DASK_SCHEDULER_ADDRESS"
CONNECT_TIMEOUT = "20s"  # how long to wait for the scheduler before giving up (exit 2, nothing written)


class InlineExecutor:
    """Chunks in this process, one at a time."""

    workers = 1

    def results(self, tasks: Iterable[Any], function: Callable[[Any], Any] = run_chunk) -> Iterator[Any]:
        for task in tasks:
            yield function(task)

    def abort(self) -> None:
        pass

    def close(self) -> None:
        pass


class _FuturesExecutor:
    """Shared by the pool and Dask: submit everything, yield as completed."""

    executor: Any
    workers: int

    def results(self, tasks: Iterable[Any], function: Callable[[Any], Any] = run_chunk) -> Iterator[Any]:
        from concurrent.futures import FIRST_COMPLETED, wait

        pending = {self.executor.submit(function, task) for task in tasks}
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()  # a chunk that failed raises here, in the driver


class PoolExecutor(_FuturesExecutor):
    """A `spawn` process pool of `jobs` workers with one BLAS thread each."""

    def __init__(self, jobs: int) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self.workers = jobs
        # Spawned children copy os.environ when they start (lazily, as tasks arrive), so the variables are
        # set for the pool's whole life and restored in `close`. `init_worker` sets them again (harmless)
        # and makes workers ignore SIGINT.
        self._saved = {var: os.environ.get(var) for var in BLAS_THREAD_VARS}
        for var in BLAS_THREAD_VARS:
            os.environ[var] = "1"
        self.executor = ProcessPoolExecutor(
            max_workers=jobs, mp_context=multiprocessing.get_context("spawn"), initializer=init_worker
        )

    def abort(self) -> None:
        # `shutdown(cancel_futures=True)` still waits for running chunks; terminate the workers instead so
        # that Ctrl-C returns at once (finished chunks are already on disk).
        processes = list(getattr(self.executor, "_processes", {}).values())
        for process in processes:
            if process.is_alive():
                process.terminate()
        self.executor.shutdown(wait=True, cancel_futures=True)

    def close(self) -> None:
        try:
            self.executor.shutdown(wait=True, cancel_futures=True)
        finally:
            for var, value in self._saved.items():
                if value is None:
                    os.environ.pop(var, None)
                else:
                    os.environ[var] = value


class DaskExecutor(_FuturesExecutor):
    """Chunks on a Dask cluster (`distributed.Client(address).get_executor()`)."""

    def __init__(self, address: str | None, timeout: str | None = None, jobs: int = 1) -> None:
        try:
            import distributed
        except ImportError:
            raise InputError(
                "--executor", "dask", "needs the dask extra: pip install 'psipo[dask]'"
            ) from None
        self.cluster: Any = None
        if address is None:
            # No scheduler given: a local cluster of `jobs` worker processes, one thread each (the nanny
            # sets the BLAS thread variables to 1), for this sweep only.
            self.cluster = distributed.LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True,
                                                    dashboard_address=None, host="127.0.0.1")
            address = self.cluster.scheduler_address
        try:
            self.client = distributed.Client(address, timeout=timeout or CONNECT_TIMEOUT, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            if self.cluster is not None:
                self.cluster.close()
            raise InputError("--scheduler", address, f"cannot connect to the Dask scheduler ({exc})") from None
        self.address = address
        self._check_versions()
        self.workers = max(1, sum(self.client.nthreads().values()))
        # pure=False: chunks with equal arguments must still each run (Dask would otherwise deduplicate
        # by argument hash, which is right but makes "one future per chunk" bookkeeping fragile).
        self.executor = self.client.get_executor(pure=False)

    def _check_versions(self) -> None:
        import psipo_cli

        def version() -> str:
            import psipo_cli as remote

            return remote.__version__

        try:
            versions = set(self.client.run(version).values())
        except Exception as exc:  # a worker without psipo cannot run a chunk: say so up front
            self._close_client()
            raise InputError("--scheduler", self.address,
                             f"a worker cannot import psipo ({exc})") from None
        if versions and versions != {psipo_cli.__version__}:
            self._close_client()
            raise InputError("--scheduler", self.address,
                             f"workers run psipo {sorted(versions)}, this is {psipo_cli.__version__}")

    def abort(self) -> None:
        try:
            self.executor.shutdown(wait=False)
        finally:
            self._close_client()

    def close(self) -> None:
        try:
            self.executor.shutdown(wait=True)
        finally:
            self._close_client()

    def _close_client(self) -> None:
        """Close the client, and the local cluster when this executor started one."""
        try:
            self.client.close()
        finally:
            if self.cluster is not None:
                self.cluster.close()


def check_executor(kind: str, jobs: int, scheduler: str | None) -> str | None:
    """Validate `--executor`, `--jobs` and `--scheduler` (before any work); returns the scheduler address
    (None with `--executor dask`: no address given, a local cluster of `--jobs` workers)."""
    if kind not in EXECUTORS:
        raise InputError("--executor", kind, f"must be one of {', '.join(EXECUTORS)}")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise InputError("--jobs", jobs, "must be a positive integer")
    if kind == "dask":
        return scheduler or os.environ.get(SCHEDULER_ENV) or None
    if scheduler is not None:
        raise InputError("--scheduler", scheduler, "only used with --executor dask")
    return None


@contextmanager
def open_executor(kind: str, jobs: int, address: str | None) -> Iterator[Any]:
    """The executor for `--executor kind --jobs N` (closed, or aborted on any exception, at exit)."""
    if kind == "dask":
        executor: Any = DaskExecutor(address, jobs=jobs)
    elif jobs == 1:
        executor = InlineExecutor()
    else:
        executor = PoolExecutor(jobs)
    try:
        yield executor
    except BaseException:
        executor.abort()
        if isinstance(executor, PoolExecutor):
            executor.close()  # restores the environment
        raise
    executor.close()
