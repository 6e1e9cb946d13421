"""The local emulator (DESIGN.md §7): every architecture on one machine, no AWS account.

An embedded moto server stands in for AWS, an HTTP server on 127.0.0.1 stands in for API
Gateway, the real runtime handlers run in this process, ECS tasks run the real scoring
entrypoint as local processes (:mod:`mlserve.local.fargate`), and moto's Step Functions engine
runs the state machines of components/workflows.py with their Lambda tasks served in-process
(:mod:`mlserve.local.stepfunctions`), AWS Batch jobs (array children in parallel) run it too
(:mod:`mlserve.local.batch`), and S3 event notifications of the emulated bucket invoke the
real handlers in-process (:mod:`mlserve.local.notifications`). Architectures plug in through
:data:`mlserve.local.architectures.ARCHITECTURES`.
"""

from mlserve.local.architectures import (
    ARCHITECTURES,
    POLLING_MODES,
    available,
    parse_architectures,
)
from mlserve.local.batch import LocalBatch, LocalBatchJob
from mlserve.local.emulator import API_AUTH_MODES, Emulator
from mlserve.local.fargate import LOCAL_SCORING_IMAGE, LocalFargate, LocalTask
from mlserve.local.functions import LambdaContext, LocalFunction, RuntimeSettings
from mlserve.local.notifications import LocalS3Notifications
from mlserve.local.stepfunctions import LocalStepFunctions

__all__ = [
    "API_AUTH_MODES",
    "ARCHITECTURES",
    "LOCAL_SCORING_IMAGE",
    "POLLING_MODES",
    "Emulator",
    "LambdaContext",
    "LocalBatch",
    "LocalBatchJob",
    "LocalFargate",
    "LocalFunction",
    "LocalS3Notifications",
    "LocalStepFunctions",
    "LocalTask",
    "RuntimeSettings",
    "available",
    "parse_architectures",
]
