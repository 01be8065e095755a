"""runtime=lambda under Pulumi's mocks: functions, event source mapping, function URL, IAM."""

from __future__ import annotations

import json
import os

import pytest

from conftest import ACCOUNT, REGION, run
from modules import TaskServiceArgs
from modules.lambda_functions import missing_artifacts

FN = "aws:lambda/function:Function"
QUEUE_ARN = f"arn:aws:sqs:{REGION}:{ACCOUNT}:tasks"


@pytest.fixture(scope="module")
def lam():
    return run(TaskServiceArgs(runtime="lambda"))


def test_the_two_binaries_become_functions(lam):
    fns = {f.name: f.inputs for f in lam.of_type(FN)}
    assert set(fns) == {"svc-enqueue", "svc-sleep"}
    for name, binary, timeout in (("svc-enqueue", "enqueue", 10), ("svc-sleep", "sleep", 310)):
        f = fns[name]
        assert (f["packageType"], f["runtime"], f["handler"], f["architectures"]) == (
            "Zip", "provided.al2023", "bootstrap", ["x86_64"])
        assert f["code"].path == f"../target/lambda/{binary}/bootstrap.zip"
        assert f["timeout"] == timeout
        assert f["environment"]["variables"]["QUEUE_URL"] == f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/tasks"
    assert fns["svc-enqueue"]["loggingConfig"]["logGroup"] == "/svc/api"
    assert fns["svc-sleep"]["loggingConfig"]["logGroup"] == "/svc/worker"


def test_lambda_runtime_creates_no_ecs_resources(lam):
    assert not {t for t in lam.types() if t.startswith(("aws:ecs/", "aws:lb/", "aws:appautoscaling/", "aws:ec2/"))}


def test_sqs_mapping_reports_batch_item_failures_with_config_batching():
    d = run(TaskServiceArgs(runtime="lambda", batch_size=100, batching_window=5, worker_max_concurrency=20))
    m = d.one("aws:lambda/eventSourceMapping:EventSourceMapping").inputs
    assert m["eventSourceArn"] == QUEUE_ARN
    assert m["functionName"].endswith("/svc-sleep")
    assert m["functionResponseTypes"] == ["ReportBatchItemFailures"]
    assert (m["batchSize"], m["maximumBatchingWindowInSeconds"]) == (100, 5)
    assert m["scalingConfig"] == {"maximumConcurrency": 20}


def test_filter_criteria_become_the_mappings():
    assert "filterCriteria" not in run(TaskServiceArgs(runtime="lambda")).one(
        "aws:lambda/eventSourceMapping:EventSourceMapping").inputs
    patterns = [json.dumps({"body": {"kind": ["a"]}}), json.dumps({"body": {"n": [{"numeric": [">", 3]}]}})]
    criteria = json.dumps({"Filters": [{"Pattern": p} for p in patterns]})
    m = run(TaskServiceArgs(runtime="lambda", filter_criteria=criteria)).one(
        "aws:lambda/eventSourceMapping:EventSourceMapping").inputs
    assert m["filterCriteria"] == {"filters": [{"pattern": p} for p in patterns]}


def test_api_invoke_mode_becomes_the_function_urls():
    assert run(TaskServiceArgs(runtime="lambda")).one("aws:lambda/functionUrl:FunctionUrl").inputs["invokeMode"] == "BUFFERED"
    d = run(TaskServiceArgs(runtime="lambda", api_invoke_mode="RESPONSE_STREAM"))
    assert d.one("aws:lambda/functionUrl:FunctionUrl").inputs["invokeMode"] == "RESPONSE_STREAM"


def test_api_has_a_public_function_url(lam):
    url = lam.one("aws:lambda/functionUrl:FunctionUrl").inputs
    assert (url["functionName"], url["authorizationType"]) == ("svc-enqueue", "NONE")
    perms = {p.inputs["action"]: p.inputs for p in lam.of_type("aws:lambda/permission:Permission")}
    assert perms["lambda:InvokeFunctionUrl"]["functionUrlAuthType"] == "NONE"
    assert perms["lambda:InvokeFunction"]["invokedViaFunctionUrl"] is True
    assert lam.outputs["api_url"].startswith("https://") and ".lambda-url." in lam.outputs["api_url"]


def test_iam_url_auth_adds_no_public_permission():
    d = run(TaskServiceArgs(runtime="lambda", function_url_auth="AWS_IAM"))
    assert d.one("aws:lambda/functionUrl:FunctionUrl").inputs["authorizationType"] == "AWS_IAM"
    assert not d.of_type("aws:lambda/permission:Permission")


def test_function_roles_are_least_privilege(lam):
    api = lam.policy("svc-enqueue-fn-policy")["Statement"]
    worker = lam.policy("svc-sleep-fn-policy")["Statement"]
    assert api[0]["Action"] == ["sqs:SendMessage", "sqs:GetQueueAttributes"]
    assert worker[0]["Action"] == ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
                                   "sqs:GetQueueAttributes"]
    assert api[0]["Resource"] == worker[0]["Resource"] == [QUEUE_ARN]
    assert api[1]["Resource"] == [f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/svc/api:*"]
    assert worker[1]["Resource"] == [f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/svc/worker:*"]
    for statement in api + worker:
        assert not any("*" in a for a in statement["Action"])
        # Log stream ARNs end in ":*" (every stream of one group); nothing else may hold a wildcard.
        assert all("*" not in r.removesuffix(":*") for r in statement["Resource"])
    for role in lam.of_type("aws:iam/role:Role"):
        assert json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]["Principal"] == {
            "Service": "lambda.amazonaws.com"}


@pytest.mark.parametrize(("worker_timeout", "window"), [(30, 0), (310, 0), (60, 20), (900, 300)])
def test_lambda_visibility_is_at_least_six_times_the_function_timeout(worker_timeout, window):
    d = run(TaskServiceArgs(runtime="lambda", worker_timeout=worker_timeout, batching_window=window))
    visibility = d.one("aws:sqs/queue:Queue", "svc-queue").inputs["visibilityTimeoutSeconds"]
    timeout = d.one(FN, "svc-sleep").inputs["timeout"]
    assert timeout == worker_timeout
    assert visibility >= 6 * timeout + window


def test_missing_zips_are_named(tmp_path):
    args = TaskServiceArgs(runtime="lambda", lambda_code_dir=str(tmp_path))
    assert missing_artifacts(args, "/") == [str(tmp_path / "enqueue/bootstrap.zip"),
                                            str(tmp_path / "sleep/bootstrap.zip")]
    for binary in ("enqueue", "sleep"):
        os.makedirs(tmp_path / binary)
        (tmp_path / binary / "bootstrap.zip").write_bytes(b"PK")
    assert missing_artifacts(args, "/") == []


def test_lambda_can_run_the_ecs_image_itself_without_a_rebuild():
    image = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/tasks"
    d = run(TaskServiceArgs(runtime="lambda", lambda_package="image", image=image, image_tag="v7"))
    for name, binary in (("svc-enqueue", "enqueue"), ("svc-sleep", "sleep")):
        f = d.one(FN, name).inputs
        assert (f["packageType"], f["imageUri"]) == ("Image", f"{image}:v7")
        assert f["imageConfig"]["entryPoints"] == [f"/app/{binary}"]
        assert "code" not in f and "runtime" not in f
    assert missing_artifacts(TaskServiceArgs(runtime="lambda", lambda_package="image", image=image), "/") == []


def test_image_package_needs_an_ecr_image():
    from modules import ConfigError, parse

    with pytest.raises(ConfigError, match=r"image: 'ghcr.io/acme/tasks' is not in ECR"):
        parse({"runtime": "lambda", "lambdaPackage": "image", "image": "ghcr.io/acme/tasks"})
    with pytest.raises(ConfigError, match="lambdaPackage: 'jar' is not supported; allowed: zip or image"):
        parse({"runtime": "lambda", "lambdaPackage": "jar"})
