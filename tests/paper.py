"""What the tests hold the paper-scale code to: the repository's profile and the paper's 18 MMTEB retrieval tasks."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "profiles" / "paper.yaml"

#: The 18 Retrieval tasks of MTEB(Multilingual) that the paper's 60.56 averages over.
PAPER_TASKS = {
    "StackOverflowQA", "TwitterHjerneRetrieval", "AILAStatutes", "ArguAna", "HagridRetrieval",
    "LegalBenchCorporateLobbying", "LEMBPasskeyRetrieval", "SCIDOCS", "SpartQA", "TempReasonL1", "TRECCOVID",
    "WinoGrande", "BelebeleRetrieval", "MLQARetrieval", "StatcanDialogueDatasetRetrieval",
    "WikipediaRetrievalMultilingual", "CovidRetrieval", "MIRACLRetrievalHardNegatives",
}
