"""Throwaway credentials for the moto S3 server the tests run on loopback
(moto accepts any). One importable home, since a nested conftest.py cannot
import the top-level one by name."""

S3_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1"}
