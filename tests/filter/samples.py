"""Texts shared by the tests of retrofit.filter: queries in Latin, Chinese and Thai script and held-out eval texts."""

from __future__ import annotations

Q_EN = "Which river flows through the centre of Berlin and into the Havel at Spandau?"
Q_ZH = "请问长江流经中国哪些省份和直辖市，最终在哪里注入东海？它的全长大约是多少公里？"
Q_TH = "แม่น้ำเจ้าพระยาไหลผ่านจังหวัดใดบ้างก่อนจะไหลลงสู่อ่าวไทยที่จังหวัดสมุทรปราการ"

EVAL_TEXTS = {
    "xquad-en-q-1": "What is the name of the river that flows through the centre of Berlin?",
    "xquad-en-p-1": (
        "The Spree is a river that flows through the Saxony, Brandenburg and Berlin states of Germany, and in the "
        "Ústí nad Labem region of the Czech Republic. Its length is approximately 400 kilometres."
    ),
    "xquad-zh-q-1": "柏林市中心有哪条河流经过？它最终汇入哪条河？",
    "xquad-th-q-1": "แม่น้ำสายใดไหลผ่านใจกลางกรุงเบอร์ลินและไหลลงสู่แม่น้ำฮาเฟิล",
    "xquad-de-q-2": "Wer?",
}

PASSAGE = "A passage about rivers, lakes and the cities along them, with enough text to look like a paragraph."
