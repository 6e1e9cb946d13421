"""The local emulator (DESIGN.md §7): the stack's own program, deployed on one machine.

The program (__main__.py) is deployed into an embedded moto (:mod:`mlserve.local.deploy`), and
every stand-in is built from what was deployed: an HTTP server on 127.0.0.1 serves the deployed
REST API, the deployed Lambda functions run in this process (:mod:`mlserve.local.functions`),
ECS tasks and AWS Batch jobs run the deployed definitions as local processes
(:mod:`mlserve.local.fargate`, :mod:`mlserve.local.batch`), moto's Step Functions engine runs
the deployed state machines (:mod:`mlserve.local.stepfunctions`), and the deployed bucket
notifications invoke the functions they name (:mod:`mlserve.local.notifications`).
"""

from mlserve.local.batch import LocalBatch, LocalBatchJob
from mlserve.local.emulator import API_AUTH_MODES, Emulator
from mlserve.local.fargate import LOCAL_SCORING_IMAGE, LocalFargate, LocalTask
from mlserve.local.functions import LambdaContext, LocalFunction, RuntimeSettings
from mlserve.local.notifications import LocalS3Notifications
from mlserve.local.stepfunctions import LocalStepFunctions

__all__ = [
    "API_AUTH_MODES",
    "LOCAL_SCORING_IMAGE",
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
]
