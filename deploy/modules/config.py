"""The task service's configuration: typed arguments, parsing and validation.

Everything here is pure (no Pulumi engine, no cloud calls) so that every rule can be unit tested on
its own and a bad stack config fails before a single resource is planned, with a message that names
the key and says what is allowed.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

RUNTIMES = ("ecs", "lambda")
ARCHITECTURES = ("x86_64", "arm64")
LAMBDA_PACKAGES = ("zip", "image")
FUNCTION_URL_AUTH_TYPES = ("NONE", "AWS_IAM")

# CloudWatch Logs accepts only these retention periods (0: never expire).
LOG_RETENTION_DAYS = (
    0, 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557,
    2922, 3288, 3653,
)

# Lambda's SQS guidance: the queue's visibility timeout must be at least six times the function
# timeout (plus the batching window), so retries after throttling never see a message reappear
# while an earlier invocation may still hold it.
LAMBDA_VISIBILITY_FACTOR = 6
SQS_MAX_VISIBILITY = 43_200
# Fargate kills a container at most 120 s after SIGTERM; the adapter needs a few seconds after its
# grace period to release unfinished messages and stop the function.
FARGATE_MAX_STOP_TIMEOUT = 120
STOP_TIMEOUT_MARGIN = 5
# The adapter's function timeout, like Lambda's, is 1 to 900 seconds.
MAX_FUNCTION_TIMEOUT = 900
# How long the task queue keeps a message (the oldest-message alarm must fire before that).
QUEUE_RETENTION_SECONDS = 4 * 24 * 3600


class ConfigError(ValueError):
    """One or more configuration values are unusable; the message lists every problem at once."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid task-service configuration:\n  - " + "\n  - ".join(problems))


@dataclass(frozen=True)
class TaskServiceArgs:
    """What the task service component is built from; field names are the config keys in snake_case.

    Defaults are valid in both runtimes, so a running ECS deployment moves to Lambda by changing
    `runtime` alone (the visibility timeout, when not set, follows the runtime's rule).
    """

    enabled: bool = True
    runtime: str = "ecs"
    queue_name: str = "tasks"
    # None: the smallest value the runtime's rule allows (see `required_visibility_timeout`).
    visibility_timeout: int | None = None
    max_receive_count: int = 3
    image: str = "lambda-ecs-tasks"
    image_tag: str = "latest"
    api_desired_count: int = 2
    worker_desired_count: int = 1
    worker_min_count: int | None = None  # None: worker_desired_count
    worker_max_count: int = 4
    worker_scale_out_depth: int = 10
    worker_max_concurrency: int = 4
    api_max_concurrency: int = 64
    # Both functions use `run_concurrent`, so one process can take several invocations (the
    # adapter's --per-process-concurrency): fewer processes, less memory per task.
    api_per_process_concurrency: int = 16
    worker_per_process_concurrency: int = 4
    # None: the adapter's own choice (enough receive loops to fill the free concurrency, at most
    # 5). ECS only: Lambda scales its pollers itself.
    worker_pollers: int | None = None
    batch_size: int = 10
    batching_window: int = 0
    # Lambda's FilterCriteria as JSON ({"Filters": [{"Pattern": "..."}]}): the worker runs only the
    # messages that match a filter; the rest are deleted unrun. Both runtimes: the event source
    # mapping's FilterCriteria, or the adapter's --filter-criteria. "": no filtering.
    filter_criteria: str = ""
    # Tasks sleep up to 300 s and run concurrently within a batch; 10 s covers start-up and slack.
    worker_timeout: int = 310
    api_timeout: int = 10
    # A function URL's InvokeMode for the api: BUFFERED (Lambda's default) answers once the reply is
    # whole; RESPONSE_STREAM passes a streamed reply on as it is written. Both runtimes: the
    # FunctionUrl's invoke_mode, or the adapter's --invoke-mode.
    api_invoke_mode: str = "BUFFERED"
    shutdown_grace: int = 25
    api_cpu: int = 256
    api_memory: int = 512
    worker_cpu: int = 256
    worker_memory: int = 512
    architecture: str = "x86_64"
    # The network and cluster to reuse. From stack config these are strings; a larger stack that
    # builds the component in code may pass Outputs of its own resources instead.
    cluster_arn: str = ""
    vpc_id: str = ""
    subnet_ids: tuple[str, ...] = ()
    assign_public_ip: bool = True
    enable_load_balancer: bool = True
    alb_ingress_cidr: str = "0.0.0.0/0"
    log_retention_days: int = 14
    log_level: str = "info"
    # zip: the cargo-lambda zips; image: the very image ECS runs (from ECR), entry point set to the
    # function binary, so moving to Lambda needs no rebuild at all.
    lambda_package: str = "zip"
    lambda_code_dir: str = "../target/lambda"
    function_url_auth: str = "NONE"
    # Alarms (DLQ not empty, oldest message too old, worker errors) and a CloudWatch dashboard.
    enable_alarms: bool = True
    enable_dashboard: bool = True
    # An SNS topic the alarms notify when they fire and when they clear; "" : no notification.
    # From code it may be another resource's Output.
    alarm_topic_arn: str = ""
    # Seconds the oldest message may wait in the queue before its alarm fires. Tasks run up to
    # 300 s, so a message older than 10 minutes means the workers are not keeping up.
    alarm_oldest_message_age: int = 600
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def image_ref(self) -> str:
        """The image reference the task definitions pull."""
        return f"{self.image}:{self.image_tag}" if self.image_tag else self.image

    @property
    def effective_worker_min_count(self) -> int:
        return self.worker_desired_count if self.worker_min_count is None else self.worker_min_count

    @property
    def effective_visibility_timeout(self) -> int:
        if self.visibility_timeout is None:
            return required_visibility_timeout(self)
        return self.visibility_timeout

    @property
    def stop_timeout(self) -> int:
        """ECS stopTimeout for the worker: the adapter's grace period plus time to hand work back."""
        return self.shutdown_grace + STOP_TIMEOUT_MARGIN

    @property
    def autoscaling(self) -> bool:
        return self.worker_max_count > self.effective_worker_min_count


def required_visibility_timeout(args: TaskServiceArgs) -> int:
    """The smallest queue visibility timeout the runtime's rule allows.

    Lambda: six times the function timeout plus the batching window (AWS's documented rule).
    ECS: the adapter's `--timeout` plus the batching window. The adapter extends visibility while a
    batch runs, but with a visibility at least as long as one invocation a single failed extension
    call cannot hand a running task to a second worker.
    """
    if args.runtime == "lambda":
        return LAMBDA_VISIBILITY_FACTOR * args.worker_timeout + args.batching_window
    return args.worker_timeout + args.batching_window


_SNS_TOPIC = re.compile(r"^arn:aws(?:-[a-z]+)*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}$")
_ECR_IMAGE = re.compile(r"^\d{12}\.dkr\.ecr(?:-fips)?\.[a-z0-9-]+\.amazonaws\.com(?:\.cn)?/")

# A function URL's InvokeMode values (the adapter's --invoke-mode takes the same).
INVOKE_MODES = ("BUFFERED", "RESPONSE_STREAM")

# Config key (camelCase, as in Pulumi.<stack>.yaml) -> field name.
KEYS: dict[str, str] = {
    "".join(w.capitalize() if i else w for i, w in enumerate(f.name.split("_"))): f.name
    for f in dataclasses.fields(TaskServiceArgs)
}
FIELD_TO_KEY = {v: k for k, v in KEYS.items()}


def key(field_name: str) -> str:
    """The config key for a field, as users write it."""
    return FIELD_TO_KEY[field_name]


def _parse_bool(k: str, v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.strip().lower() in ("true", "false"):
        return v.strip().lower() == "true"
    raise ValueError(f"{k}: {v!r} is not a boolean; allowed: true or false")


def _parse_int(k: str, v: Any) -> int:
    if isinstance(v, bool):
        raise ValueError(f"{k}: {v!r} is not an integer")
    if isinstance(v, int):
        return v
    if isinstance(v, str) and re.fullmatch(r"\s*-?\d+\s*", v):
        return int(v)
    raise ValueError(f"{k}: {v!r} is not an integer")


def _parse_list(k: str, v: Any) -> tuple[str, ...]:
    """Lists come as real lists (get_object) or as JSON / comma-separated strings (the CLI)."""
    if isinstance(v, str):
        text = v.strip()
        if text.startswith("["):
            try:
                v = json.loads(text)
            except json.JSONDecodeError as e:
                raise ValueError(f"{k}: {v!r} is not a JSON list of strings ({e})") from e
        else:
            return tuple(s.strip() for s in text.split(",") if s.strip())
    if isinstance(v, (list, tuple)) and all(isinstance(s, str) for s in v):
        return tuple(v)
    raise ValueError(f"{k}: {v!r} is not a list of strings")


def _parse_tags(k: str, v: Any) -> dict[str, str]:
    if isinstance(v, str):
        try:
            v = json.loads(v)
        except json.JSONDecodeError as e:
            raise ValueError(f"{k}: {v!r} is not a JSON object of strings ({e})") from e
    if isinstance(v, Mapping) and all(isinstance(a, str) and isinstance(b, str) for a, b in v.items()):
        return dict(v)
    raise ValueError(f"{k}: {v!r} is not a map of strings to strings")


def parse(raw: Mapping[str, Any]) -> TaskServiceArgs:
    """Builds validated arguments from config keys (camelCase) to values (typed or strings).

    Unknown keys are errors, so a typo (`batchsize`) does not silently fall back to a default.
    Raises `ConfigError` listing every problem.
    """
    problems: list[str] = []
    values: dict[str, Any] = {}
    types = {f.name: f.type for f in dataclasses.fields(TaskServiceArgs)}
    for k, v in raw.items():
        name = KEYS.get(k)
        if name is None:
            problems.append(f"{k}: unknown key; known keys: {', '.join(sorted(KEYS))}")
            continue
        if v is None:
            continue
        t = types[name]
        try:
            if t == "bool":
                values[name] = _parse_bool(k, v)
            elif t.startswith("int"):
                values[name] = _parse_int(k, v)
            elif t.startswith("tuple"):
                values[name] = _parse_list(k, v)
            elif t.startswith("Mapping"):
                values[name] = _parse_tags(k, v)
            else:
                values[name] = str(v).strip()
        except ValueError as e:
            problems.append(str(e))
    if problems:
        raise ConfigError(problems)
    args = TaskServiceArgs(**values)
    check(args)
    return args


# Lambda's quota of filters per event source mapping (5 by default, 10 on request) and the length
# of one pattern; the adapter allows the same.
MAX_FILTERS = 10
MAX_PATTERN_CHARS = 4096


def filter_patterns(criteria: str) -> list[str]:
    """The patterns of `filterCriteria` (checked by `filter_criteria_problems`), in order."""
    return [f["Pattern"] for f in json.loads(criteria).get("Filters", [])] if criteria else []


def filter_criteria_problems(criteria: str) -> list[str]:
    """What is wrong with `filterCriteria`'s shape; the pattern language itself is checked by
    Lambda when the mapping is created, and by the adapter when it starts."""
    if not criteria:
        return []
    allowed = 'allowed: JSON like {"Filters": [{"Pattern": "{\\"body\\": {\\"kind\\": [\\"a\\"]}}"}]}'
    try:
        value = json.loads(criteria)
    except json.JSONDecodeError as e:
        return [f"filterCriteria: not JSON ({e}); {allowed}"]
    filters = value.get("Filters") if isinstance(value, dict) else None
    if not isinstance(value, dict) or set(value) - {"Filters"} or not isinstance(filters, list):
        return [f"filterCriteria: {criteria!r} is not a FilterCriteria object; {allowed}"]
    if len(filters) > MAX_FILTERS:
        return [f"filterCriteria: {len(filters)} filters; allowed: at most {MAX_FILTERS}"]
    problems = []
    for i, f in enumerate(filters):
        pattern = f.get("Pattern") if isinstance(f, dict) and set(f) == {"Pattern"} else None
        if not isinstance(pattern, str):
            problems.append(f"filterCriteria: filter {i} is not {{\"Pattern\": \"...\"}}; {allowed}")
            continue
        if len(pattern) > MAX_PATTERN_CHARS:
            problems.append(f"filterCriteria: filter {i} has {len(pattern)} characters; allowed: at most "
                            f"{MAX_PATTERN_CHARS}")
            continue
        try:
            parsed = json.loads(pattern)
        except json.JSONDecodeError as e:
            problems.append(f"filterCriteria: filter {i}'s pattern is not JSON ({e})")
            continue
        if not isinstance(parsed, dict) or not parsed:
            problems.append(f"filterCriteria: filter {i}'s pattern must be a non-empty JSON object")
    return problems


def _range(problems: list[str], args: TaskServiceArgs, name: str, lo: int, hi: int, why: str = "") -> None:
    v = getattr(args, name)
    if v is not None and not lo <= v <= hi:
        problems.append(f"{key(name)}: {v} is out of range; allowed: {lo} to {hi}{why}")


def validate(args: TaskServiceArgs) -> list[str]:
    """Every problem with `args`, each naming its key and what is allowed; empty when usable.

    A disabled service is always valid: a larger stack may carry half-filled config for it.
    """
    if not args.enabled:
        return []
    p: list[str] = []
    if args.runtime not in RUNTIMES:
        p.append(f"runtime: {args.runtime!r} is not supported; allowed: {' or '.join(RUNTIMES)}")
    if args.architecture not in ARCHITECTURES:
        p.append(f"architecture: {args.architecture!r} is not supported; allowed: {' or '.join(ARCHITECTURES)}")
    if args.function_url_auth not in FUNCTION_URL_AUTH_TYPES:
        p.append(f"functionUrlAuth: {args.function_url_auth!r} is not supported; allowed: "
                 f"{' or '.join(FUNCTION_URL_AUTH_TYPES)}")
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,76}", args.queue_name):
        p.append(f"queueName: {args.queue_name!r} is not a usable SQS name; allowed: 1 to 76 letters, "
                 "digits, '-' or '_' (the DLQ adds '-dlq'; FIFO queues are not supported)")
    _range(p, args, "max_receive_count", 1, 1000)
    for name in ("api_desired_count", "worker_desired_count", "worker_min_count", "worker_max_count"):
        _range(p, args, name, 0, 1000, " tasks")
    _range(p, args, "worker_scale_out_depth", 1, 1_000_000, " visible messages")
    _range(p, args, "batch_size", 1, 10_000, " (SQS event source BatchSize)")
    _range(p, args, "batching_window", 0, 300, " seconds")
    _range(p, args, "worker_timeout", 1, MAX_FUNCTION_TIMEOUT, " seconds")
    _range(p, args, "api_timeout", 1, MAX_FUNCTION_TIMEOUT, " seconds")
    _range(p, args, "api_max_concurrency", 1, 10_000)
    _range(p, args, "api_per_process_concurrency", 1, 1000, " (adapter --per-process-concurrency)")
    _range(p, args, "worker_per_process_concurrency", 1, 1000, " (adapter --per-process-concurrency)")
    _range(p, args, "worker_pollers", 1, 100, " (adapter --pollers)")
    _range(p, args, "shutdown_grace", 0, FARGATE_MAX_STOP_TIMEOUT - STOP_TIMEOUT_MARGIN,
           f" seconds (Fargate stops a task at most {FARGATE_MAX_STOP_TIMEOUT} s after SIGTERM)")
    if args.lambda_package not in LAMBDA_PACKAGES:
        p.append(f"lambdaPackage: {args.lambda_package!r} is not supported; allowed: {' or '.join(LAMBDA_PACKAGES)}")
    if args.runtime == "lambda":
        if args.lambda_package == "image" and not _ECR_IMAGE.match(args.image):
            p.append(f"image: {args.image!r} is not in ECR; allowed with lambdaPackage=image: an ECR repository "
                     "(<account>.dkr.ecr.<region>.amazonaws.com/<name>), the only registry Lambda pulls from")
        # Lambda's ScalingConfig.MaximumConcurrency is 2 to 1000.
        _range(p, args, "worker_max_concurrency", 2, 1000, " (Lambda's SQS maximum concurrency)")
        for name in ("api_memory", "worker_memory"):
            _range(p, args, name, 128, 10_240, " MB (Lambda memory size)")
    else:
        _range(p, args, "worker_max_concurrency", 1, 10_000, " (adapter --max-concurrency)")
        for name in ("api_cpu", "worker_cpu"):
            if getattr(args, name) not in (256, 512, 1024, 2048, 4096, 8192, 16384):
                p.append(f"{key(name)}: {getattr(args, name)} is not a Fargate CPU size; allowed: "
                         "256, 512, 1024, 2048, 4096, 8192 or 16384")
        for name in ("api_memory", "worker_memory"):
            _range(p, args, name, 512, 122_880, " MiB (Fargate memory)")
    if args.runtime == "ecs" or args.lambda_package == "image":
        if not args.image:
            p.append("image: empty; allowed: an image repository, e.g. "
                     "123456789012.dkr.ecr.us-east-1.amazonaws.com/tasks")
        elif args.image_tag and re.search(r"(@|:[^/]*$)", args.image):
            p.append(f"image: {args.image!r} already has a tag or digest; drop it or set imageTag to ''")
    p.extend(filter_criteria_problems(args.filter_criteria))
    if args.api_invoke_mode not in INVOKE_MODES:
        p.append(f"apiInvokeMode: {args.api_invoke_mode!r} is not an InvokeMode; allowed: {' or '.join(INVOKE_MODES)}")
    if args.batch_size > 10 and args.batching_window < 1:
        p.append(f"batchSize: {args.batch_size} needs batchingWindow of at least 1 second; allowed "
                 "without a batching window: 1 to 10 (Lambda's and the adapter's rule)")
    lo = args.effective_worker_min_count
    if args.worker_min_count is not None and lo > args.worker_desired_count:
        p.append(f"workerMinCount: {lo} is above workerDesiredCount ({args.worker_desired_count}); "
                 "allowed: 0 to workerDesiredCount")
    if args.worker_desired_count > args.worker_max_count:
        p.append(f"workerMaxCount: {args.worker_max_count} is below workerDesiredCount "
                 f"({args.worker_desired_count}); allowed: at least workerDesiredCount")
    if args.log_retention_days not in LOG_RETENTION_DAYS:
        p.append(f"logRetentionDays: {args.log_retention_days} is not a CloudWatch retention period; "
                 f"allowed: {', '.join(map(str, LOG_RETENTION_DAYS))} (0: never expire)")
    _range(p, args, "alarm_oldest_message_age", 60, QUEUE_RETENTION_SECONDS,
           " seconds (at most the queue's message retention)")
    if isinstance(args.alarm_topic_arn, str) and args.alarm_topic_arn and not _SNS_TOPIC.match(args.alarm_topic_arn):
        p.append(f"alarmTopicArn: {args.alarm_topic_arn!r} is not an SNS topic ARN; allowed: '' (no notification) "
                 "or arn:aws:sns:<region>:<account>:<topic> (a standard topic: alarms cannot notify FIFO ones)")
    if args.subnet_ids and not args.vpc_id:
        p.append("subnetIds: given without vpcId; allowed: subnets together with the VPC they belong to")
    if args.runtime in RUNTIMES and args.visibility_timeout is not None:
        need = required_visibility_timeout(args)
        rule = (f"{LAMBDA_VISIBILITY_FACTOR} x workerTimeout ({args.worker_timeout})"
                if args.runtime == "lambda" else f"workerTimeout ({args.worker_timeout}, the adapter's --timeout)")
        if args.visibility_timeout < need:
            p.append(f"visibilityTimeout: {args.visibility_timeout} is below what runtime={args.runtime} "
                     f"requires; allowed: at least {need} s = {rule} + batchingWindow "
                     f"({args.batching_window}), at most {SQS_MAX_VISIBILITY}")
        elif args.visibility_timeout > SQS_MAX_VISIBILITY:
            p.append(f"visibilityTimeout: {args.visibility_timeout} is above SQS's maximum; allowed: "
                     f"{need} to {SQS_MAX_VISIBILITY} seconds")
    return p


def check(args: TaskServiceArgs) -> None:
    """Raises `ConfigError` when `validate` finds anything."""
    problems = validate(args)
    if problems:
        raise ConfigError(problems)


def from_pulumi_config(config: Any) -> TaskServiceArgs:
    """Reads every known key from a `pulumi.Config` and validates them.

    `get` returns the raw string for every key (lists and maps set with `--path` come as JSON), so
    `subnetIds` may be JSON or comma-separated, and a malformed value is reported like any other.
    """
    raw: dict[str, Any] = {}
    for k in KEYS:
        value = config.get(k)
        if value is not None:
            raw[k] = value
    return parse(raw)
