"""AdvEx scoring service: evasion metrics over streamed per-sample records.

`metrics` is the arithmetic (numpy only), `report` renders it as an
`advex.v1.Report`, `server` is the thin gRPC adapter.
"""
