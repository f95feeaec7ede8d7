"""A 3-stage pipeline over racecheck channels: generate -> square -> sum."""

import racecheck


def generate(out, n):
    for i in range(n):
        out.send(i)
    out.close()


def square(inp, out):
    for v in inp:
        out.send(v * v)
    out.close()


def main():
    a, b = racecheck.Chan(64), racecheck.Chan(64)
    t1 = racecheck.go(generate, a, 80000)
    t2 = racecheck.go(square, a, b)
    total = 0
    for v in b:
        total += v
    t1.join()
    t2.join()
    return total


if __name__ == "__main__":
    main()
