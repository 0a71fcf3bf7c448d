"""The benchmark of ``make bench``: our pipeline against the limits and the peers.

``python -m bench.run`` generates a corpus (:mod:`bench.corpus`), runs every
contender (:mod:`bench.peers`, :mod:`bench.beam_rag`) as its own process on the
same chunks (:mod:`bench.chunking`) against the same Milvus target (started
with :mod:`transforms.testing.servers`), and reports throughput, memory and
ratios as JSON and Markdown (:mod:`bench.measure`).
"""
