"""Session fixtures of the browser tests (every module in this folder shares them):

- ``frontend``: the frontend under test (``support.frontends.FRONTENDS``; test ids ``frontend-1.47``,
  ``frontend-1.58.1``), a session-scoped parameter, so pytest runs every browser test of one
  frontend before starting the next one;
- ``browser_server``: one genuine ComfyUI server (``main.py --cpu``) serving that frontend for the
  whole session. Each module puts the input files (and models) it needs into the server's folders
  before it opens its page. The start-up template browser is off (a returning user).
"""

from __future__ import annotations

import pytest

from support.comfy_server import ComfyServer
from support.frontends import FRONTEND_IDS, FRONTENDS, Frontend


@pytest.fixture(scope="session", params=FRONTENDS, ids=FRONTEND_IDS)
def frontend(request) -> Frontend:
    return request.param


@pytest.fixture(scope="session")
def browser_server(frontend, tmp_path_factory):
    frontend.require_installed()
    server = ComfyServer(tmp_path_factory.mktemp(f"browser_{frontend.id}"), frontend.server_args)
    try:
        server.set_settings({"Comfy.TutorialCompleted": True})
        yield server
    finally:
        server.stop()
