"""DynamoDB expressions: lexer, parser, evaluator, update actions, legacy parameters."""
