"""Running attempts: the worker pool, the shared run folders and the stage-by-stage attempt."""

from liteport.pipeline.engine import DEFAULT_OPSET, Engine, StageTimeouts
from liteport.pipeline.pool import PoolClosed

__all__ = ["DEFAULT_OPSET", "Engine", "PoolClosed", "StageTimeouts"]
