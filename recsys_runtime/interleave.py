"""Team-draft interleaving (Radlinski, Kurup and Joachims 2008): one list made from two rankings,
each item credited to the ranking that placed it."""

from __future__ import annotations

import hashlib

import numpy as np

TEAMS = ("primary", "candidate")


def seed_of(*parts: object) -> int:
    """A stable seed for a request's coin flips, so the same request always gets the same list."""
    return int.from_bytes(hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest(), "big")


def team_draft(first: list, second: list, k: int, seed: int) -> tuple[list[int], list[int]]:
    """Positions into ``first`` / ``second`` picked in turn: the team with fewer picks goes next, a
    coin flip breaks ties, and each team takes its highest-ranked item not already in the list.
    Returns (team of each picked item: 0 first, 1 second; the item's position in its team's list)."""
    rng = np.random.default_rng(seed)
    rankings = (first, second)
    cursor, picks = [0, 0], [0, 0]
    chosen: set = set()
    teams: list[int] = []
    positions: list[int] = []
    while len(teams) < k:
        for team in (0, 1):
            ranking = rankings[team]
            while cursor[team] < len(ranking) and ranking[cursor[team]] in chosen:
                cursor[team] += 1
        left = [cursor[t] < len(rankings[t]) for t in (0, 1)]
        if not any(left):
            break
        if picks[0] != picks[1]:
            team = 0 if picks[0] < picks[1] else 1
        else:
            team = int(rng.random() < 0.5)
        if not left[team]:
            team = 1 - team
        item = rankings[team][cursor[team]]
        chosen.add(item)
        teams.append(team)
        positions.append(cursor[team])
        picks[team] += 1
        cursor[team] += 1
    return teams, positions
