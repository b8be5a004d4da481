"""AdvEx attack service: safe Keras loading, model inspection, evasion attacks.

`server.py` is the gRPC adapter. The domain modules know nothing of gRPC
(objects are downloaded and verified by `advex.core.fetch`): `models.py`
loads models safely and derives their logits, `datasets.py` reads and checks
npz datasets, `engine.py` runs the evasion attacks over a sample range (one
function per attack; `attack_run.py` is what each one reads;
`carlini_wagner.py`, `spsa.py` and `apgd.py` hold the longer ones), and
`poisoning.py`, `triggers.py` and `training.py` the backdoor poisoning.
TensorFlow is imported only when first used, so importing this package is
cheap.
"""
