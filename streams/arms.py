"""A/B arms: users split by a stable keyed hash; each arm a serving policy, a model version, or
both.

``COLDSTREAM_AB_ARMS`` is ``NAME=TARGET:WEIGHT,...`` where TARGET is one of

- ``POLICY``: ``i2i2u`` (I2I2U only) or ``both`` (I2I2U plus U2I gated by the user's boundary,
  the default policy), served by the registry's current version: ``A=i2i2u:50,B=both:50``;
- ``VERSION``: a registry version, served with the default policy:
  ``control=v1:50,treatment=v2:50``;
- ``VERSION/POLICY``: that version with that policy: ``treatment=v2/i2i2u:50``.

A version named like a policy (``both``, ``i2i2u``) is read as the policy. Arms without a
version and a version arm naming the current version are served by the current version; each
other version serves its arms beside it, from its own collections (``streams.context``).

Ending a test (:func:`end_test`, ``coldstream ab end``) goes through the model registry: it
records the experiment (its canonical spec) as ended, so workers stop the arms, and points
CURRENT at the winning arm's version (``--promote NAME``) or at the first arm's, the control
(``--rollback``); workers then serve that one version to everyone (the swap path).

Assignment is stateless: the same user, salt and arms give the same arm on every worker and
after every restart, so it needs no table, and a replayed event is assigned as before.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from encoders.artifacts import Registry

POLICIES = frozenset({"i2i2u", "both"})
DEFAULT_POLICY = "both"
BUCKETS = 10_000


@dataclass(frozen=True)
class Arm:
    name: str
    policy: str  # one of POLICIES
    weight: float
    version: str | None = None  # None: the version the worker serves (the registry's current)

    @property
    def uses_u2i(self) -> bool:
        """Whether this arm's users may be reached by U2I."""
        return self.policy != "i2i2u"


def parse_target(target: str) -> tuple[str | None, str]:
    """``both`` -> (None, "both"); ``v2`` -> ("v2", "both"); ``v2/i2i2u`` -> ("v2", "i2i2u")."""
    if target in POLICIES:
        return None, target
    version, slash, policy = target.partition("/")
    version, policy = version.strip(), policy.strip()
    if not version or (slash and policy not in POLICIES):
        raise ValueError(f"target {target!r} is not POLICY, VERSION or VERSION/POLICY "
                         f"(policies: {', '.join(sorted(POLICIES))})")
    return version, policy if slash else DEFAULT_POLICY


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
        if not w > 0 or w == float("inf"):
            raise ValueError(f"arm {part!r}: weight must be positive and finite")
        version, policy = parse_target(target.strip())
        arms.append(Arm(name.strip(), policy, w, version))
    if len({a.name for a in arms}) != len(arms):
        raise ValueError(f"arm names repeat in {spec!r}")
    return tuple(arms)


def format_arms(arms: tuple[Arm, ...]) -> str:
    """The canonical spec of ``arms`` (parse_arms(format_arms(a)) == a): an experiment's key."""
    def target(a: Arm) -> str:
        if a.version is None:
            return a.policy
        return a.version if a.policy == DEFAULT_POLICY else f"{a.version}/{a.policy}"

    return ",".join(f"{a.name}={target(a)}:{a.weight!r}" for a in arms)


def versions_of(arms: tuple[Arm, ...]) -> list[str]:
    """Model versions the arms name, in order, once each."""
    return list(dict.fromkeys(a.version for a in arms if a.version))


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


def arm_caps(arms: tuple[Arm, ...], cap: int) -> dict[str, int]:
    """Each arm's share of a per-song cap, by weight (at least 1 each).

    A shared cap would let one arm's candidates crowd out the other's (an I2I2U-only arm's
    high-scoring listeners take slots a U2I arm needs), so the arms would not be compared
    on equal budgets; split by weight, each arm gets the budget it would have on its share
    of the traffic, and the total stays about ``cap``.
    """
    total = sum(a.weight for a in arms)
    return {a.name: max(1, round(cap * a.weight / total)) for a in arms}


def end_test(registry: Registry, arms: tuple[Arm, ...], promote: str | None) -> str | None:
    """End the test: ``promote`` names the winning arm (None: roll back to the first arm).

    After it every user gets the default policy, so the chosen arm must serve that policy.
    The test is marked ended before CURRENT moves: a worker that looks in between stops the
    arms and keeps the old version, rather than building the old version as an arm.
    Returns the registry's current version. Raises ValueError.
    """
    if not arms:
        raise ValueError("no A/B test runs: COLDSTREAM_AB_ARMS is empty")
    arm = arms[0] if promote is None else next((a for a in arms if a.name == promote), None)
    if arm is None:
        raise ValueError(f"no arm {promote!r} in {format_arms(arms)}")
    if arm.policy != DEFAULT_POLICY:
        raise ValueError(f"arm {arm.name} serves policy {arm.policy}; after a test every user "
                         f"gets {DEFAULT_POLICY}: change the worker's settings instead")
    if arm.version:
        registry.load(arm.version)  # refuse a broken artifact before ending anything
    registry.end_experiment(format_arms(arms))
    if arm.version:
        registry.promote(arm.version)
    return registry.current()
