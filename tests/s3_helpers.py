"""An S3-compatible server on 127.0.0.1 for the object-storage tests: moto's server mode, in a subprocess.

Why moto: it is pure Python and installs from PyPI (`moto[server]`, in the `test` extra), and its server speaks
the S3 REST protocol over HTTP, so boto3 reaches it through the very client code that users' S3 takes
(endpoint from `S3_ENDPOINT_URL`, signed requests, HEAD/GET/PUT, multipart, listings): Composer's
S3ObjectStore, its uploader and streaming's downloader run unchanged. MinIO would need a Go binary from
outside PyPI. A subprocess, not moto's in-process ThreadedMotoServer, so the tests can pause it (SIGSTOP, a
server that stops answering) and resume it (SIGCONT) with its buckets intact, and so it never competes with
a test for the GIL.

Credentials are real: the server starts with authentication on (moto's INITIAL_NO_AUTH_ACTION_COUNT), the
first requests create an IAM user with an access key, and from then on every request must be signed with
that key, so wrong credentials are refused as AWS refuses them.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.helpers import ServerProcess, free_port

BUCKET = "composer-bert-test"
REGION = "us-east-1"
_ALLOW_ALL = '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}'
_UNSIGNED_SETUP_REQUESTS = 3  # create_user, put_user_policy, create_access_key


class S3Server(ServerProcess):
    """`python -m moto.server` on a free port; `env` is what a child process needs to use it as a user would."""

    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = log_path.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(_UNSIGNED_SETUP_REQUESTS)},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._wait_until_listening(timeout=60)
        self.key_id, self.secret = self._create_user()
        self.env = {
            "S3_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": self.key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret,
            "AWS_DEFAULT_REGION": REGION,
        }
        self.client().create_bucket(Bucket=BUCKET)

    def _wait_until_listening(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto server exited: {self.log_path.read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("moto server did not start listening")

    def _create_user(self) -> tuple[str, str]:
        iam = self._boto("iam", "setup", "setup")
        iam.create_user(UserName="trainer")
        iam.put_user_policy(UserName="trainer", PolicyName="all", PolicyDocument=_ALLOW_ALL)
        key = iam.create_access_key(UserName="trainer")["AccessKey"]
        return key["AccessKeyId"], key["SecretAccessKey"]

    def _boto(self, service: str, key_id: str, secret: str) -> Any:
        import boto3

        return boto3.client(
            service, endpoint_url=self.url, region_name=REGION, aws_access_key_id=key_id, aws_secret_access_key=secret
        )

    def client(self) -> Any:
        """A boto3 S3 client with the server's valid key."""
        return self._boto("s3", self.key_id, self.secret)

    def keys(self, prefix: str) -> list[str]:
        """Every key under `prefix/` (relative to it), sorted."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=f"{prefix}/")
        return sorted(item["Key"][len(prefix) + 1 :] for page in pages for item in page.get("Contents", []))

    def read(self, key: str) -> bytes:
        return self.client().get_object(Bucket=BUCKET, Key=key)["Body"].read()

    def write(self, key: str, data: bytes) -> None:
        self.client().put_object(Bucket=BUCKET, Key=key, Body=data)

    def copy_prefix(self, source: str, target: str) -> None:
        client = self.client()
        for name in self.keys(source):
            client.copy_object(Bucket=BUCKET, Key=f"{target}/{name}", CopySource={"Bucket": BUCKET, "Key": f"{source}/{name}"})

    def puts(self, prefix: str) -> list[str]:
        """The keys under `prefix/` the server received PUTs for, in the order it logged them (relative to it)."""
        marker = f'"PUT /{BUCKET}/{prefix}/'
        lines = [line for line in self.log_path.read_text().splitlines() if marker in line]
        return [line.split(marker, 1)[1].split(" ", 1)[0].split("?", 1)[0] for line in lines]


def bucket_uri(prefix: str) -> str:
    return f"s3://{BUCKET}/{prefix}"
