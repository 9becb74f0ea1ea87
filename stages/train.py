"""Stage ``train``: retrofit the base model on the mined mixture with InfoNCE (sentence-transformers' trainer).

Writes ``models/<name>/`` (a sentence-transformers directory with a model card), ``reports/train/<name>/``
(``info.json`` and DVCLive curves). Checkpoints go to ``<base.cache_dir>/checkpoints/<name>-<key>``, the key
covering everything that decides the weights (:func:`retrofit.train.trainer.checkpoint_key`); a killed run resumes from the
last one, and they are deleted once the model is written. Sweep points pass their differences with ``--set``. Under ``torchrun``/``accelerate launch`` every
rank trains and only rank 0 writes.
"""

from pathlib import Path

from retrofit import cli
from retrofit.embed.work import WORK
from retrofit.io import atomic_dir, read_jsonl, write_json
from retrofit.mine import TRAIN_ROW
from retrofit.models.load import check_model_dir
from retrofit.runtime import is_main_process, runtime_choices
from retrofit.train.mixture import select_mixture
from retrofit.train.trainer import checkpoint_key, train_model


def main() -> None:
    p = cli.parser(__doc__)
    p.add_argument("--name", required=True, help="run name: models/<name>, reports/train/<name>")
    args = p.parse_args()
    params = cli.init_stage(args)
    cfg = params.train
    mined = read_jsonl("data/mined/train.jsonl", TRAIN_ROW)  # checked before any work
    check_model_dir("models/base", "base_model")
    rows = select_mixture(mined, cfg, params.base.seed)
    key = checkpoint_key(cfg, params.negatives.hard, rows, Path("models/base"))  # never resume a stale run
    ckpt = Path(params.base.cache_dir) / "checkpoints" / f"{args.name}-{key}"
    run = dict(name=args.name, checkpoint_dir=ckpt, hard_negatives=params.negatives.hard,
               trunk_root=Path(params.base.cache_dir))
    if not is_main_process():  # multi-GPU: every rank trains; only rank 0 writes models/ and reports/
        train_model(Path("models/base"), rows, cfg, Path("models") / args.name, live_dir=None, **run)
        return
    with atomic_dir(Path("reports/train") / args.name) as report:
        info = train_model(Path("models/base"), rows, cfg, Path("models") / args.name, live_dir=report / "live", **run)
        write_json(report / "info.json", {**info, "runtime": runtime_choices(), "work": WORK.to_json()})
    print(f"train: {args.name}: {info['mixture']['rows']} rows, {info['steps']} steps, loss {info['train_loss']}")


if __name__ == "__main__":
    cli.run(main)
