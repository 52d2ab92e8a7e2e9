from compare.verdict import judge  # noqa: F401  (compare.verdict: the per-cell judgement)
