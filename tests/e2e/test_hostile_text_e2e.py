"""Imported text is shown as text (issue 11, item 7): a run zip whose name and status message hold Markdown
image and link syntax (and an HTML link) is imported through the Compare page; no page of the lab then
fetches the beacon URL or renders a link to it, and the text itself is visible as typed."""

from __future__ import annotations

import io
import json
import os
import re
import sys
import zipfile

from .conftest import REPO_ROOT
from .harness import click_button, expect_text, get_exception_blocks, goto, wait_for_app
from .test_compare_e2e import _tick_row

sys.path.insert(0, str(REPO_ROOT / "tests"))
from test_jobs import TINY, cfg  # noqa: E402

BEACON = "http://127.0.0.1:9"  # the discard port: nothing answers, but a request would still be seen
IMAGE = f"![x]({BEACON}/beacon.png)"
LINK = f"[click me]({BEACON}/link)"
HTML = f'<a href="{BEACON}/html">html link</a>'
NAME = f"{IMAGE} {LINK} {HTML}"
MESSAGE = f"crashed {IMAGE} see {LINK} or {BEACON}/bare {HTML}"


def hostile_zip() -> bytes:
    """A run zip as exported by the lab, with hostile name and status message (failed after 2 epochs)."""
    recipe = cfg(epochs=3).to_dict()
    config = {"id": "hostile-run", "preset": "tiny", "spec": TINY, "recipe": recipe, "params": 3000,
              "parent": None, "created": "2026-01-01T00:00:00+00:00"}
    epochs = [{"kind": "epoch", "epoch": e, "step": 16 * e, "train_loss": 1.0 / e, "train_acc": 0.5,
               "val_loss": 1.0 / e, "val_acc": 0.5 + 0.1 * e, "lr": 0.05, "t": float(e)} for e in (1, 2)]
    files = {
        "config.json": json.dumps(config),
        "meta.json": json.dumps({"name": NAME, "tags": [LINK], "notes": MESSAGE}),
        "status.json": json.dumps({"status": "failed", "message": MESSAGE, "epoch": 2, "step": 32,
                                   "best_val_acc": 0.7}),
        "metrics.jsonl": "".join(json.dumps(r) + "\n" for r in epochs),
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, text in files.items():
            zf.writestr(f"hostile-run/{name}", text)
    return buf.getvalue()


def _assert_inert(page, requests: list[str]) -> None:
    assert not [u for u in requests if u.startswith(BEACON)], requests
    linked = page.evaluate("""(beacon) => [...document.querySelectorAll('*')].filter(el =>
        ['href', 'xlink:href', 'src', 'srcset'].some(a => (el.getAttribute(a) || '').includes(beacon))
      ).map(el => el.outerHTML.slice(0, 200))""", BEACON)
    assert linked == [], linked
    assert get_exception_blocks(page) == []


def test_imported_markdown_and_links_are_shown_as_text_on_every_page(streamlit_server, page, tmp_path):
    zpath = tmp_path / "hostile-run.zip"
    zpath.write_bytes(hostile_zip())
    env = {"CNNLAB_CHECKPOINT_DIR": str(tmp_path / "checkpoints"),
           "CNNLAB_DATA_DIR": os.environ.get("CNNLAB_DATA_DIR", str(REPO_ROOT.parent / "shared" / "data"))}
    server = streamlit_server(REPO_ROOT / "app.py", env=env)
    requests: list[str] = []
    page.on("request", lambda req: requests.append(req.url))

    goto(page, f"{server.url}/compare")
    expect_text(page, "Compare runs")
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(zpath))
    wait_for_app(page)
    click_button(page, "Import run")
    expect_text(page, "Imported as run “hostile-run”", timeout=20_000)
    expect_text(page, "1 of 1 runs shown", timeout=20_000)
    _tick_row(page, 0)  # its curves: the name is the legend entry
    legend = page.locator('[data-testid="stPlotlyChart"] .legendtext')
    legend.first.wait_for(state="attached", timeout=20_000)
    assert any(IMAGE in t and HTML in t for t in legend.all_text_contents()), legend.all_text_contents()
    expect_text(page, re.compile("Status failed: crashed"), timeout=20_000)
    expect_text(page, MESSAGE)  # the status caption, exactly as stored
    click_button(page, "Delete run")
    expect_text(page, f"Delete “{NAME}”", timeout=20_000)  # the confirmation names it as typed
    _assert_inert(page, requests)

    goto(page, f"{server.url}/?run=hostile-run")  # the Train page: saved-runs line and the shown run
    expect_text(page, "Saved runs", timeout=20_000)
    expect_text(page, f"failed: {MESSAGE}", timeout=20_000)
    expect_text(page, f"Failed: {MESSAGE}", timeout=20_000)
    _assert_inert(page, requests)

    goto(page, f"{server.url}/draw")  # it has no weights: the Draw page must not trip over its name
    expect_text(page, "Draw a digit")
    _assert_inert(page, requests)
    assert page.errors == [], page.errors
