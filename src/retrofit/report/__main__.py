"""``python -m retrofit.report readme [README.md] [reports/results]``: regenerate the README's results block."""

import sys
from pathlib import Path

from retrofit.report.readme import update_readme


def main(argv: list[str]) -> None:
    """Rewrite the README's results block from ``reports/results`` and say whether it changed."""
    if argv[:1] != ["readme"]:
        sys.exit("usage: python -m retrofit.report readme [README.md] [reports/results]")
    target = Path(argv[1] if len(argv) > 1 else "README.md")
    changed = update_readme(target, Path(argv[2] if len(argv) > 2 else "reports/results"))
    print(f"{target}: results block {'updated' if changed else 'already current'}")


if __name__ == "__main__":
    main(sys.argv[1:])
