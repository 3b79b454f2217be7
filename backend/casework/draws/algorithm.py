"""The draw algorithm `es-hmac-sha256-v1`: a pure function of a seed and the inputs stored with the draw.

Kept apart from everything that reads or writes the database so that what
decides a draw is plain to see and can be re-run alone, by `verify_draw`, by a
test, or by anyone re-implementing it from the docs ("Draws, as built"): HMAC-
SHA256 keys from the seed, an Efraimidis–Spirakis weighted order of the
institutions compared in exact integers, and teams filled least-loaded first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cmp_to_key
from typing import Any

from backend.core.crypto import digests

ALGORITHM = "es-hmac-sha256-v1"


def hmac_key(seed: str, message: str) -> int:
    """HMAC-SHA256 keyed with the seed's 32 bytes over the UTF-8 message, read as a big-endian integer."""
    return int.from_bytes(digests.hmac_sha256(bytes.fromhex(seed), message.encode("utf-8")), "big")


def institution_order(seed: str, institutions: Sequence[Mapping[str, Any]]) -> list[str]:
    """Efraimidis–Spirakis weighted order: key u^(1/w), largest first, compared exactly in integers.

    With u = U / 2^256, u_a^(1/w_a) > u_b^(1/w_b) exactly when
    U_a^w_b * 2^(256 w_a) > U_b^w_a * 2^(256 w_b): no floating point, so no
    implementation can round differently. Ties (practically impossible) go to the smaller id.
    """
    keyed = [(item["id"], int(item["weight"]), hmac_key(seed, "institution:" + item["id"])) for item in institutions]

    def compare(a: tuple[str, int, int], b: tuple[str, int, int]) -> int:
        left = a[2] ** b[1] << (256 * a[1])
        right = b[2] ** a[1] << (256 * b[1])
        if left != right:
            return -1 if left > right else 1
        return -1 if a[0] < b[0] else (1 if a[0] > b[0] else 0)

    return [item[0] for item in sorted(keyed, key=cmp_to_key(compare))]


def pick_team(seed: str, institution_id: str, officers: Sequence[Mapping[str, Any]], load: dict[str, int],
              team_size: int, joint: bool) -> list[str]:
    """Least-loaded first, then the largest HMAC key; a joint team takes a new department while one is left."""
    team: list[str] = []
    departments: set[str] = set()
    keys = {o["id"]: hmac_key(seed, f"officer:{institution_id}:{o['id']}") for o in officers}
    for _ in range(team_size):
        pool = [o for o in officers if o["id"] not in team]
        if joint:
            fresh = [o for o in pool if o["department"] not in departments]
            pool = fresh or pool
        best = min(pool, key=lambda o: (load[o["id"]], -keys[o["id"]], o["id"]))
        team.append(best["id"])
        departments.add(best["department"])
    return team


def run(seed: str, inputs: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The draw itself: institutions in weighted order, the first `count` of them, a team for each in turn."""
    officers = sorted(inputs["officers"], key=lambda o: o["id"])
    load = {o["id"]: int(o["load"]) for o in officers}
    chosen = institution_order(seed, inputs["institutions"])[: int(inputs["count"])]
    result = []
    for inst_id in chosen:
        team = pick_team(seed, inst_id, officers, load, int(inputs["team_size"]), bool(inputs["joint"]))
        for oid in team:
            load[oid] += 1
        result.append({"institution_id": inst_id, "officers": team})
    return result
