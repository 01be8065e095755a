"""Stack entry point: read the `task-service:*` config, check it, instantiate the component.

Everything else lives in modules/, so a larger stack can import `modules.TaskService` instead.
"""

import os

import pulumi

from modules import ConfigError, TaskService, from_pulumi_config
from modules.lambda_functions import missing_artifacts
from modules.task_service import COMPONENT_NAME

try:
    args = from_pulumi_config(pulumi.Config())
except ConfigError as error:
    # RunError: one clear message listing every bad key, instead of a Python traceback.
    raise pulumi.RunError(str(error)) from error

if args.enabled and args.runtime == "lambda":
    missing = missing_artifacts(args, os.path.dirname(os.path.abspath(__file__)))
    if missing:
        raise pulumi.RunError("runtime=lambda needs the function zips; run scripts/build-lambda first. "
                              "Missing: " + ", ".join(missing))

service = TaskService(COMPONENT_NAME, args)
pulumi.export("apiUrl", service.api_url)
pulumi.export("queueUrl", service.queue_url)
pulumi.export("dlqUrl", service.dlq_url)
pulumi.export("runtime", args.runtime if args.enabled else "disabled")
# Each alarm's name, metric, comparison and threshold, and whom it notifies (modules/monitoring.py).
pulumi.export("alarms", service.alarms)
pulumi.export("dashboardName", service.dashboard_name)
pulumi.export("dashboardUrl", service.dashboard_name.apply(
    lambda name: None if name is None else
    f"https://console.aws.amazon.com/cloudwatch/home#dashboards/dashboard/{name}"))
