#!/usr/bin/env python3
"""Sample data for the book-interactions example, as key<TAB>value lines for `kcat -P -K$'\\t'`.

  examples/book-interactions/generate.py books | kcat -P -b $KAFKA -t books -K$'\\t' \\
      -X partitioner=murmur2_random
  examples/book-interactions/generate.py interactions 500 | kcat -P -b $KAFKA \\
      -t interactions -K$'\\t' -X partitioner=murmur2_random

Books b0..b19 are keyed by book id. Interactions are keyed by customer id (c0..c29), not by
book: their book_id names one of b0..b24, so some name a book the table does not have (a
left-join miss), and about one in fifty has no book_id at all (dropped and counted).
"""
import json
import random
import sys

GENRES = ["fantasy", "crime", "poetry", "history", "science"]
AUTHORS = ["Le Guin", "Christie", "Szymborska", "Beard", "Sagan", "Pratchett", "Ishiguro"]
EVENTS = ["view", "view", "view", "cart", "buy"]


def main() -> int:
    if len(sys.argv) not in (2, 3) or sys.argv[1] not in ("books", "interactions"):
        print(__doc__, file=sys.stderr)
        return 2
    rng = random.Random()
    if sys.argv[1] == "books":
        for i in range(20):
            value = {"title": f"Book {i}", "author": AUTHORS[i % len(AUTHORS)],
                     "genre": GENRES[i % len(GENRES)]}
            print(f"b{i}\t{json.dumps(value, separators=(',', ':'))}")
        return 0
    n = int(sys.argv[2]) if len(sys.argv) == 3 else 100
    for _ in range(n):
        value = {"event": rng.choice(EVENTS)}
        if rng.randrange(50) != 0:
            value["book_id"] = f"b{rng.randrange(25)}"
        if value["event"] == "buy":
            value["quantity"] = rng.randrange(1, 4)
        print(f"c{rng.randrange(30)}\t{json.dumps(value, separators=(',', ':'))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
