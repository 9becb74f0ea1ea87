"""Stage ``teacher``: materialise ``negatives.teacher``, the hard-negative mining model, at ``models/teacher``.

``base`` (the embedded default) mines with ``models/base`` and writes only a pointer; a local directory or a hub
id (the paper-scale profile's ``intfloat/multilingual-e5-large``) is materialised once, fails fast offline, and
is shared through the DVC remote like every other output. The ``mine`` stage reads ``models/teacher``.
"""

from pathlib import Path

from retrofit import cli
from retrofit.models import load as models


def main() -> None:
    args = cli.parser(__doc__).parse_args()
    params = cli.init_stage(args)
    info = models.materialize_teacher(params.negatives.teacher, Path("models/teacher"), Path("models/base"))
    where = info.get("use") or f"models/teacher ({info.get('n_parameters', '?')} parameters)"
    print(f"teacher: {params.negatives.teacher} -> {where}")


if __name__ == "__main__":
    cli.run(main)
