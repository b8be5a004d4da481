"""AdvEx storage service: presigned S3 URLs, upload verification, artifact registry.

`server.py` is the gRPC adapter; `artifacts.py` holds the rules; `objects.py`
talks to S3, `registry.py` to SQL, and `verify.py` checks uploaded files
without running any of their code.
"""
