"""Every benchmark scenario in one command; writes ``bench/RESULTS.md``.

    .venv/bin/python -m bench.run            # all scenarios (several minutes)
    .venv/bin/python -m bench.run --only transport --runs 3 --seconds 3

Figures are ratios taken in one run on the same machine: these machines are shared and noisy,
so absolute numbers drift while ratios hold. Each figure is the median of ``--runs`` runs with
min-max, and the load generator's CPU share (in cores) is shown beside it.
Needs h2load and wrk (``apt-get install nghttp2-client wrk``) and, for PostgreSQL scenarios, a
server at 127.0.0.1:5432.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from bench import scenarios

RESULTS = Path(__file__).parent / "RESULTS.md"
# Hand-kept: what profiling found and what each fix bought, appended to every report.
HISTORY = Path(__file__).parent / "history.md"


def main() -> None:
    """Run the chosen scenarios and write the Markdown report."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", action="append", choices=sorted(scenarios.ALL))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    chosen = args.only or list(scenarios.ALL)
    sections = [
        f"# Benchmark results\n\nDate: {datetime.date.today().isoformat()} · machine: "
        f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()} · "
        f"{args.runs} runs per figure, {args.seconds:g} s each: median (min-max)\n\n"
        f"Command: `.venv/bin/python -m bench.run "
        + " ".join(f"--only {c}" for c in (args.only or []))
        + f" --runs {args.runs} --seconds {args.seconds:g}`\n"
    ]
    with workdir() as tmp:
        for name in chosen:
            print(f"== {name}", flush=True)
            run: Callable[[Path, int, float], str] = scenarios.ALL[name]
            sections.append(run(tmp, args.runs, args.seconds))
            args.output.write_text("\n".join(sections))
    args.output.write_text("\n".join([*sections, HISTORY.read_text()]))
    print(f"wrote {args.output}")


@contextmanager
def workdir() -> Iterator[Path]:
    """A scratch folder for databases and logs."""
    with tempfile.TemporaryDirectory(prefix="budgetd-bench-") as tmp:
        yield Path(tmp)


if __name__ == "__main__":
    main()
