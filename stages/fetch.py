"""Stage ``fetch``: download every pinned public file, or copy it from ``RETROFIT_DATA_MIRROR``, and verify it.

Writes ``data/raw/<dataset>/<file>``, byte for byte the files listed in ``src/retrofit/assets/sources.json``
(repository, commit, path, sha256). The directory appears only once every file has verified.
"""

from pathlib import Path

from retrofit import cli
from retrofit.data import sources


def main() -> None:
    args = cli.parser(__doc__).parse_args()
    cli.init_stage(args)
    mirror = sources.mirror_from_env()
    manifest = sources.fetch(sources.load_registry(), Path("data/raw"), mirror=mirror)
    print(f"fetch: {len(manifest)} files verified into data/raw (from {mirror or 'their public sources'})")


if __name__ == "__main__":
    cli.run(main)
