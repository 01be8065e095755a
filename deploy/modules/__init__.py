"""The task service as a reusable Pulumi component (see task_service.TaskService)."""

from .config import ConfigError, TaskServiceArgs, check, from_pulumi_config, parse, validate
from .task_service import TaskService

__all__ = ["ConfigError", "TaskService", "TaskServiceArgs", "check", "from_pulumi_config", "parse", "validate"]
