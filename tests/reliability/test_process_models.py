"""Process models: threads, fork, multiprocessing, executors, asyncio, generators, re-entrancy."""

from __future__ import annotations

import asyncio
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from usagetrace.testing import OTLPReceiver, capture

from .conftest import clean_env, run_py

PKG = {
    "__init__.py": """
        def work(x):
            return x + 1

        def outer(x):
            return work(x) + work(x)

        def fact(n):
            return 1 if n <= 1 else n * fact(n - 1)

        def gen(n):
            for i in range(n):
                yield work(i)

        async def acall(x):
            return work(x)

        def boom():
            raise KeyError("k")

        class K:
            def __init__(self, v):
                self.v = v

            def get(self):
                return self.v

            @classmethod
            def make(cls, v):
                return cls(v)

            @staticmethod
            def twice(v):
                return 2 * v

        def callback(fn):
            return fn()
    """
}


@pytest.fixture
def pkg(packages):
    return packages.load("rel_proc_pkg", PKG)


def test_threads_hammering_give_exact_counts(pkg):
    """8 threads x 2000 calls each are counted exactly, with no lost or double increments."""
    with capture("rel_proc_pkg") as cap:
        barrier = threading.Barrier(8)

        def hammer():
            barrier.wait(timeout=30)
            for i in range(2000):
                assert pkg.work(i) == i + 1
                assert pkg.K.make(i).get() == i

        threads = [threading.Thread(target=hammer) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not any(t.is_alive() for t in threads)
    assert cap.calls("rel_proc_pkg.work") == 16000
    assert cap.calls("rel_proc_pkg.K.make") == 16000
    assert cap.calls("rel_proc_pkg.K.get") == 16000
    assert cap.calls("rel_proc_pkg.K") == 0  # the constructor ran inside make(): not a usage


def test_thread_pool_executor_counts_each_task(pkg):
    """concurrent.futures tasks are each one usage, results unchanged."""
    with capture("rel_proc_pkg") as cap:
        with ThreadPoolExecutor(4) as ex:
            assert list(ex.map(pkg.outer, range(500))) == [2 * (i + 1) for i in range(500)]
    assert cap.calls("rel_proc_pkg.outer") == 500
    assert cap.calls("rel_proc_pkg.work") == 0


def test_asyncio_tasks_have_their_own_entry_point(pkg):
    """Concurrent asyncio tasks each count one usage; the inner call is not a separate usage."""
    async def main():
        return await asyncio.gather(*(pkg.acall(i) for i in range(300)))

    with capture("rel_proc_pkg") as cap:
        assert asyncio.run(main()) == [i + 1 for i in range(300)]
    assert cap.calls("rel_proc_pkg.acall") == 300
    assert cap.calls("rel_proc_pkg.work") == 0


def test_generator_closed_early_and_exhausted(pkg):
    """A generator closed early, thrown into, or exhausted behaves as unwrapped and counts one usage each."""
    with capture("rel_proc_pkg") as cap:
        g = pkg.gen(100)
        assert next(g) == 1
        g.close()
        with pytest.raises(StopIteration):
            next(g)
        g2 = pkg.gen(5)
        next(g2)
        with pytest.raises(ValueError):
            g2.throw(ValueError("x"))
        assert list(pkg.gen(4)) == [1, 2, 3, 4]
        assert pkg.work(1) == 2  # after the generators: the entry-point flag was reset
    assert cap.calls("rel_proc_pkg.gen") == 3
    assert cap.calls("rel_proc_pkg.work") == 1


def test_recursion_and_reentrancy(pkg):
    """A recursive function is left unwrapped; a callback re-entering the package from user code is its own usage."""
    import sys

    with capture("rel_proc_pkg") as cap:
        n = min(400, sys.getrecursionlimit() // 4)
        assert pkg.fact(n) > 0
        assert pkg.callback(lambda: pkg.work(1)) == 2
        with pytest.raises(KeyError):
            pkg.callback(pkg.boom)
    if sys.version_info >= (3, 12):  # counted without a wrapper (sys.monitoring): once, not per level
        assert cap.calls("rel_proc_pkg.fact") == 1
        assert "recursion" in cap.handle.monitored["rel_proc_pkg.fact"]
    else:
        assert cap.calls("rel_proc_pkg.fact") == 0  # recursive: left unwrapped (its depth limit is untouched)
        assert "recursion" in cap.handle.skipped["rel_proc_pkg.fact"]
    assert cap.calls("rel_proc_pkg.callback", "ok") == 1
    assert cap.calls("rel_proc_pkg.callback", "error") == 1


def test_recursion_limit_error_passes_through(pkg):
    """RecursionError inside an instrumented function reaches the host unchanged, and later calls work."""
    with capture("rel_proc_pkg"):
        with pytest.raises(RecursionError):
            pkg.fact(10**6)
        assert pkg.fact(5) == 120


def test_uninstrument_restores_exact_objects(packages):
    """After uninstrument() every module attribute and class __dict__ entry is the original object."""
    import weakref

    pkg = packages.load("rel_uninst_pkg", PKG)
    # Weak references and ids only: a strong reference held here would (rightly) keep
    # usagetrace from wrapping the function, since replacing it would break identity.
    before_mod = {k: id(v) for k, v in vars(pkg).items()}
    before_cls = {k: id(v) for k, v in vars(pkg.K).items()}
    work, make = weakref.ref(vars(pkg)["work"]), vars(pkg.K)["make"]
    assert isinstance(make, classmethod)
    make = weakref.ref(make.__func__)
    with capture("rel_uninst_pkg"):
        assert vars(pkg)["work"] is not work()
        assert vars(pkg.K)["make"].__func__ is not make()
    for k, v in before_mod.items():
        assert id(vars(pkg)[k]) == v, k
    for k, v in before_cls.items():
        assert id(vars(pkg.K)[k]) == v, k
    assert vars(pkg)["work"] is work() and vars(pkg.K)["make"].__func__ is make()


def test_function_instrumented_by_two_packages(packages):
    """A function re-exported by a second instrumented package is wrapped once and counted once, by its owner."""
    a = packages.load("rel_owner_pkg", {"__init__.py": "def shared(x):\n    return x * 3\n"})
    with capture("rel_owner_pkg") as ca:
        # as in real life, the owner is instrumented before another package imports from it
        b = packages.load("rel_user_pkg", {"__init__.py": "from rel_owner_pkg import shared\n"
                                                          "def own(x):\n    return shared(x)\n"})
        with capture("rel_user_pkg") as cb:
            assert vars(b)["shared"] is vars(a)["shared"]  # not wrapped a second time
            assert a.shared(2) == 6
            assert b.shared(2) == 6
            assert b.own(2) == 6
    assert ca.calls("rel_owner_pkg.shared") == 3  # a call from another package is a use of the owner
    assert cb.calls("rel_user_pkg.own") == 1
    assert cb.calls("rel_user_pkg.shared") == 0
    assert a.shared(2) == 6 and b.own(2) == 6


FORK_CHILD = """
import json, os, sys, time
import tinystats
from usagetrace._internal import instrumentation
h = instrumentation.get("tinystats")
for i in range(7):
    tinystats.mean([i, 1])
assert h.flush(30)
{body}
"""


def _sessions(rx):
    out = {}
    for p in rx.points("usagetrace.calls"):
        if p["attributes"].get("code.function.name") == "tinystats.mean":
            sid = p["resource"]["usagetrace.session.id"]
            out[sid] = out.get(sid, 0) + p["value"]
    return out


def test_os_fork_child_reports_under_its_own_session(home):
    """After os.fork (delivery thread live, lock held), the child counts only its own calls under a new session."""
    body = """
import threading
from usagetrace._internal import delivery
d = delivery.get()
d._lock.acquire()  # a fork while the delivery lock is held must not deadlock the child
pid = os.fork()
if pid == 0:
    try:
        for i in range(5):
            tinystats.mean([i])
        ok = h.flush(30)
        os._exit(0 if ok else 3)
    except BaseException:
        os._exit(4)
d._lock.release()
_, status = os.waitpid(pid, 0)
for i in range(11):
    tinystats.mean([i])
assert h.flush(30)
print(json.dumps({"child_status": status}))
"""
    with OTLPReceiver() as rx:
        proc = run_py(FORK_CHILD.format(body=body), clean_env(home, OTEL_EXPORTER_OTLP_ENDPOINT=rx.endpoint))
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr == ""
        assert json.loads(proc.stdout) == {"child_status": 0}
        assert sorted(_sessions(rx).values()) == [5, 7 + 11]


def test_the_host_sees_no_thread_of_ours_and_forks_without_a_warning(home):
    """threading.enumerate() is what it was without telemetry, and os.fork() warns of no second thread.

    Python 3.12+ warns (DeprecationWarning) when a process with more than one OS
    thread forks; thread-leak checks compare threading.enumerate() around a test.
    Neither may tell that telemetry is on. The parent's thread carries on after the fork.
    """
    code = """
import json, os, sys, threading, time, warnings
warnings.simplefilter("error")  # any warning fails the host
before = list(threading.enumerate())
import tinystats
from usagetrace._internal import delivery, instrumentation
h = instrumentation.get("tinystats")
for i in range(4):
    tinystats.mean([i, 1])
d = delivery.get()
for _ in range(400):  # until the thread itself has exported (its code path is what must stay unseen)
    if d.channels["tinystats"].sent_requests:
        break
    time.sleep(0.05)
assert d.channels["tinystats"].sent_requests
running = d.is_running()
seen = list(threading.enumerate())
forks = 0
for _ in range(3):
    pid = os.fork()
    if pid == 0:
        os._exit(0 if tinystats.mean([1, 3]) == 2 and h.flush(30) else 3)
    forks += os.waitpid(pid, 0)[1] == 0
stopped = not d.is_running()  # until the next sample: Python 3.13 counts threads after the fork handlers
for i in range(6):
    tinystats.mean([i])
assert h.flush(30)
after = d.is_running()
print(json.dumps({"same": seen == before == list(threading.enumerate()), "running": running, "stopped": stopped,
                  "after": after, "forks": forks}))
"""
    with OTLPReceiver() as rx:
        proc = run_py(code, clean_env(home, OTEL_EXPORTER_OTLP_ENDPOINT=rx.endpoint, USAGETRACE_EXPORT_INTERVAL="0.1"))
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr == ""
        assert json.loads(proc.stdout) == {"same": True, "running": True, "stopped": True, "after": True,
                                             "forks": 3}
        assert sorted(_sessions(rx).values()) == [1, 1, 1, 4 + 6]  # each child under a session of its own


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_multiprocessing_start_methods(home, method):
    """Pool workers under fork/spawn/forkserver return correct results; counts are exact and never duplicated."""
    body = """
import json
import multiprocessing as mp

def task(i):
    import tinystats
    r = tinystats.median([i, 1, 2])
    from usagetrace._internal import instrumentation
    instrumentation.get("tinystats").flush(30)
    return r

if __name__ == "__main__":
    import tinystats
    from usagetrace._internal import instrumentation
    for i in range(7):
        tinystats.mean([i, 1])
    assert instrumentation.get("tinystats").flush(30)
    ctx = mp.get_context("%s")
    with ctx.Pool(2) as pool:
        results = pool.map(task, range(20), chunksize=1)
    print(json.dumps(results))
""" % method
    with OTLPReceiver() as rx:
        env = clean_env(home, OTEL_EXPORTER_OTLP_ENDPOINT=rx.endpoint)
        import os
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            script = os.path.join(d, "host.py")
            with open(script, "w") as fh:
                fh.write(body)
            import subprocess
            import sys

            try:
                proc = subprocess.run([sys.executable, script], env=env, capture_output=True, text=True, timeout=120)
            except subprocess.TimeoutExpired:
                pytest.fail("multiprocessing host did not finish (deadlock?)")
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr == ""
        assert json.loads(proc.stdout) == [sorted([i, 1, 2])[1] for i in range(20)]
        medians = sum(p["value"] for p in rx.points("usagetrace.calls")
                      if p["attributes"].get("code.function.name") == "tinystats.median")
        means = _sessions(rx)
        assert medians == 20  # each task once: nothing duplicated from the parent
        assert sum(means.values()) == 7  # the parent's calls, never re-sent by a forked child
        sessions = {p["resource"]["usagetrace.session.id"] for p in rx.points("usagetrace.calls")}
        assert len(sessions) >= 2  # workers report under their own sessions
