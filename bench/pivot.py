"""Through English: can the offline generators write answerable Hindi and Thai questions? (issue 13, Done-when 3)

The default generator's accepted Hindi and Thai queries are almost never answerable from their passage
(``reports/bench/answerability.md``: hi 1 of 24, th 0 of 21), and Qwen2.5-Coder-1.5B, asked directly, writes no
usable Hindi or Thai either (``reports/bench/generators.md``). Both models are strongest in English, and every
passage the generate stage samples has an English twin: XQuAD and NTREX are parallel, and a passage's ``source_id``
names its translations. This bench tries the last offline lever, a pivot through English, on the stage's own plans.

For each of the generate stage's first ``--plans`` plans of a language, planned as a short query (the stage's
seeded passage and sentence for that plan index):

- ``qwen_direct``: the stage's instruction prompt with Qwen, in the target language (the baseline; also run for
  de and zh, where Qwen is strongest, to show what the bundled instruction model can do);
- ``qwen_pivot``: Qwen writes the question in English from the English twin of the sentence (the stage's
  instruction prompt, in English), then translates it, shown the target-language sentence for its words;
- ``gemma_pivot``: Gemma 3 270M translates that English question few-shot, shown four human XQuAD question pairs
  (English and the target language, from other training-pool paragraphs);
- ``qwen_bilingual``: Qwen is shown the English and the target-language sentence and writes the question in the
  target language.

Every answer goes through the stage's validation and round trip (the rank of the plan's passage among every pool
passage of its language, under the base model): ``pass`` is what the stage would accept. Whether a query is
answerable can only be read: ``bench/answerability.py`` tallies the labels of ``reports/bench/pivot.json``'s valid
queries (sets ``pivot:<method>``) beside the stage's.

Answers are cached in bench-only response caches (``<base.cache_dir>/bench/pivot-*.jsonl``), so a rerun sends
nothing. A benchmark, not a stage: run it after ``dvc repro``; it writes ``reports/bench/pivot.{json,md}`` and
changes no pipeline output.

Usage::

    python bench/pivot.py --plans 12 --pivot-languages hi,th --direct-languages de,hi,th,zh
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from retrofit.cli import resolved
from retrofit.config import GenerateParams, load_params
from retrofit.generate.base import Backend, GenRequest, GenResponse
from retrofit.generate.cache import ResponseCache, answer_all
from retrofit.generate.ledger import Ledger
from retrofit.generate.pipeline import backend_from_params, response_cache_path
from retrofit.generate.planner import Planned, Planner
from retrofit.generate.roundtrip import RoundTrip, base_embedder
from retrofit.generate.sample_report import markdown_cell
from retrofit.data.passages import load_passages, sentences, snippet
from retrofit.generate.prompts import Attributes, instruction_messages, language_name
from retrofit.generate.validate import LanguageIdentifier, validate
from retrofit.io import iter_jsonl, write_json
from retrofit.runtime import set_threads

METHODS = ("qwen_direct", "qwen_pivot", "gemma_pivot", "qwen_bilingual")
QWEN = {"model": "bundled:qwen2.5-coder-1.5b-instruct", "runtime": "llamacpp", "prompt": "instruct"}
#: The English question's attributes: the stage samples them; the pivot asks for the plainest question.
PLAIN = Attributes("short", "clear", "high school")
SYSTEM = "You write training data for multilingual search engines. Answer with JSON only."
ANSWER = 'Answer exactly as {"query": "..."}.'
SHOTS = 4


def short_query_params(g: GenerateParams, local: dict[str, str] | None = None) -> GenerateParams:
    """The stage's params planning short queries only (the pivot's task), optionally with other ``local`` settings."""
    return g.model_copy(update={"task_types": {"short_query": 1.0},
                                "local": g.local.model_copy(update=local or {})})


def english_twin(plan: Planned, english: dict[str, str], chars: int) -> str:
    """The English sentence parallel to the plan's target: the same sentence index in the English passage (clamped;
    Thai has no sentence marks, so its one "sentence" pairs with the English first one)."""
    parts = sentences(plan.passage.text) or [plan.passage.text]
    index = next((j for j in range(len(parts)) if snippet(plan.passage.text, chars, j) == plan.target), 0)
    return snippet(english[plan.passage.source_id], chars, index)


def translate_messages(question: str, lang: str, target: str) -> tuple[tuple[str, str], ...]:
    """Qwen's translation request: the English question and the target-language sentence for its words."""
    name = language_name(lang)
    user = (f"Translate the question into {name} ({lang}). Keep names and numbers, and use the words of the "
            f"{name} text below where they fit.\n{ANSWER}\n\nQuestion: {question}\n\n{name} text:\n{target}")
    return (("system", SYSTEM), ("user", user))


def bilingual_messages(english: str, lang: str, target: str) -> tuple[tuple[str, str], ...]:
    """Qwen's bilingual request: both texts, one question in the target language."""
    name = language_name(lang)
    user = (f"Write a short question a user would type into a search engine, in {name} ({lang}), that the {name} "
            f"text below answers. The English text says the same thing, to help you understand it.\n{ANSWER}\n\n"
            f"English text:\n{english}\n\n{name} text:\n{target}")
    return (("system", SYSTEM), ("user", user))


def translation_prompt(shots: list[tuple[str, str]], lang: str, question: str) -> str:
    """Gemma's few-shot translation prompt: ``English:`` / ``<Language>:`` pairs, ending after the last label."""
    name = language_name(lang)
    return "".join(f"English: {en}\n{name}: {tr}\n\n" for en, tr in shots) + f"English: {question}\n{name}:"


def question_pairs(prepared: Path, lang: str) -> list[tuple[str, str, str]]:
    """``(English question, its translation, paragraph source_id)`` for every XQuAD training-pool question."""
    by_id: dict[str, dict[str, str]] = {}
    para: dict[str, str] = {}
    for r in iter_jsonl(prepared / "xquad" / "questions.jsonl"):
        if r["split"] == "train" and r["lang"] in ("en", lang):
            by_id.setdefault(r["id"], {})[r["lang"]] = r["text"]
            para[r["id"]] = f"xquad:{r['paragraph_id']}"
    return [(q["en"], q[lang], para[i]) for i, q in sorted(by_id.items()) if "en" in q and lang in q]


def chat_request(messages: tuple[tuple[str, str], ...], g: GenerateParams, seed: int, meta: dict) -> GenRequest:
    """A greedy chat request with the stage's token budget."""
    return GenRequest(messages=messages, max_tokens=g.max_tokens, temperature=0.0, seed=seed, meta=meta)


def answer(backend: Backend, requests: list[GenRequest], cache: ResponseCache) -> dict[str, GenResponse]:
    """Every request's response, from the cache or the backend; a failed request ends the bench."""
    got, failed = answer_all(backend, requests, cache)
    if failed:
        raise SystemExit(f"{len(failed)} requests failed; rerun to retry them (answers are cached)")
    return got


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--plans", type=int, default=12, help="short-query plans per language (the stage's first)")
    ap.add_argument("--pivot-languages", default="hi,th")
    ap.add_argument("--direct-languages", default="de,hi,th,zh")
    ap.add_argument("--out", type=Path, default=Path("reports/bench/pivot"))
    args = ap.parse_args()
    params = resolved(load_params("params.yaml"))
    set_threads(params.base.threads)
    g = params.generate
    cache_dir = Path(params.base.cache_dir)
    prepared = Path("data/prepared")
    pivot_langs, direct_langs = args.pivot_languages.split(","), args.direct_languages.split(",")
    langs = sorted(set(pivot_langs) | set(direct_langs))
    passages = load_passages(prepared, g.passage_sources, sorted({*g.languages, "en"}))
    english = {p.source_id: p.text for p in passages["en"]}
    gq = short_query_params(g, QWEN)
    planner = Planner(gq, params.base.seed, passages, {})  # the stage's seeded plans; instruction prompts
    plans = {lang: [planner.plan(lang, i) for i in range(args.plans)] for lang in langs}
    chars = g.local.snippet_chars

    # Qwen, step 1: direct questions, English questions and bilingual questions
    qwen = backend_from_params(gq, Ledger(0, 0), cache_dir, False, params.base.threads)
    first: list[GenRequest] = [p.request for lang in direct_langs for p in plans[lang]]
    en_req, bi_req = {}, {}
    for lang in pivot_langs:
        for p in plans[lang]:
            en = english_twin(p, english, chars)
            en_req[(lang, p.index)] = chat_request(instruction_messages("short_query", "en", en, PLAIN), g, p.seed,
                                                   {"lang": "en"})
            bi_req[(lang, p.index)] = chat_request(bilingual_messages(en, lang, p.target), g, p.seed, {"lang": lang})
    with ResponseCache(response_cache_path(qwen.identity(), cache_dir / "bench", "pivot")) as qcache:
        got = answer(qwen, first + list(en_req.values()) + list(bi_req.values()), qcache)
        english_q = {k: validate(got[r.key].text, got[r.key].finish_reason, chat=True, lang="en", passage="",
                                 exemplars=[], min_chars=g.min_chars, max_chars=g.max_chars, langid=None).query
                     for k, r in en_req.items()}
        # Qwen, step 2: translate each English question
        target = {(lang, p.index): p.target for lang in pivot_langs for p in plans[lang]}
        tr_req = {k: chat_request(translate_messages(q, k[0], target[k]), g, 0, {"lang": k[0]})
                  for k, q in english_q.items() if q}
        got |= answer(qwen, list(tr_req.values()), qcache)

    # Gemma: few-shot translation of the same English questions (no repetition penalty: names must be copied)
    gg = g.model_copy(update={"local": g.local.model_copy(update={"repetition_penalty": 1.0})})
    gemma = backend_from_params(gg, Ledger(0, 0), cache_dir, False, params.base.threads)
    gm_req, gm_shots = {}, {}
    for lang in pivot_langs:
        pairs = question_pairs(prepared, lang)
        for p in plans[lang]:
            q = english_q.get((lang, p.index))
            if not q:
                continue
            rng = random.Random(f"{params.base.seed}:pivot:{lang}:{p.index}")
            shots = [(en, tr) for en, tr, sid in rng.sample(pairs, 4 * SHOTS) if sid != p.passage.group][:SHOTS]
            gm_shots[(lang, p.index)] = [tr for _, tr in shots]
            gm_req[(lang, p.index)] = GenRequest(prompt=translation_prompt(shots, lang, q), max_tokens=g.max_tokens,
                                                 temperature=0.0, seed=p.seed, stop=("\n",), meta={"lang": lang})
    with ResponseCache(response_cache_path(gemma.identity(), cache_dir / "bench", "pivot")) as gcache:
        got |= answer(gemma, list(gm_req.values()), gcache)

    # validate and rank as the stage does
    roundtrip = RoundTrip(base_embedder(cache_dir, params.base.bf16_inference), g.roundtrip_top_k)
    langid = LanguageIdentifier(g.languages)
    result: dict = {"settings": {"plans": args.plans, "roundtrip_top_k": g.roundtrip_top_k, "shots": SHOTS,
                                 "qwen": qwen.identity(), "gemma": gemma.identity()}, "languages": {}}
    for lang in langs:
        asked = {"qwen_direct": {p.index: (p.request, False, p.exemplars) for p in plans[lang]}
                 if lang in direct_langs else {},
                 "qwen_pivot": {i: (r, False, []) for (la, i), r in tr_req.items() if la == lang},
                 "gemma_pivot": {i: (r, True, gm_shots[(la, i)]) for (la, i), r in gm_req.items() if la == lang},
                 "qwen_bilingual": {i: (r, False, []) for (la, i), r in bi_req.items() if la == lang}}
        rows: list[dict] = []
        for p in plans[lang]:
            for method in METHODS:
                if p.index not in asked[method]:
                    continue
                req, few_shot, shown = asked[method][p.index]
                resp = got[req.key]
                v = validate(resp.text, resp.finish_reason, chat=not few_shot, lang=lang, passage=p.positive,
                             exemplars=shown, min_chars=g.min_chars, max_chars=g.max_chars, langid=langid)
                rows.append({"id": f"{method}-{lang}-{p.index}", "method": method, "index": p.index,
                             "query": v.query, "reason": v.reason, "rank": None, "target": p.target,
                             "positive": p.positive, "english": english_q.get((lang, p.index))})
        valid = [r for r in rows if r["reason"] is None]
        pool = sorted({x.text for x in planner.pool[lang]} | {p.positive for p in plans[lang]})
        for r, rank in zip(valid, roundtrip.ranks([r["query"] for r in valid], [r["positive"] for r in valid], pool)):
            r["rank"] = rank
        result["languages"][lang] = rows
        for method in METHODS:
            mine = [r for r in rows if r["method"] == method]
            if mine:
                ok = [r for r in mine if r["rank"] is not None]
                print(f"{lang} {method}: valid {len(ok)}/{len(mine)}, pass "
                      f"{sum(r['rank'] < g.roundtrip_top_k for r in ok)}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out.with_suffix(".json"), result)
    write_markdown(result, args.out.with_suffix(".md"))


def summary(rows: list[dict], k: int) -> dict[str, int]:
    """Requests, valid answers, answers the stage would accept (rank below ``k``) and rank-0 answers."""
    ok = [r for r in rows if r["rank"] is not None]
    return {"requests": len(rows), "valid": len(ok), "pass": sum(r["rank"] < k for r in ok),
            "rank0": sum(r["rank"] == 0 for r in ok)}


def write_markdown(result: dict, out: Path) -> None:
    """``pivot.md``: per language and method the stage's verdicts, then every valid query beside its sentence."""
    s = result["settings"]
    k = s["roundtrip_top_k"]
    lines = ["# Through English: Hindi and Thai questions by pivot (`bench/pivot.py`)", "",
             (f"The generate stage's first {s['plans']} plans per language, each planned as a short query. Qwen: "
              f"`{s['qwen']['model']}`; Gemma: `{s['gemma']['model']}` ({s['shots']} human XQuAD question pairs "
              f"as shots). Pass: valid, and the plan's passage ranks within {k} of every pool passage of its "
              "language (what the stage accepts). Answerability of the valid queries: "
              "`reports/bench/answerability.md`."), "",
             "| language | method | requests | valid | pass | rank 0 |", "|---|---|---:|---:|---:|---:|"]
    for lang, rows in result["languages"].items():
        for method in METHODS:
            mine = [r for r in rows if r["method"] == method]
            if mine:
                c = summary(mine, k)
                lines.append(f"| {lang} | {method} | {c['requests']} | {c['valid']} | {c['pass']} | {c['rank0']} |")
    lines.append("")
    for lang, rows in result["languages"].items():
        lines += [f"## {lang}", "", "| plan | method | query (rt rank or rejection) | English question | sentence |",
                  "|---:|---|---|---|---|"]
        for r in rows:
            verdict = r["rank"] if r["rank"] is not None else f"rejected: {r['reason']}"
            eng = markdown_cell(r["english"] or "-", 100) if r["method"] in ("qwen_pivot", "gemma_pivot") else ""
            lines.append(f"| {r['index']} | {r['method']} | {markdown_cell(r['query'] or '(empty)', 140)} ({verdict}) "
                         f"| {eng} | {markdown_cell(r['target'], 140)} |")
        lines.append("")
    out.write_text("\n".join(lines), encoding="utf-8")


if __name__ == "__main__":
    main()
