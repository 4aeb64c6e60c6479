"""nubes: a self-hosted serverless application platform that speaks the AWS wire protocols."""

__version__ = "0.1.0"
