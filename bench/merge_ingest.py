"""One ``ingest.json`` from several ingest runs (10k, 100k users, 1M users' state).

``python -m bench.merge_ingest OUT.json TAG=MAIN.json TAG=OTHER.json...``: MAIN's report
with every run's rows, each path suffixed with its run's tag (``[100k users]``), and each
run's params, goals, notes and load averages under ``extra.runs``. Ratios stay those of each
row's own run: no row is compared with another run's baseline.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson


def merge(runs: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    main = runs[0][1]
    out = {**main, "rows": [], "extra": {**main["extra"], "runs": {}}}
    for tag, rep in runs:
        out["rows"] += [{**row, "path": f"{row['path']} [{tag}]"} for row in rep["rows"]]
        out["extra"]["runs"][tag] = {k: rep.get(k) for k in ("params", "goals", "notes",
                                                             "seconds")}
        out["extra"]["runs"][tag]["load"] = rep["extra"].get("load")
    return out


if __name__ == "__main__":
    pairs = [arg.split("=", 1) for arg in sys.argv[2:]]
    runs = [(tag, orjson.loads(Path(path).read_bytes())) for tag, path in pairs]
    Path(sys.argv[1]).write_bytes(orjson.dumps(merge(runs), option=orjson.OPT_INDENT_2))
