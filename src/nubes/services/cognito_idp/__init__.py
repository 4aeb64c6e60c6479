"""Amazon Cognito user pools: sign-up, sign-in (password, SRP, refresh), RS256
tokens with a JWKS nubes serves, groups and Lambda triggers."""

from nubes.services.base import HttpRoute, ServiceSpec
from nubes.services.cognito_idp.provider import CognitoProvider

SERVICE = ServiceSpec(
    models=("cognito-idp",),
    provider=CognitoProvider,
    http_routes=(
        HttpRoute(
            "http_well_known",
            path=r"^/(?P<pool>[a-z]{2}(?:-[a-z]+)+-\d_[0-9A-Za-z]+)/\.well-known/(?P<doc>jwks\.json|openid-configuration)$",
            methods=("GET", "HEAD"),
        ),
    ),
)
