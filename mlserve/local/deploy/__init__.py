"""The local deployment engine: the emulator as a second target of the one Pulumi program.

``deploy(stack, overrides, endpoint_url)`` runs __main__.py with the stack's configuration under
Pulumi's runtime and creates every resource it declares in the embedded moto with the AWS call
the provider would make (one mapper module per service: :mod:`.s3`, :mod:`.dynamodb`,
:mod:`.iam`, :mod:`.logs`, :mod:`.lambda_`, :mod:`.apigateway`, :mod:`.sfn`, :mod:`.ecs`,
:mod:`.batch`, :mod:`.ecr`, :mod:`.ec2`, :mod:`.sts`), with the few substitutions of
:mod:`.substitutions`. The result, a :class:`Deployment`, holds every resource and reads back
what was deployed.
"""

from mlserve.local.deploy.config import StackConfigError, parse_overrides, stack_config
from mlserve.local.deploy.deployment import Deployment
from mlserve.local.deploy.engine import DeploymentError, LocalProvider, deploy
from mlserve.local.deploy.runner import Registered
from mlserve.local.deploy.substitutions import SUBSTITUTIONS, Substitution

__all__ = [
    "SUBSTITUTIONS",
    "Deployment",
    "DeploymentError",
    "LocalProvider",
    "Registered",
    "StackConfigError",
    "Substitution",
    "deploy",
    "parse_overrides",
    "stack_config",
]
