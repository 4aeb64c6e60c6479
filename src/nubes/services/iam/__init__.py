"""AWS IAM: roles, users, groups, policies and access keys — stored, not enforced."""

from nubes.services.base import ServiceSpec
from nubes.services.iam.provider import IamProvider

SERVICE = ServiceSpec(models=("iam",), provider=IamProvider)
