"""The house limit on module size (STYLE.md: modules of 150 to 550 lines, under ~600): every
module of the package, so a merge that pushes one over fails here, naming it, instead of
the limit being checked for the few modules someone remembered."""

from __future__ import annotations

from pathlib import Path

import pinnace

LIMIT = 600


def test_every_module_stays_under_the_house_limit() -> None:
    package = Path(pinnace.__file__).parent
    over = {str(path.relative_to(package)): n for path in sorted(package.rglob("*.py"))
            if (n := len(path.read_text().splitlines())) >= LIMIT}
    assert over == {}, f"modules of {LIMIT} lines or more: split them by idea"
