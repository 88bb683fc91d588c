#!/usr/bin/env python3
"""Sample data for the shop example, as key<TAB>value lines for `kcat -P -K$'\\t'`.

  examples/shop/generate.py views 1000 | kcat -P -b $KAFKA -t page_views -K$'\\t' \\
      -X partitioner=murmur2_random
  examples/shop/generate.py purchases 200 | kcat -P -b $KAFKA -t purchases -K$'\\t' \\
      -X partitioner=murmur2_random

Page views are keyed by category (so the windowed counts per category need no repartition),
purchases by user. kcat stamps each record with the time it is produced, so windows fill in
real time; run it again a minute later to see new windows open and old ones close.
"""
import json
import random
import sys

CATEGORIES = ["books", "garden", "toys", "music", "games", "food", "tools"]
ITEMS = ["lamp", "chair", "kettle", "novel", "drill", "guitar", "puzzle"]


def main() -> int:
    if len(sys.argv) not in (2, 3) or sys.argv[1] not in ("views", "purchases"):
        print(__doc__, file=sys.stderr)
        return 2
    n = int(sys.argv[2]) if len(sys.argv) == 3 else 100
    rng = random.Random()
    for _ in range(n):
        user = f"u{rng.randrange(20)}"
        if sys.argv[1] == "views":
            category = rng.choice(CATEGORIES)
            value = {"user": user, "category": category, "page": f"/{category}/{rng.randrange(100)}"}
            key = category
        else:
            value = {"user": user, "item": rng.choice(ITEMS), "amount": rng.randrange(1, 300)}
            key = user
        print(f"{key}\t{json.dumps(value, separators=(',', ':'))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
