"""Amazon DynamoDB and DynamoDB Streams on the nubes store."""

from nubes.services.base import ServiceSpec
from nubes.services.dynamodb.provider import DynamoDbProvider

SERVICE = ServiceSpec(models=("dynamodb", "dynamodbstreams"), provider=DynamoDbProvider)
