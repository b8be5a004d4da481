"""AdvEx attack service: safe Keras loading, model inspection, evasion attacks.

`server.py` is the gRPC adapter. The domain modules know nothing of gRPC:
`fetch.py` downloads and verifies objects, `models.py` loads models safely and
derives their logits, `datasets.py` reads and checks npz datasets, and
`engine.py` runs the CleverHans attacks. Only `models.py` and `engine.py`
import TensorFlow, and only when first used, so importing this package is cheap.
"""
