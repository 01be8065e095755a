"""docker-bake.hcl, parsed with an HCL parser (buildx is not needed): it builds the Dockerfile for
both architectures the deploy supports, with the tag the deploy pulls."""

from __future__ import annotations

import os
import re

import dockerfile
import hcl2
import pytest

from modules import TaskServiceArgs

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def unquote(value):
    """python-hcl2 keeps string literals' quotes; expressions (a variable's name) have none."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    if isinstance(value, list):
        return [unquote(v) for v in value]
    if isinstance(value, dict):
        return {unquote(k): unquote(v) for k, v in value.items() if k != "__is_block__"}
    return value


@pytest.fixture(scope="module")
def bake() -> dict:
    with open(os.path.join(REPO, "docker-bake.hcl"), encoding="utf-8") as f:
        parsed = hcl2.load(f)
    return {kind: {name: body for block in parsed.get(kind, []) for name, body in unquote(block).items()}
            for kind in ("variable", "group", "target")}


def evaluate(text: str, variables: dict) -> str:
    """`${NAME}` interpolation with the variables' defaults."""
    return re.sub(r"\$\{(\w+)\}", lambda m: variables[m[1]]["default"], text)


def dockerfile_args() -> dict[str, str]:
    found = {}
    for c in dockerfile.parse_file(os.path.join(REPO, "Dockerfile")):
        if c.cmd == "ARG":
            name, _, default = c.value[0].partition("=")
            found[name] = default
    return found


def test_default_builds_the_one_image_for_amd64_and_arm64(bake):
    assert bake["group"]["default"]["targets"] == ["image"]
    image = bake["target"]["image"]
    assert (image["context"], image["dockerfile"]) == (".", "Dockerfile")
    assert os.path.exists(os.path.join(REPO, image["context"], image["dockerfile"]))
    assert sorted(image["platforms"]) == ["linux/amd64", "linux/arm64"]


def test_default_tag_is_the_image_the_deploy_pulls(bake):
    (tag,) = bake["target"]["image"]["tags"]
    assert evaluate(tag, bake["variable"]) == TaskServiceArgs().image_ref
    registry = {**bake["variable"], "REGISTRY": {"default": "123456789012.dkr.ecr.us-east-1.amazonaws.com/"}}
    assert evaluate(tag, registry) == "123456789012.dkr.ecr.us-east-1.amazonaws.com/lambda-ecs-tasks:latest"


def test_build_args_are_the_dockerfiles_with_its_defaults(bake):
    args = bake["target"]["image"]["args"]
    declared = dockerfile_args()
    for name, expression in args.items():
        assert name in declared, f"{name} is not an ARG of the Dockerfile"
        assert bake["variable"][expression]["default"] == declared[name]


def test_local_target_loads_this_platforms_image(bake):
    local = bake["target"]["local"]
    assert (local["inherits"], local["platforms"], local["output"]) == (["image"], [], ["type=docker"])
