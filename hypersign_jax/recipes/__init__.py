"""Multi-stage recipes (stage runner, the two-stream S2G -> extract -> G2T -> S2T recipe, its summary)."""
