"""A worker pool over queue.Queue: 4 workers, jobs of pure-Python work, results via a queue."""

import queue
import threading

N_JOBS = 30000
N_WORKERS = 4


class Job:
    def __init__(self, n):
        self.n = n
        self.result = None


def work(job):
    total = 0
    for i in range(job.n):
        total += i * i % 7
    job.result = total


def worker(jobs, done):
    while True:
        job = jobs.get()
        if job is None:
            break
        work(job)
        done.put(job)


def main():
    jobs, done = queue.Queue(), queue.Queue()
    threads = [threading.Thread(target=worker, args=(jobs, done)) for _ in range(N_WORKERS)]
    for t in threads:
        t.start()
    for i in range(N_JOBS):
        jobs.put(Job(20 + i % 30))
    total = 0
    for _ in range(N_JOBS):
        total += done.get().result
    for _ in threads:
        jobs.put(None)
    for t in threads:
        t.join()
    return total


if __name__ == "__main__":
    main()
