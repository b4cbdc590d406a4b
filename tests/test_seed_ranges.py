"""Phantom seed ranges are disjoint by role within each bundle (docs/design.md, Choices on validation data).

A bundle's configs simulate their default data with ``phantom_datalist(organ, folder, n=..., seed=...)``: cases
``seed .. seed + n - 1``. The ids say the role: training, validation, held-out (``test_datalist``), and the benefit
experiment's pool and test cases. A held-out or benefit case that is also a training or validation case would make
a model card's number a training number; this test reads every config and refuses any overlap.
"""

import re
from pathlib import Path

import pytest
import yaml

BUNDLES = sorted(path.parent.parent for path in (Path(__file__).parents[1] / "bundles").glob("*/configs/metadata.json"))
CALL = re.compile(r"phantom_datalist\((?P<arguments>.*)\)")
ROLES = {"train_datalist": "training", "generate_sources": "training", "val_datalist": "validation", "test_datalist": "held-out",
         "pool_cases": "benefit pool", "test_cases": "benefit test",
         # brain_tumor_fabrication: healthy subjects and annotated tumour subjects in every role
         "healthy_datalist": "training", "annotated_datalist": "training", "val_healthy_datalist": "validation",
         "val_annotated_datalist": "validation", "test_annotated_datalist": "held-out",
         "generate_healthy": "training", "healthy_pool_cases": "benefit healthy pool",
         # input_summary.yaml: the cases its threshold is chosen on
         "input_check_validation": "validation", "input_check_healthy": "validation",
         "input_check_annotated": "validation"}


def seed_ranges(bundle: Path) -> dict[str, set[tuple[int, int, str]]]:
    """Role -> {(first seed, last seed, where)} of every phantom dataset the bundle's configs simulate."""
    found: dict[str, set[tuple[int, int, str]]] = {}
    for config in sorted((bundle / "configs").glob("*.yaml")):
        content = yaml.safe_load(config.read_text())
        for key, value in content.items():
            if not isinstance(value, str) or not (call := CALL.search(value)):
                continue
            assert key in ROLES, f"{config.name}: {key} simulates phantom data; give it a role in this test"
            arguments = call["arguments"]
            seed_match = re.search(r"seed=(@?\w+)(?:\s*\+\s*(\d+))?", arguments)  # a number, or @id [+ offset]
            seed = seed_match[1]
            seed = (int(content[seed[1:]]) if seed.startswith("@") else int(seed)) + int(seed_match[2] or 0)
            n = re.search(r"\bn=(@?\w+)", arguments)[1]
            n = int(content[n[1:]]) if n.startswith("@") else int(n)
            found.setdefault(ROLES[key], set()).add((seed, seed + n - 1, f"{config.name}:{key}"))
    return found


@pytest.mark.parametrize("bundle", BUNDLES, ids=lambda path: path.name)
def test_seed_ranges_of_different_roles_do_not_overlap(bundle):
    ranges = seed_ranges(bundle)
    assert {"training", "validation", "held-out"} <= set(ranges), ranges
    roles = sorted(ranges)
    for index, role in enumerate(roles):
        for other in roles[index + 1:]:
            for first, last, where in ranges[role]:
                for other_first, other_last, other_where in ranges[other]:
                    assert last < other_first or other_last < first, (
                        f"{bundle.name}: {role} seeds {first}-{last} ({where}) overlap {other} seeds "
                        f"{other_first}-{other_last} ({other_where})"
                    )
