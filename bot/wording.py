"""Words people read: counts with the right plural, arXiv category codes with their names.

Used wherever the bot shows a count or a category to a person (command output,
logs, pages, e-mails), so "1 recipients" and a bare "q-bio.NC" appear nowhere.
"""

from __future__ import annotations

# Irregular plurals of the nouns the bot counts; the rest take an "s".
_PLURALS = {
    "summary": "summaries",
    "delivery": "deliveries",
    "category": "categories",
    "address": "addresses",
    "entry": "entries",
    "was": "were",
}


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """ "1 summary", "3 summaries", "0 recipients" (`nouns`: the plural when it is not regular)."""
    many = nouns or _PLURALS.get(noun, noun + "s")
    return f"{count} {noun if count == 1 else many}"


#: arXiv's names of its categories (https://arxiv.org/category_taxonomy), those summaries on
#: ShortScience.org are filed under and the ones the settings offer by default
ARXIV_CATEGORIES: dict[str, str] = {
    "cs.AI": "Artificial Intelligence",
    "cs.CC": "Computational Complexity",
    "cs.CL": "Computation and Language",
    "cs.CR": "Cryptography and Security",
    "cs.CV": "Computer Vision and Pattern Recognition",
    "cs.CY": "Computers and Society",
    "cs.DC": "Distributed, Parallel, and Cluster Computing",
    "cs.DS": "Data Structures and Algorithms",
    "cs.GR": "Graphics",
    "cs.GT": "Computer Science and Game Theory",
    "cs.HC": "Human-Computer Interaction",
    "cs.IR": "Information Retrieval",
    "cs.IT": "Information Theory",
    "cs.LG": "Machine Learning",
    "cs.LO": "Logic in Computer Science",
    "cs.MA": "Multiagent Systems",
    "cs.MM": "Multimedia",
    "cs.NE": "Neural and Evolutionary Computing",
    "cs.PL": "Programming Languages",
    "cs.RO": "Robotics",
    "cs.SD": "Sound",
    "cs.SE": "Software Engineering",
    "cs.SI": "Social and Information Networks",
    "eess.AS": "Audio and Speech Processing",
    "eess.IV": "Image and Video Processing",
    "eess.SP": "Signal Processing",
    "eess.SY": "Systems and Control",
    "math.NA": "Numerical Analysis",
    "math.OC": "Optimization and Control",
    "math.PR": "Probability",
    "math.ST": "Statistics Theory",
    "physics.comp-ph": "Computational Physics",
    "q-bio.BM": "Biomolecules",
    "q-bio.GN": "Genomics",
    "q-bio.NC": "Neurons and Cognition",
    "q-bio.QM": "Quantitative Methods",
    "q-fin.ST": "Statistical Finance",
    "stat.AP": "Applications",
    "stat.CO": "Computation",
    "stat.ME": "Methodology",
    "stat.ML": "Machine Learning",
    "stat.TH": "Statistics Theory",
}


def category_label(code: str) -> str:
    """ "Machine Learning (cs.LG)" for a known arXiv category; the code itself otherwise."""
    name = ARXIV_CATEGORIES.get(code) or next(
        (v for k, v in ARXIV_CATEGORIES.items() if k.casefold() == code.casefold()), None
    )
    return f"{name} ({code})" if name else code
