"""A real pure-Python library under instrumentation: sqlparse formatting SQL from 4 threads.

Run under racecheck with ``--include 'sqlparse*'`` so the library itself is rewritten (it is
in site-packages, which racecheck never instruments unless asked)."""

import threading

import sqlparse

QUERIES = [
    "select a, b, sum(c) from t join u on t.id = u.tid where b > 10 and a like 'x%' "
    "group by a, b having sum(c) > 3 order by a desc",
    "insert into log (ts, level, msg) values (now(), 'info', 'started'), (now(), 'warn', 'slow')",
    "update accounts set balance = balance - 10 where id in (select id from flagged where n > 2)",
]


def worker(n):
    out = []
    for i in range(n):
        out.append(sqlparse.format(QUERIES[i % 3], reindent=True, keyword_case="upper"))
    return out


def main():
    threads = [threading.Thread(target=worker, args=(40,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


if __name__ == "__main__":
    main()
