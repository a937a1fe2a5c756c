"""Stop 47: join `coldstream served` reports of one dataset run as parallel seed ranges
(two processes side by side on the 2 cores) into one report, with the summary and the
reach lifts recomputed over all seeds exactly as `training.served.served_over_seeds` does.

    python merge_served.py OUT_STEM part1.json part2.json ...
"""
import sys
from pathlib import Path

import numpy as np
import orjson

from training.served import LIFTS, _stat, served_table

stem, parts = Path(sys.argv[1]), [orjson.loads(Path(p).read_bytes()) for p in sys.argv[2:]]
runs = sorted((r for doc in parts for r in doc["runs"]), key=lambda r: r["seed"])
assert len({r["seed"] for r in runs}) == len(runs), "a seed is in two parts"
summary = {key: {m: _stat([r["rows"][key][m] for r in runs]) for m in metrics}
           for key, metrics in runs[0]["rows"].items()}
summary["wall_s"] = {"mean": float(np.mean([r["wall_s"] for r in runs]))}
doc = {"dataset": parts[0]["dataset"], "seeds": [r["seed"] for r in runs], "runs": runs,
       "summary": summary, "merged_from": sys.argv[2:],
       "script": Path(__file__).read_text()}
for key, _ in LIFTS:
    if key in runs[0]:
        doc[key] = _stat([r[key] for r in runs])
stem.with_suffix(".json").write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
table = served_table(doc)
stem.with_suffix(".md").write_text(table)
print(table)
