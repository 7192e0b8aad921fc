"""Seconds per txt2img job of CFG, SAG, PAG, SEG and all three on a running webui, as ratios over CFG, in one run.

The variants run in interleaved rounds (order reversed every other round) after one warm-up job each, and the
medians are compared, so drift hits all of them alike. Stop other work on the machine first: on two cores a
second busy process makes the webui's threads wait on each other and its job times swing several-fold.
Usage: time_methods.py [--url http://127.0.0.1:7861] [--rounds 4] [--steps 8] [--size 128]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import urllib.request

VARIANTS = {"CFG": None, "SAG": {"enabled": True}, "PAG": {"pag_enabled": True}, "SEG": {"seg_enabled": True},
            "SAG + PAG + SEG": {"enabled": True, "pag_enabled": True, "seg_enabled": True}}


def job_seconds(url: str, sag: dict | None, steps: int, size: int) -> float:
    """Wall time of one txt2img request with SAG's named fields `sag` (None: SAG not mentioned)."""
    body = {"prompt": "a lighthouse", "steps": steps, "width": size, "height": size, "seed": 1,
            "sampler_name": "Euler a", "cfg_scale": 7}
    if sag is not None:
        body["alwayson_scripts"] = {"self-attention guidance": {"args": [sag]}}
    request = urllib.request.Request(f"{url}/sdapi/v1/txt2img", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
    start = time.perf_counter()
    with urllib.request.urlopen(request) as answer:
        answer.read()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:7861")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args()
    for sag in VARIANTS.values():
        job_seconds(args.url, sag, args.steps, args.size)
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for round_ in range(args.rounds):
        order = list(VARIANTS.items()) if round_ % 2 == 0 else list(VARIANTS.items())[::-1]
        for name, sag in order:
            times[name].append(job_seconds(args.url, sag, args.steps, args.size))
    cfg = statistics.median(times["CFG"])
    for name, values in times.items():
        print(f"{name:<16} {statistics.median(values):7.3f} s  {statistics.median(values) / cfg:6.3f}x CFG  "
              f"rounds {' '.join(f'{value:.2f}' for value in values)}")


if __name__ == "__main__":
    main()
