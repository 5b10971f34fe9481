#!/usr/bin/env python3
"""Write a deterministic kvd request stream for `kvd --batch` to stdout.

    python3 tools/mkworkload.py [-n REQUESTS] [-k KEYSPACE] [-s SEED] > work.txt
    ./kvd --batch --cycle-every 1000 < work.txt > replies.txt

Same arguments, same bytes: a plain build and a DSU build of the same
revision must produce identical replies for it.
"""
import argparse
import random
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--requests", type=int, default=100000)
    ap.add_argument("-k", "--keyspace", type=int, default=5000)
    ap.add_argument("-s", "--seed", type=int, default=1)
    a = ap.parse_args()
    rnd = random.Random(a.seed)
    out = []
    for i in range(a.requests):
        r = rnd.random()
        key = "key%d" % rnd.randrange(a.keyspace)
        if r < 0.40:
            out.append("SET %s val%d_%d" % (key, i, rnd.randrange(10 ** 6)))
        elif r < 0.80:
            out.append("GET %s" % key)
        elif r < 0.92:
            out.append("DEL %s" % key)
        elif r < 0.95:
            out.append("KEYS key%d" % rnd.randrange(100))
        elif r < 0.98:
            out.append("INFO")
        elif r < 0.99:
            out.append("STATS")
        else:
            out.append("NOSUCH %s" % key)
    out.append("STATS")
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
