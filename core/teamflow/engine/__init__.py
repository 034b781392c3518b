"""The engine: tasks, steps, leases, retries and child workflows."""

from teamflow.engine.context import StepContext, TaskInfo
from teamflow.engine.engine import Engine
from teamflow.engine.runner import Runner

__all__ = ["Engine", "Runner", "StepContext", "TaskInfo"]
