"""Amazon Cognito user pools: sign-up, sign-in (password, SRP, refresh, custom
challenges, TOTP MFA), RS256 tokens with a JWKS nubes serves, groups, Lambda
triggers, and each pool domain's OAuth 2.0 endpoints and hosted UI."""

from nubes.services.base import HttpRoute, ServiceSpec
from nubes.services.cognito_idp.provider import CognitoProvider

_DOMAIN = r"(?P<domain>[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?)"

SERVICE = ServiceSpec(
    models=("cognito-idp",),
    provider=CognitoProvider,
    http_routes=(
        HttpRoute(
            "http_well_known",
            path=r"^/(?P<pool>[a-z]{2}(?:-[a-z]+)+-\d_[0-9A-Za-z]+)/\.well-known/(?P<doc>jwks\.json|openid-configuration)$",
            methods=("GET", "HEAD"),
        ),
        # a pool domain as AWS names it, and on localhost
        HttpRoute("http_hosted_ui", host=_DOMAIN + r"\.auth\.(?P<region>[a-z]{2}(?:-[a-z]+)+-\d)\.amazoncognito\.com"),
        HttpRoute("http_hosted_ui", host=_DOMAIN + r"\.auth\.localhost"),
        # for clients that cannot set the Host header (custom domains too)
        HttpRoute("http_hosted_ui", path=r"^/_nubes/cognito/(?P<domain>[a-z0-9][a-z0-9\-.]*)(?P<rest>/[^?]*)?$"),
    ),
)
