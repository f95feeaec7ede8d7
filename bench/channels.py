"""Channel throughput against ``queue.Queue``, same workloads, same run.

Run: ``python bench/channels.py [--n N] [--runs R]``.  Prints, per workload, the median
messages per second of racecheck's ``Chan`` and of ``queue.Queue`` over R runs and their
ratio (higher is better for racecheck; the goal is >= 1.0 on the buffered workload and
>= 0.67, i.e. within 1.5x, on the others).

Workloads:

* ping-pong: two threads bounce a message over two unbuffered channels (``Queue(1)``
  pair for the baseline: the closest rendezvous ``queue`` offers).
* buffered: one producer, one consumer, capacity 128.
* fan-in: four producers on their own channel (capacity 64), one consumer
  ``select``-ing over all four (baseline: four producers sharing one ``Queue`` of the
  same total capacity, 256: the idiomatic equivalent).
"""

from __future__ import annotations

import argparse
import queue
import statistics
import sys
import threading
import time
from collections.abc import Callable

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))

from racecheck.sync.chan import Chan, select  # noqa: E402

FANIN_CAP = 64


def _run_threads(targets: list[Callable[[], None]]) -> float:
    threads = [threading.Thread(target=t) for t in targets]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start


def chan_pingpong(n: int) -> float:
    ping: Chan[int] = Chan()
    pong: Chan[int] = Chan()

    def a() -> None:
        for i in range(n):
            ping.send(i)
            pong.recv()

    def b() -> None:
        for _ in range(n):
            pong.send(ping.recv() or 0)

    return _run_threads([a, b])


def queue_pingpong(n: int) -> float:
    ping: queue.Queue[int] = queue.Queue(1)
    pong: queue.Queue[int] = queue.Queue(1)

    def a() -> None:
        for i in range(n):
            ping.put(i)
            pong.get()

    def b() -> None:
        for _ in range(n):
            pong.put(ping.get())

    return _run_threads([a, b])


def chan_buffered(n: int) -> float:
    ch: Chan[int] = Chan(128)

    def producer() -> None:
        send = ch.send
        for i in range(n):
            send(i)
        ch.close()

    def consumer() -> None:
        for _ in ch:
            pass

    return _run_threads([producer, consumer])


def queue_buffered(n: int) -> float:
    q: queue.Queue[int | None] = queue.Queue(128)

    def producer() -> None:
        put = q.put
        for i in range(n):
            put(i)
        put(None)

    def consumer() -> None:
        get = q.get
        while get() is not None:
            pass

    return _run_threads([producer, consumer])


def chan_fanin(n: int) -> float:
    chans: list[Chan[int]] = [Chan(FANIN_CAP) for _ in range(4)]
    per = n // 4

    def producer(ch: Chan[int]) -> Callable[[], None]:
        def run() -> None:
            send = ch.send
            for i in range(per):
                send(i)
            ch.close()

        return run

    def consumer() -> None:
        cases: list[object] = [ch.recv_ok for ch in chans]
        open_ = 4
        while open_:
            index, (_, ok) = select(*cases)
            if not ok:
                cases[index] = None
                open_ -= 1

    return _run_threads([*(producer(ch) for ch in chans), consumer])


def queue_fanin(n: int) -> float:
    q: queue.Queue[int | None] = queue.Queue(4 * FANIN_CAP)
    per = n // 4

    def producer() -> None:
        put = q.put
        for i in range(per):
            put(i)
        put(None)

    def consumer() -> None:
        get = q.get
        done = 0
        while done < 4:
            if get() is None:
                done += 1

    return _run_threads([producer, producer, producer, producer, consumer])


WORKLOADS = [
    ("unbuffered ping-pong", chan_pingpong, queue_pingpong, 0.2),
    ("buffered cap 128", chan_buffered, queue_buffered, 1.0),
    ("select fan-in x4", chan_fanin, queue_fanin, 1.0),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000, help="messages per run")
    parser.add_argument("--runs", type=int, default=7, help="runs per workload (median)")
    args = parser.parse_args()
    print(f"Python {sys.version.split()[0]}, {args.n} messages, median of {args.runs} runs")
    print(f"{'workload':<22} {'Chan msg/s':>12} {'Queue msg/s':>12} {'ratio':>7}")
    for name, chan_fn, queue_fn, scale in WORKLOADS:
        n = max(4, int(args.n * scale))
        chan_times: list[float] = []
        queue_times: list[float] = []
        for _ in range(args.runs):  # interleaved so drift hits both alike
            chan_times.append(chan_fn(n))
            queue_times.append(queue_fn(n))
        chan_rate = n / statistics.median(chan_times)
        queue_rate = n / statistics.median(queue_times)
        print(f"{name:<22} {chan_rate:>12,.0f} {queue_rate:>12,.0f} {chan_rate / queue_rate:>7.2f}")


if __name__ == "__main__":
    main()
