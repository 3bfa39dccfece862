"""Config loading time for 1k-20k watches, in the main file and spread over watch_files."""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import tomllib
from pathlib import Path

from notifier import config
from notifier.config import load_settings
from notifier.core.numbers import s10_check_digit

SIZES = (1_000, 5_000, 10_000, 20_000)
PER_FILE = 100
HEAD = """[notifications]
operator = "ops@shop.example"

[[notifications.rule]]
name = "vip"
stages = ["out_for_delivery"]
template = "out_for_delivery"
tags = ["vip"]
"""


def number(i: int) -> str:
    serial = f"{i:08d}"
    return f"EJ{serial}{s10_check_digit(serial)}JP"


def watch(i: int) -> str:
    return (
        f'[[watch]]\nnumber = "{number(i)}"\nlabel = "Order {i}"\n'
        f'subscribers = ["customer{i}@example.com"]\nlocale = "{"ja" if i % 2 else "en"}"\n'
        f'time_zone = "Asia/Tokyo"\ndestination = "US"\ntags = ["vip", "batch{i % 7}"]\n\n'
    )


def write_main(folder: Path, count: int) -> Path:
    path = folder / "main.toml"
    path.write_text(HEAD + "\n" + "".join(watch(i) for i in range(count)), encoding="utf-8")
    return path


def write_split(folder: Path, count: int) -> Path:
    (folder / "watch.d").mkdir()
    for start in range(0, count, PER_FILE):
        chunk = "".join(watch(i) for i in range(start, min(count, start + PER_FILE)))
        (folder / "watch.d" / f"orders-{start:06d}.toml").write_text(chunk, encoding="utf-8")
    path = folder / "split.toml"
    path.write_text('[polling]\nwatch_files = ["watch.d/*.toml"]\n\n' + HEAD, encoding="utf-8")
    return path


def measure(path: Path, count: int, rounds: int) -> tuple[float, float]:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        settings = load_settings(str(path))
        samples.append(time.perf_counter() - started)
        assert len(settings.watches) == count, (len(settings.watches), count)
    return statistics.median(samples), min(samples)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="*", default=list(SIZES))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--stdlib-toml", action="store_true", help="parse with tomllib even if tomli is installed"
    )
    args = parser.parse_args(argv)
    if args.stdlib_toml:
        config.toml._toml_loads = tomllib.loads
    parser_name = getattr(getattr(config.toml, "_toml_loads", tomllib.loads), "__module__", "?").split(".")[0]
    print(f"python {sys.version.split()[0]}, TOML parser {parser_name}; median (best) of {args.rounds} loads")
    print(f"{'watches':>8}  {'main file':>20}  {f'watch_files ({PER_FILE}/file)':>24}  per watch")
    for count in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            main_path = write_main(Path(tmp), count)
            split_path = write_split(Path(tmp), count)
            main_median, main_best = measure(main_path, count, args.rounds)
            split_median, split_best = measure(split_path, count, args.rounds)
        print(
            f"{count:>8}  {main_median:8.3f} s ({main_best:.3f})  {split_median:12.3f} s ({split_best:.3f})"
            f"  {main_median / count * 1e6:6.1f} us"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
