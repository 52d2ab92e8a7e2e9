"""The experiments: the paper's protocol, the three approaches, the grid of cells and the report."""
