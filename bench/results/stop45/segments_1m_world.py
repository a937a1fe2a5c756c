"""Stop 45: the segmented index at 1M on the realistic set (a trained model's vectors for a
1,040,200-song music world, text only; 200 held-out songs of the same world as queries) and,
right after in the same process, on the bench's Gaussian mixture at the same size and dim.

    .venv/bin/python bench/results/stop45/segments_1m_world.py build/trained-models OUT

The MiniLM outputs come from the backbone cache (build/backbone-cache), filled beforehand by
`world_vectors` over the same world; the trained model then runs only its heads."""
import sys
from pathlib import Path

from bench import segments

models, out = Path(sys.argv[1]), Path(sys.argv[2])
world = segments.run("full", models=models)
world.save(out / "world")
world.print()
mixture = segments.run("full", dim=world.params["dim"])
mixture.save(out / "mixture")
mixture.print()
