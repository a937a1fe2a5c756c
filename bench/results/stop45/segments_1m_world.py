"""Stop 45: the segmented index at 1M on the realistic set (a trained model's vectors for a
1,040,200-song music world, text only; 200 held-out songs of the same world as queries) and
on the bench's Gaussian mixture at the same size and dim (64), one run each, without the
second merge and restart (`second_merge=False`, the cheaper 1M run).

    .venv/bin/python bench/results/stop45/segments_1m_world.py mixture OUT
    .venv/bin/python bench/results/stop45/segments_1m_world.py world OUT build/trained-models

The world's MiniLM outputs come from the backbone cache (build/backbone-cache), filled
beforehand by `world_vectors` over the same world with the bench's provisional model (the
same MiniLM graph); the trained model then runs only its heads."""
import sys
from pathlib import Path

from bench import segments

which, out = sys.argv[1], Path(sys.argv[2])
if which == "world":
    rep = segments.run("full", models=Path(sys.argv[3]), second_merge=False)
else:
    rep = segments.run("full", dim=64, second_merge=False)
rep.save(out / which)
rep.print()
