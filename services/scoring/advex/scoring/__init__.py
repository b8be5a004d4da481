"""AdvEx scoring service: evasion and poisoning metrics over streamed
per-sample records.

`metrics` (evasion) and `poisoning` are the arithmetic (numpy only, sharing
the batch checks of `checks`), `report` renders them as `advex.v1`
EvasionReport / PoisoningReport, `server` is the thin gRPC adapter of
`advex.internal.v1.ScoringService`.
"""
