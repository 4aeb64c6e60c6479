"""The example app's own end-to-end tests (examples/inspections/tests), run as part
of the main suite against the session's ``nubes`` server."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_PATH = Path(__file__).resolve().parents[3] / "examples" / "inspections" / "tests" / "test_inspections_flow.py"
_spec = importlib.util.spec_from_file_location("inspections_flow", _PATH)
assert _spec is not None and _spec.loader is not None
_flow = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_flow)

# the fixture and the tests, collected here as if written here
app = _flow.app
test_api_needs_a_token = _flow.test_api_needs_a_token
test_create_list_and_validate = _flow.test_create_list_and_validate
test_photo_upload_is_post_processed = _flow.test_photo_upload_is_post_processed
test_approval_workflow_mails_and_pushes = _flow.test_approval_workflow_mails_and_pushes
test_failed_post_processing_goes_to_the_dead_letter_queue = _flow.test_failed_post_processing_goes_to_the_dead_letter_queue
