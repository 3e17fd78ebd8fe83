"""A batch of 1,000 orders through AlpacaBroker against the fake Alpaca with Alpaca's rate limit
(200 requests a minute per account), time scaled: the fake allows 200 requests per
60/SCALE seconds and the broker is set to 200 x SCALE a minute, the same ratio as the real
account. Prints the elapsed time, the rate used, the most requests the fake saw in any window
and how many it refused with 429 (the target: none).

    .venv/bin/python bench/order_throttle.py [--orders 1000] [--scale 10]

--scale 1 is Alpaca's real limit (a 1,000-order batch then takes about 5 minutes).
"""

import argparse
import sys
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.brokers.alpaca import AlpacaBroker  # noqa: E402
from engine.brokers.base import OrderRequest, Side  # noqa: E402
from tests.fake_alpaca import serve_alpaca  # noqa: E402

LIMIT, WINDOW = 200, 60.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1_000)
    parser.add_argument("--scale", type=float, default=10.0)
    args = parser.parse_args()
    window = WINDOW / args.scale
    with serve_alpaca("K", "S", cash=1e12, prices={"AAA": 10.0}) as fake:
        fake.rate_limit = (LIMIT, window)
        broker = AlpacaBroker(
            "K", "S", base_url=fake.base_url, requests_per_minute=LIMIT * args.scale
        )
        started = time.monotonic()
        for n in range(args.orders):
            broker.submit_order(OrderRequest(f"tf-1-{n:08x}", "AAA", Side.BUY, Decimal(1), 10.0))
        elapsed = time.monotonic() - started
        stamps = sorted(r.at for r in fake.requests)
    busiest, first = 0, 0
    for last, stamp in enumerate(stamps):
        while stamp - stamps[first] > window:
            first += 1
        busiest = max(busiest, last - first + 1)
    rate = len(stamps) / elapsed * WINDOW / args.scale
    print(
        f"{args.orders} orders in {elapsed:.1f} s; {rate:.0f} requests per scaled minute "
        f"(limit {LIMIT}); busiest window {busiest} requests; 429s {fake.throttled}"
    )


if __name__ == "__main__":
    main()
