"""A lock-protected shared cache (dict) under contention from 4 threads."""

import threading


class Cache:
    def __init__(self):
        self.lock = threading.Lock()
        self.data = {}
        self.hits = 0
        self.misses = 0

    def get(self, key):
        with self.lock:
            if key in self.data:
                self.hits += 1
                return self.data[key]
            self.misses += 1
        value = key * 2 + 1
        with self.lock:
            self.data[key] = value
        return value


def worker(cache, start):
    for i in range(100000):
        cache.get((start + i * 13) % 2000)


def main():
    cache = Cache()
    threads = [threading.Thread(target=worker, args=(cache, k * 100)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return cache.hits, cache.misses


if __name__ == "__main__":
    main()
