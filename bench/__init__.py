"""The benchmark of ``make bench``: our pipeline against the limits and the peers.

``python -m bench.run`` generates a corpus (:mod:`bench.corpus`), runs every
contender (:mod:`bench.peers`) as its own process against the same Milvus
target, and reports throughput, memory and ratios as JSON and Markdown.
"""
