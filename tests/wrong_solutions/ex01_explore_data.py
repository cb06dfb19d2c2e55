"""Wrong answers to exercise 1 (exploring the dataset)."""

from tests.wrong_solutions import Wrong

WRONG = {
    "task1": [
        Wrong("counts images, not cells", """
def originals_per_class(records):
    out = {c: 0 for c in CLASS_NAMES}
    for r in records:
        out[r.class_name] += 1
    return out
""", "count cells, not images"),
        Wrong("leaves out the classes it does not see", """
def originals_per_class(records):
    seen = defaultdict(set)
    for r in records:
        seen[r.class_name].add(r.original)
    return {c: len(s) for c, s in seen.items()}
""", "every class is a key"),
        Wrong("counts TRAIN whatever it is given", """
def originals_per_class(records):
    return {c: len({r.original for r in ds.train if r.class_name == c}) for c in CLASS_NAMES}
""", "TEST gave a different answer"),
        Wrong("calls the kit's answer", """
def originals_per_class(records):
    return hl.data.count_by_class(records, distinct_originals=True)
""", "hides hl.data.count_by_class"),
        Wrong("imports the kit's answer", """
from hematolib.data import count_by_class

def originals_per_class(records):
    return count_by_class(records, distinct_originals=True)
""", "uses hl.data.count_by_class"),
    ],
    "task2": [
        Wrong("integer division", """
def copies_per_cell(records):
    images, cells = defaultdict(int), defaultdict(set)
    for r in records:
        images[r.class_name] += 1
        cells[r.class_name].add(r.original)
    return {c: images[c] // len(cells[c]) for c in CLASS_NAMES}
""", "copies per cell; expected"),
        Wrong("pools every class", """
def copies_per_cell(records):
    ratio = len(records) / len({r.original for r in records})
    return {c: ratio for c in CLASS_NAMES}
""", "copies per cell; expected"),
        Wrong("hard-codes rounded numbers", """
def copies_per_cell(records):
    return {"EOSINOPHIL": 36.0, "LYMPHOCYTE": 35.0, "MONOCYTE": 155.0, "NEUTROPHIL": 36.0}
""", "copies per cell; expected"),
        Wrong("leans on the kit's counts", """
def copies_per_cell(records):
    counts, originals = ds.counts()["TRAIN"], ds.original_counts()["TRAIN"]
    return {c: counts[c] / originals[c] for c in CLASS_NAMES}
""", "hides hl.data.count_by_class"),
    ],
    "task3": [
        Wrong("finds nothing", """
def duplicate_pairs(records):
    return []
""", "six files"),
        Wrong("compares file sizes, not contents", """
def duplicate_pairs(records):
    by_size = defaultdict(list)
    for r in records:
        by_size[r.path.stat().st_size].append(r.path.name)
    return sorted((a, b) for names in by_size.values() for i, a in enumerate(sorted(names)) for b in sorted(names)[i + 1:])
""", "six files"),
        Wrong("pairs only neighbours of a group", """
def duplicate_pairs(records):
    by_hash = defaultdict(list)
    for r in records:
        by_hash[hashlib.sha256(r.path.read_bytes()).hexdigest()].append(r.path.name)
    return sorted(p for names in by_hash.values() for p in zip(sorted(names), sorted(names)[1:]))
""", "six files"),
        Wrong("leaves each pair in file order", """
def duplicate_pairs(records):
    by_hash = defaultdict(list)
    for r in records:
        by_hash[hashlib.sha256(r.path.read_bytes()).hexdigest()].append(r.path.name)
    return [(a, b) for names in by_hash.values() for i, a in enumerate(names) for b in names[i + 1:]]
""", "six files"),
    ],
}
