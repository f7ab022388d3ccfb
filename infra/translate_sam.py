"""Translate a SAM template to plain CloudFormation JSON, offline.

    python infra/translate_sam.py template.yaml out.json

The linters do not look inside SAM resources (the event source mapping
SAM generates, for one), so the tests lint this output too and check what
users rely on in it (tests/deploy.rs). Uses aws-sam-translator, installed
pinned by scripts/install-test-tools. The template names no managed
policies, so no AWS call is needed to resolve them.
"""

import json
import os
import sys

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse


class NoManagedPolicies:
    """The translator asks for managed policy ARNs; there are none."""

    def load(self):
        return {}


def main():
    source, target = sys.argv[1], sys.argv[2]
    with open(source, encoding="utf-8") as f:
        template = yaml_parse(f.read())
    # `sam package` replaces local code paths by S3 URIs before the
    # transform runs; do the same with a placeholder.
    for resource in template.get("Resources", {}).values():
        properties = resource.get("Properties", {})
        if resource.get("Type") == "AWS::Serverless::Function" and not str(
            properties.get("CodeUri", "")
        ).startswith("s3://"):
            properties["CodeUri"] = "s3://packaged-by-sam/shardwise.zip"
    # Pseudo-parameters need a region (read from a boto3 session); any will
    # do for the checks, and nothing is sent anywhere.
    os.environ.setdefault("AWS_DEFAULT_REGION", os.environ.get("AWS_REGION", "us-east-1"))
    translated = transform(template, {}, NoManagedPolicies())
    with open(target, "w", encoding="utf-8") as f:
        json.dump(translated, f, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
