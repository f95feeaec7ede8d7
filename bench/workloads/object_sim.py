"""An attribute-heavy simulation: many small particles, many field reads and writes.

Two threads each own half of the particles (no sharing, so no race), step them, and the
main thread reads the results after joining."""

import threading


class Particle:
    __slots__ = ("x", "y", "vx", "vy")

    def __init__(self, i):
        self.x = float(i)
        self.y = float(i % 17)
        self.vx = 1.0
        self.vy = -0.5


class Body:
    def __init__(self, i):
        self.mass = 1.0 + i % 3
        self.pos = Particle(i)
        self.energy = 0.0


def step(bodies, steps):
    for _ in range(steps):
        for b in bodies:
            p = b.pos
            p.x += p.vx * 0.01
            p.y += p.vy * 0.01
            if p.y < 0:
                p.vy = -p.vy
            b.energy = 0.5 * b.mass * (p.vx * p.vx + p.vy * p.vy)


def main():
    bodies = [Body(i) for i in range(2000)]
    halves = [bodies[:1000], bodies[1000:]]
    threads = [threading.Thread(target=step, args=(h, 500)) for h in halves]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(b.energy for b in bodies)


if __name__ == "__main__":
    main()
