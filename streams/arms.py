"""A/B arms: users split by a stable keyed hash, each arm a serving policy.

``COLDSTREAM_AB_ARMS`` is ``NAME=TARGET:WEIGHT,...``. A target ``i2i2u`` serves I2I2U only; a
target ``both`` serves I2I2U plus U2I gated by the user's boundary (the default policy). Any
other target names a model version (``control=v1:50,treatment=v2:50``): parsed, but a worker
refuses to start with one, because serving two versions at once is not built yet.

Assignment is stateless: the same user, salt and arms give the same arm on every worker and
after every restart, so it needs no table, and a replayed event is assigned as before.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

POLICIES = frozenset({"i2i2u", "both"})
BUCKETS = 10_000


@dataclass(frozen=True)
class Arm:
    name: str
    target: str  # a policy (POLICIES) or a model version
    weight: float

    @property
    def is_policy(self) -> bool:
        return self.target in POLICIES

    @property
    def uses_u2i(self) -> bool:
        """Whether this arm's users may be reached by U2I (a version arm serves the default)."""
        return self.target != "i2i2u"


def parse_arms(spec: str) -> tuple[Arm, ...]:
    """``A=i2i2u:50,B=both:50`` -> arms; empty -> no experiment. Raises ValueError."""
    arms = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        name, eq, rest = part.partition("=")
        target, colon, weight = rest.rpartition(":")
        if not eq or not colon or not name.strip() or not target.strip():
            raise ValueError(f"arm {part!r} is not NAME=TARGET:WEIGHT")
        try:
            w = float(weight)
        except ValueError:
            raise ValueError(f"arm {part!r}: weight {weight!r} is not a number") from None
        if w <= 0:
            raise ValueError(f"arm {part!r}: weight must be positive")
        arms.append(Arm(name.strip(), target.strip(), w))
    if len({a.name for a in arms}) != len(arms):
        raise ValueError(f"arm names repeat in {spec!r}")
    return tuple(arms)


def bucket(user_id: str, salt: str) -> int:
    """A user's bucket in [0, BUCKETS): keyed BLAKE2b, so a new salt reshuffles users."""
    digest = hashlib.blake2b(user_id.encode(), key=salt.encode()[:64], digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def assign(user_id: str, arms: tuple[Arm, ...], salt: str) -> Arm | None:
    """The user's arm (None when no experiment runs)."""
    if not arms:
        return None
    total = sum(a.weight for a in arms)
    point = bucket(user_id, salt) / BUCKETS * total
    edge = 0.0
    for arm in arms:
        edge += arm.weight
        if point < edge:
            return arm
    return arms[-1]


def check_servable(arms: tuple[Arm, ...]) -> None:
    """Refuse version arms: one worker serves one model version at a time (for now)."""
    versions = [a for a in arms if not a.is_policy]
    if versions:
        raise ValueError(
            f"arms {[a.name for a in versions]} name model versions; only policy arms "
            f"({', '.join(sorted(POLICIES))}) are served so far")
