"""Monitoring: image features, the training reference, drift (PSI, flag rate, embeddings), quality on confirmed
cases, confidence-based performance estimation, the monitor report and the traffic simulation.

Only :mod:`~dermascan.monitoring.features` is imported by the serving process (numpy and PIL); the rest reads
the store and uses :mod:`dermascan.evaluation`'s metrics and intervals.
"""
