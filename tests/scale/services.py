"""Loopback services for the scale-out tests: a real S3 emulator (moto's server over HTTP on
127.0.0.1), a fresh Postgres database per test on the running server, and celery workers."""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import threading
import urllib.request
import uuid
from collections.abc import Iterator

PG_ADMIN = os.environ.get("MMRAG_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


@contextlib.contextmanager
def s3_emulator(bucket: str = "mmrag-test") -> Iterator[dict[str, str]]:
    """moto's S3 server on a random loopback port with one bucket; yields the AWS environment."""
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    srv = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    srv.start()
    host, port = srv.get_host_and_port()
    # moto keeps its buckets in module state shared by every server of this process: start empty, so one
    # test never sees (or collects) another's objects
    urllib.request.urlopen(
        urllib.request.Request(f"http://{host}:{port}/moto-api/reset", method="POST"), timeout=10
    )
    env = {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1",
    }
    boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                 aws_access_key_id="test", aws_secret_access_key="test").create_bucket(Bucket=bucket)  # fmt: skip
    try:
        yield env
    finally:
        srv.stop()


@contextlib.contextmanager
def counting_gets() -> Iterator[collections.Counter]:
    """Every object GET the emulator (running in this process) answers, by key."""
    from moto.s3.responses import S3Response

    seen: collections.Counter = collections.Counter()
    lock = threading.Lock()
    real = S3Response.get_object

    def counted(self):
        out = real(self)
        with lock:
            seen[self.parse_key_name()] += 1
        return out

    S3Response.get_object = counted
    try:
        yield seen
    finally:
        S3Response.get_object = real


def postgres_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN, connect_timeout=3):
            return True
    except Exception:  # noqa: BLE001 - any failure: the server is not there
        return False


@contextlib.contextmanager
def fresh_database() -> Iterator[str]:
    """A new, empty database on the running Postgres server; dropped afterwards. Yields its URL."""
    import psycopg

    name = f"mmrag_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as con:
        con.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as con:
            con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
