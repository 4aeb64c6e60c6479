"""One package per AWS service; see ``services.base`` for the contract."""
