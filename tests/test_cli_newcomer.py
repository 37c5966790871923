"""The CLI for a newcomer (issue 12): a help text for every option, a progress bar that does not flood a
log, and `train --arch FILE` in the Train page's layer format."""

from __future__ import annotations

import argparse
import io
import json

from cnnlab import cli
from cnnlab.spec import summarize
from cnnlab.trainform import check_spec_text


def _subparsers(ap: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (sub,) = [a for a in ap._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def test_every_option_of_every_command_has_a_help_text():
    for name, sp in _subparsers(cli.build_parser()).items():
        missing = [a.dest for a in sp._actions
                   if not isinstance(a, argparse._HelpAction) and not a.help]  # SUPPRESS: internal, hidden on purpose
        assert missing == [], f"{name}: no help for {missing}"


def test_progress_into_a_log_writes_a_few_lines_not_thousands_of_updates():
    log = io.StringIO()  # not a terminal
    p = cli.Progress(5000, file=log)
    for step in range(1, 5001):
        p.show({"kind": "step", "step": step, "epoch": 1, "loss": 0.5, "lr": 0.01, "ips": 1000.0})
    p.show({"kind": "epoch", "epoch": 1, "train_loss": 0.5, "train_acc": 0.9, "val_loss": 0.4, "val_acc": 0.95})
    p.on_end(None, None)
    out = log.getvalue()
    assert out.count("\r") <= 5, out.count("\r")  # the hand-made bar wrote one every 0.2 s
    assert "5000/5000" in out and "epoch 1: train loss 0.5000" in out


def test_train_takes_a_custom_architecture_file_in_the_page_format(tmp_path, capsys):
    arch = tmp_path / "net.txt"
    text = "# a small net\nconv out=4 k=3\nrelu\nmaxpool k=2\n\nflatten\nlinear out=10\n"
    arch.write_text(text)
    code = cli.main(["train", "--preset", "seed002", "--arch", str(arch), "--subset", "300", "--val-size", "100",
                     "--epochs", "1", "--batch-size", "50", "--quiet", "--json"])
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and out["status"] == "done", out
    assert out["params"] == summarize(check_spec_text(text).spec).total_params
    (run,) = [p for p in (tmp_path / "checkpoints").iterdir() if p.is_dir() and not p.name.startswith(".")]
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["preset"] == "custom" and [la["type"] for la in cfg["spec"]][:2] == ["conv", "relu"]

    bad = tmp_path / "bad.json"
    bad.write_text('[{"type": "conv", "out": 4, "k": 3}, {"type": "linear", "out": 10}]')
    assert cli.main(["train", "--preset", "seed002", "--arch", str(bad), "--quiet"]) == 2
    assert "layer #2" in capsys.readouterr().err  # numbered from 1, as in the file
