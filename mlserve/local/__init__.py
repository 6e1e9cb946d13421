"""The local emulator (DESIGN.md §7): every architecture on one machine, no AWS account.

An embedded moto server stands in for AWS, an HTTP server on 127.0.0.1 stands in for API
Gateway, the real runtime handlers run in this process, and ECS tasks run the real scoring
entrypoint as local processes (:mod:`mlserve.local.fargate`). Architectures plug in through
:data:`mlserve.local.architectures.ARCHITECTURES`.
"""

from mlserve.local.architectures import ARCHITECTURES, available, parse_architectures
from mlserve.local.emulator import API_AUTH_MODES, Emulator
from mlserve.local.fargate import LOCAL_SCORING_IMAGE, LocalFargate, LocalTask
from mlserve.local.functions import LambdaContext, LocalFunction, RuntimeSettings

__all__ = [
    "API_AUTH_MODES",
    "ARCHITECTURES",
    "LOCAL_SCORING_IMAGE",
    "Emulator",
    "LambdaContext",
    "LocalFargate",
    "LocalFunction",
    "LocalTask",
    "RuntimeSettings",
    "available",
    "parse_architectures",
]
