"""Stop 47: join `coldstream served` reports of one dataset run as parallel seed ranges
(two processes side by side on the 2 cores) into one report, summarised by
`training.served.served_doc`, the code `served_over_seeds` reports with. (`coldstream
served --jobs N` now does this in one command.)

    python merge_served.py OUT_STEM part1.json part2.json ...
"""
import sys
from pathlib import Path

import orjson

from training.served import served_doc, served_table

stem, parts = Path(sys.argv[1]), [orjson.loads(Path(p).read_bytes()) for p in sys.argv[2:]]
runs = sorted((r for doc in parts for r in doc["runs"]), key=lambda r: r["seed"])
assert len({r["seed"] for r in runs}) == len(runs), "a seed is in two parts"
doc = served_doc(parts[0]["dataset"], runs) | {"merged_from": sys.argv[2:],
                                               "script": Path(__file__).read_text()}
stem.with_suffix(".json").write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
table = served_table(doc)
stem.with_suffix(".md").write_text(table)
print(table)
