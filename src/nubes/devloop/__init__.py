"""The dev loop behind ``nubes deploy``: build function code, upload it, deploy
through a CloudFormation change set, and watch sources for changes."""
