"""Opening a committed notebook in JupyterLab does not dirty it.

JupyterLab copies the kernel's ``kernelspec`` and its ``language_info`` (from the
kernel's info reply) into the notebook's metadata when the kernel starts; a
committed notebook that lacks any of it is marked modified and autosaved, and
git then shows it changed.  This asks the project's kernel for its info, as
JupyterLab does, and checks each notebook already holds exactly that.
"""
import json

import nbformat
from jupyter_client.manager import start_new_kernel

from scgen_ablation.paths import NOTEBOOK_DIR


def test_each_committed_notebook_comes_back_unchanged_from_its_kernel():
    manager, client = start_new_kernel(kernel_name="python3")
    try:
        info = client.kernel_info(reply=True, timeout=60)["content"]["language_info"]
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    # the patch version is the machine's own (CPython 3.11.x here): a notebook opened under
    # another one changes there whatever is committed, so it is compared up to the minor
    committed_version = "3.11"
    assert info["version"].startswith(committed_version), (
        f"the kernel runs Python {info['version']}; the notebooks name {committed_version}.x")
    for path in sorted(NOTEBOOK_DIR.glob("*.ipynb")):
        committed = json.loads(path.read_text())
        opened = nbformat.reads(path.read_text(), as_version=4)
        opened.metadata["language_info"] = {  # what the kernel fills in on opening
            **info, "version": committed["metadata"]["language_info"].get("version")}
        assert json.loads(nbformat.writes(opened)) == committed, (
            f"{path.name} changes when opened: its language_info {committed['metadata'].get('language_info')} "
            f"is not the kernel's {info}")
