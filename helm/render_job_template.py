"""Write the work pool's base job template for one environment to stdout.

Fills helm/prefect-base-job-template.json with the values that differ per GCP
project: the image (default of the ``image`` job variable and ``LMCO2_CLUSTER__IMAGE``
for the Dask pods) and the environment variables of ``terraform output -json
flow_environment`` (storage roots, transfer job, AWS secret name). Deployments
may still override any of them. Uses the standard library only, so it runs
with any Python 3 on an operator machine.

Usage::

    python3 helm/render_job_template.py --image IMAGE --flow-env flow-environment.json > base-job-template.json
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

TEMPLATE_PATH = Path(__file__).resolve().parent / "prefect-base-job-template.json"

#: An image reference with an explicit tag or digest; moving tags such as latest are rejected.
IMAGE_PATTERN = re.compile(r"^[a-z0-9.-]+(:[0-9]+)?(/[a-z0-9._-]+)+(:[A-Za-z0-9._-]+|@sha256:[0-9a-f]{64})$")


def render(template: dict[str, Any], image: str, flow_env: dict[str, str]) -> dict[str, Any]:
    """Return a copy of ``template`` with the image and the environment defaults filled in.

    Raises
    ------
    ValueError
        If ``image`` has no pinned tag or digest, or ``flow_env`` is not a map of strings.
    """
    if not IMAGE_PATTERN.match(image) or image.endswith(":latest"):
        raise ValueError(
            f"image {image!r} is not a pinned image reference; expected REGISTRY/PATH:TAG with a fixed tag such as 0.1.0"
        )
    if not all(isinstance(key, str) and isinstance(value, str) for key, value in flow_env.items()):
        raise ValueError("the flow environment must map variable names to strings, as `terraform output -json flow_environment` does")

    rendered = json.loads(json.dumps(template))
    variables = rendered["variables"]["properties"]
    variables["image"]["default"] = image
    variables["env"]["default"] = {**variables["env"]["default"], **flow_env, "LMCO2_CLUSTER__IMAGE": image}
    return rendered


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the lm-co2 base job template for one environment to stdout.")
    parser.add_argument("--image", required=True, help="pinned image of the flow run and the Dask pods, REGISTRY/PATH:TAG")
    parser.add_argument("--flow-env", type=Path, help="JSON file written by `terraform output -json flow_environment`")
    parser.add_argument("--template", type=Path, default=TEMPLATE_PATH, help="base job template to fill (default: %(default)s)")
    args = parser.parse_args(argv)

    flow_env = json.loads(args.flow_env.read_text()) if args.flow_env else {}
    try:
        rendered = render(json.loads(args.template.read_text()), args.image, flow_env)
    except ValueError as error:
        print(f"render_job_template.py: {error}", file=sys.stderr)
        return 2
    json.dump(rendered, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
