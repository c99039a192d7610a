"""Credentials of one run: AWS keys for the client's S3 buckets, the completion webhook URL.

GCS needs nothing here: gcsfs uses application-default credentials, which are the Workload
Identity credentials of the pod's Kubernetes service account on GKE and the ``gcloud auth
application-default login`` credentials locally.

AWS credentials come from, in this order:

1. the Prefect block named by ``credentials.aws_block`` (``LMCO2_CREDENTIALS__AWS_BLOCK``), a
   ``prefect_aws.AwsCredentials`` with keys or ``assume_role_arn``;
2. the Secret Manager secret named by ``credentials.aws_secret`` (``LMCO2_CREDENTIALS__AWS_SECRET``,
   ``projects/P/secrets/S``), holding JSON ``{"access_key_id": …, "secret_access_key": …}`` and read
   with Workload Identity;
3. nothing: boto3 and s3fs then use their standard chain (role, environment).

The webhook URL comes from ``notify.webhook_url`` (``LMCO2_NOTIFY__WEBHOOK_URL``) or the Prefect
``Secret`` block named by ``credentials.webhook_block`` (``LMCO2_CREDENTIALS__WEBHOOK_BLOCK``).

Every value found is registered with :func:`compute.logs.register_secret`, so a record that
contains it by mistake is redacted. The values are put into the in-memory settings of the run
only: manifests and artifacts are built from URLs and counts, never from storage options.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import SecretStr

from compute.i18n import OperatorError, register
from compute.logs import register_secret
from compute.settings import Settings

register(
    {
        "credentials.bad_secret_name": {
            "ja": "credentials.aws_secret={name!r} は完全なシークレット名ではありません。'projects/<project>/secrets/<secret>' の形で指定してください。",
            "en": "credentials.aws_secret={name!r} is not a full secret name; expected 'projects/<project>/secrets/<secret>'.",
        },
    }
)


def with_credentials(settings: Settings) -> Settings:
    """Return a copy of ``settings`` whose S3 roots carry the AWS credentials of the run."""
    aws = _aws_credentials(settings)
    webhook = _webhook_url(settings)
    options = {root: dict(values) for root, values in settings.storage.options.items()}
    for root in ("input", "output"):
        if getattr(settings.storage, root).startswith("s3://") and aws:
            options.setdefault(root, {}).update(aws)
    for values in options.values():
        for key in ("secret", "token"):
            register_secret(values.get(key))
    storage = settings.storage.model_copy(update={"options": options})
    notify = settings.notify.model_copy(update={"webhook_url": webhook}) if webhook is not None else settings.notify
    return settings.model_copy(update={"storage": storage, "notify": notify})


def _aws_credentials(settings: Settings) -> dict[str, Any]:
    block_name = settings.credentials.aws_block
    if block_name:
        from prefect_aws import AwsCredentials

        block: Any = AwsCredentials.load(block_name)
        frozen = block.get_boto3_session().get_credentials().get_frozen_credentials()
        return _s3fs_keys(frozen.access_key, frozen.secret_key, frozen.token)
    secret_name = settings.credentials.aws_secret
    if secret_name:
        data = json.loads(_read_gcp_secret(secret_name))
        return _s3fs_keys(data["access_key_id"], data["secret_access_key"], data.get("session_token"))
    return {}


def _s3fs_keys(key: str, secret: str, token: str | None) -> dict[str, Any]:
    register_secret(secret)
    register_secret(token)
    values: dict[str, Any] = {"key": key, "secret": secret}
    if token:
        values["token"] = token
    return values


def _read_gcp_secret(name: str) -> str:
    from google.cloud import secretmanager

    if not name.startswith("projects/"):
        raise OperatorError("credentials.bad_secret_name", name=name)
    client = secretmanager.SecretManagerServiceClient()
    response = client.access_secret_version(name=f"{name}/versions/latest")
    return response.payload.data.decode("utf-8")


def _webhook_url(settings: Settings) -> SecretStr | None:
    url = settings.notify.webhook_url
    block_name = settings.credentials.webhook_block
    if url is None and block_name:
        from prefect.blocks.system import Secret

        secret: Any = Secret.load(block_name)
        url = SecretStr(str(secret.get()))
    if url is not None:
        register_secret(url.get_secret_value())
    return url
