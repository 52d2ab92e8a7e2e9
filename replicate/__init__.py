"""Replication of Zhu et al. 2019: cohort, preprocessing, patches, experiments, report."""
