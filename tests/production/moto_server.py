"""Start moto in server mode on 127.0.0.1 with IAM enforcement and a fault switch; print its keys.

Run as a subprocess by the ``moto_s3`` fixture, so that moto's process-wide IAM enforcement
(``INITIAL_NO_AUTH_ACTION_COUNT``) cannot leak into other tests. The script:

1. starts a threaded moto server on a free port, wrapped in a WSGI middleware that can respond to
   chosen requests with HTTP 500 (a transient storage error from a real server);
2. creates the buckets and three IAM users while authentication is still off: ``admin``
   (everything), ``reader`` (list and read the input bucket) and ``writer`` (``s3:PutObject``
   on ``output/*`` of the output bucket, nothing else);
3. turns authentication on and prints one JSON line with the port and the keys;
4. serves until stdin closes.

Faults are set with ``POST /__faults__`` and a JSON body ``{"method": "GET", "contains": "key",
"count": N}`` (``count`` -1 fails until cleared); ``DELETE /__faults__`` clears them.
"""

from __future__ import annotations

import json
import sys
import threading

import boto3
from moto import settings
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

REGION = "ap-northeast-1"
INPUT_BUCKET = "client-in"
OUTPUT_BUCKET = "client-out"


class FaultInjector:
    """WSGI middleware that responds to matching requests with 500 InternalError while a rule has count left."""

    def __init__(self, app):
        self.app = app
        self.rules: list[dict] = []
        self.hits: dict[str, int] = {}
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == "/__faults__":
            return self._control(environ, start_response)
        method = environ.get("REQUEST_METHOD", "")
        with self.lock:
            for rule in self.rules:
                if rule["method"] == method and rule["contains"] in path and rule["count"] != 0:
                    rule["count"] -= 1 if rule["count"] > 0 else 0
                    self.hits[rule["contains"]] = self.hits.get(rule["contains"], 0) + 1
                    body = b"<Error><Code>InternalError</Code><Message>injected fault</Message></Error>"
                    start_response("500 Internal Server Error", [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))])
                    return [body]
        return self.app(environ, start_response)

    def _control(self, environ, start_response):
        method = environ["REQUEST_METHOD"]
        with self.lock:
            if method == "POST":
                length = int(environ.get("CONTENT_LENGTH") or 0)
                self.rules.append(json.loads(environ["wsgi.input"].read(length)))
            elif method == "DELETE":
                self.rules.clear()
            body = json.dumps({"rules": self.rules, "hits": self.hits}).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]


def _policy(statements: list[dict]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


def _create_user(iam, name: str, policy: str) -> dict[str, str]:
    iam.create_user(UserName=name)
    arn = iam.create_policy(PolicyName=f"{name}-policy", PolicyDocument=policy)["Policy"]["Arn"]
    iam.attach_user_policy(UserName=name, PolicyArn=arn)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return {"key": key["AccessKeyId"], "secret": key["SecretAccessKey"]}


def main() -> None:
    app = FaultInjector(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_port}"

    setup = {"endpoint_url": endpoint, "region_name": REGION, "aws_access_key_id": "setup", "aws_secret_access_key": "setup"}
    s3 = boto3.client("s3", **setup)
    for bucket in (INPUT_BUCKET, OUTPUT_BUCKET):
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_bucket_versioning(Bucket=OUTPUT_BUCKET, VersioningConfiguration={"Status": "Enabled"})
    iam = boto3.client("iam", **setup)
    keys = {
        "admin": _create_user(iam, "admin", _policy([{"Effect": "Allow", "Action": "*", "Resource": "*"}])),
        "reader": _create_user(iam, "reader", _policy([
            {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": f"arn:aws:s3:::{INPUT_BUCKET}"},
            {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": f"arn:aws:s3:::{INPUT_BUCKET}/*"},
        ])),
        "writer": _create_user(iam, "writer", _policy([
            {"Effect": "Allow", "Action": ["s3:PutObject"], "Resource": f"arn:aws:s3:::{OUTPUT_BUCKET}/output/*"},
        ])),
    }
    settings.INITIAL_NO_AUTH_ACTION_COUNT = 0  # every request from now on is authenticated and authorised

    print(json.dumps({"endpoint_url": endpoint, "region": REGION, "input_bucket": INPUT_BUCKET,
                      "output_bucket": OUTPUT_BUCKET, "keys": keys}), flush=True)
    sys.stdin.read()
    server.shutdown()


if __name__ == "__main__":
    main()
