"""The pure configuration rules: defaults, parsing, and a clear error for every bad value."""

from __future__ import annotations

import pytest

from modules import ConfigError, TaskServiceArgs, check, from_pulumi_config, parse, validate
from modules.config import KEYS, required_visibility_timeout


def problems_of(**raw) -> str:
    with pytest.raises(ConfigError) as info:
        parse(raw)
    return str(info.value)


def test_defaults_are_valid_in_both_runtimes_so_one_key_moves_ecs_to_lambda():
    assert validate(TaskServiceArgs()) == []
    assert validate(TaskServiceArgs(runtime="lambda")) == []
    assert parse({}) == TaskServiceArgs()
    assert parse({"runtime": "lambda"}) == TaskServiceArgs(runtime="lambda")


def test_every_issue_key_is_configurable():
    for k in ("enabled", "runtime", "queueName", "visibilityTimeout", "maxReceiveCount", "image", "imageTag",
              "apiDesiredCount", "workerDesiredCount", "workerMaxConcurrency", "batchSize", "clusterArn",
              "vpcId", "subnetIds", "enableLoadBalancer", "logRetentionDays"):
        assert k in KEYS, k


def test_strings_from_the_cli_are_parsed_to_their_types():
    args = parse({"enabled": "true", "apiDesiredCount": "3", "subnetIds": '["subnet-1", "subnet-2"]',
                  "vpcId": "vpc-1", "enableLoadBalancer": "False", "tags": '{"team": "tasks"}'})
    assert args.api_desired_count == 3
    assert args.subnet_ids == ("subnet-1", "subnet-2")
    assert args.enable_load_balancer is False
    assert args.tags == {"team": "tasks"}
    assert parse({"subnetIds": "subnet-1, subnet-2", "vpcId": "vpc-1"}).subnet_ids == ("subnet-1", "subnet-2")


@pytest.mark.parametrize(("raw", "fragments"), [
    ({"runtime": "foo"}, ["runtime", "'foo'", "ecs or lambda"]),
    ({"apiDesiredCount": -1}, ["apiDesiredCount", "-1", "0 to 1000"]),
    ({"workerDesiredCount": "-2"}, ["workerDesiredCount", "-2", "0 to 1000"]),
    ({"batchSize": 0}, ["batchSize", "1 to 10000"]),
    ({"batchSize": 10001, "batchingWindow": 1}, ["batchSize", "1 to 10000"]),
    ({"batchSize": 11}, ["batchSize", "batchingWindow", "1 to 10"]),
    ({"maxReceiveCount": 0}, ["maxReceiveCount", "1 to 1000"]),
    ({"visibilityTimeout": 100}, ["visibilityTimeout", "runtime=ecs", "at least 310"]),
    ({"runtime": "lambda", "visibilityTimeout": 900}, ["visibilityTimeout", "runtime=lambda", "at least 1860",
                                                       "6 x workerTimeout"]),
    ({"visibilityTimeout": 50_000}, ["visibilityTimeout", "43200"]),
    ({"runtime": "lambda", "workerMaxConcurrency": 1}, ["workerMaxConcurrency", "2 to 1000"]),
    ({"workerMaxConcurrency": 0}, ["workerMaxConcurrency", "1 to 10000"]),
    ({"apiPerProcessConcurrency": 0}, ["apiPerProcessConcurrency", "1 to 1000"]),
    ({"workerPollers": 0}, ["workerPollers", "1 to 100", "--pollers"]),
    ({"filterCriteria": "{"}, ["filterCriteria", "not JSON"]),
    ({"apiInvokeMode": "STREAM"}, ["apiInvokeMode", "'STREAM'", "BUFFERED or RESPONSE_STREAM"]),
    ({"filterCriteria": '{"Filter": []}'}, ["filterCriteria", "not a FilterCriteria object"]),
    ({"filterCriteria": '{"Filters": [{"Pattern": "[1]"}]}'}, ["filterCriteria", "filter 0", "non-empty JSON object"]),
    ({"filterCriteria": '{"Filters": [{"pattern": "{}"}]}'}, ["filterCriteria", "filter 0 is not"]),
    ({"filterCriteria": '{"Filters": [' + ",".join(['{"Pattern": "{\\"a\\": [1]}"}'] * 11) + "]}"},
     ["filterCriteria", "11 filters", "at most 10"]),
    ({"workerTimeout": 901}, ["workerTimeout", "1 to 900"]),
    ({"shutdownGrace": 200}, ["shutdownGrace", "0 to 115"]),
    ({"logRetentionDays": 2}, ["logRetentionDays", "allowed: 0, 1, 3"]),
    ({"queueName": "bad name!"}, ["queueName", "letters, digits"]),
    ({"image": "repo:1.0"}, ["image", "already has a tag", "imageTag"]),
    ({"image": ""}, ["image", "empty"]),
    ({"apiCpu": 300}, ["apiCpu", "Fargate CPU", "256"]),
    ({"workerDesiredCount": 5, "workerMaxCount": 4}, ["workerMaxCount", "at least workerDesiredCount"]),
    ({"workerMinCount": 2, "workerDesiredCount": 1}, ["workerMinCount", "0 to workerDesiredCount"]),
    ({"subnetIds": ["subnet-1"]}, ["subnetIds", "vpcId"]),
    ({"architecture": "sparc"}, ["architecture", "x86_64 or arm64"]),
    ({"functionUrlAuth": "open"}, ["functionUrlAuth", "NONE or AWS_IAM"]),
    ({"apiDesiredCount": "two"}, ["apiDesiredCount", "not an integer"]),
    ({"enabled": "yes"}, ["enabled", "true or false"]),
    ({"batchsize": 5}, ["batchsize", "unknown key", "batchSize"]),
])
def test_bad_values_fail_naming_the_key_and_what_is_allowed(raw, fragments):
    message = problems_of(**raw)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_every_problem_is_reported_at_once():
    message = problems_of(runtime="lambda", batchSize=0, apiDesiredCount=-1)
    assert "batchSize" in message and "apiDesiredCount" in message


def test_a_disabled_service_accepts_incomplete_config():
    assert not parse({"enabled": "false", "runtime": "foo", "batchSize": 0}).enabled


def test_visibility_rule_per_runtime():
    ecs = TaskServiceArgs(worker_timeout=120, batching_window=5)
    lam = TaskServiceArgs(runtime="lambda", worker_timeout=120, batching_window=5)
    assert required_visibility_timeout(ecs) == 125
    assert required_visibility_timeout(lam) == 6 * 120 + 5
    # Unset, the visibility timeout follows the runtime; set, it is checked against it.
    assert ecs.effective_visibility_timeout == 125
    assert lam.effective_visibility_timeout == 725
    assert validate(TaskServiceArgs(runtime="lambda", worker_timeout=120, visibility_timeout=720)) == []
    assert validate(TaskServiceArgs(runtime="lambda", worker_timeout=120, visibility_timeout=719))
    # The largest timeouts still fit SQS's 12-hour maximum (6 x 900 + 300 < 43200).
    assert validate(TaskServiceArgs(runtime="lambda", worker_timeout=900, batching_window=300)) == []


def test_stop_timeout_fits_the_adapter_grace_period():
    assert TaskServiceArgs().stop_timeout > TaskServiceArgs().shutdown_grace == 25
    assert TaskServiceArgs(shutdown_grace=115).stop_timeout <= 120


def test_check_raises_for_args_built_in_code():
    with pytest.raises(ConfigError, match="batchSize"):
        check(TaskServiceArgs(batch_size=20_000))


class FakeConfig:
    """`pulumi.Config.get`: every value as the CLI stores it, a string (structured ones as JSON)."""

    def __init__(self, values):
        self.values = values

    def get(self, k):
        return self.values.get(k)


def test_from_pulumi_config_reads_every_key():
    args = from_pulumi_config(FakeConfig({"runtime": "lambda", "batchSize": "5", "subnetIds": '["s-1"]',
                                          "vpcId": "vpc-1", "workerMaxConcurrency": "8"}))
    assert (args.runtime, args.batch_size, args.subnet_ids, args.worker_max_concurrency) == ("lambda", 5, ("s-1",), 8)
    assert from_pulumi_config(FakeConfig({"subnetIds": "s-1,s-2", "vpcId": "v"})).subnet_ids == ("s-1", "s-2")
    with pytest.raises(ConfigError, match="runtime"):
        from_pulumi_config(FakeConfig({"runtime": "kubernetes"}))
    with pytest.raises(ConfigError, match="subnetIds: .* is not a JSON list"):
        from_pulumi_config(FakeConfig({"subnetIds": "[oops", "vpcId": "v"}))
