"""Sweeps on real Ray Tune, from the CLI: a local Ray, a `ray start` cluster with token auth, bad addresses.

Run inside a loopback-only network namespace (see tests/sweep_support.py); each test has its own Ray
temp dir and run store. Trials are tiny: seed002 on 1000-2000 images, 1 epoch.
"""

from __future__ import annotations

import json
import shutil

import pytest

from tests.sweep_support import RayHead, cli, free_port, last_json, require_ray, short_tmp, sweep_env

LR = "lr=loguniform:0.0003:0.01"


@pytest.fixture
def ray_dirs(tmp_path):
    require_ray()
    ray_tmp = short_tmp("rt-")
    yield tmp_path / "checkpoints", ray_tmp
    shutil.rmtree(ray_tmp, ignore_errors=True)


def _runs(env: dict) -> list[dict]:
    out = cli(["runs", "--json"], env, timeout=300)
    assert out.returncode == 0, out.stderr
    return last_json(out)


def test_cli_sweep_on_a_local_ray_lands_four_runs(ray_dirs):
    store, ray_tmp = ray_dirs
    env = sweep_env(store, ray_tmp)
    out = cli(["sweep", "--preset", "seed002", "--trials", "4", "--epochs", "1", "--subset", "2000",
               "--param", LR, "--json"], env)
    assert out.returncode == 0, out.stderr[-4000:]
    res = last_json(out)
    sid = res["sweep_id"]
    assert res["status"] == "done" and res["search"] == "random" and res["space"] == [LR]
    trials = res["trials"]
    assert len(trials) == 4
    lrs = [t["params"]["lr"] for t in trials]
    assert len(set(lrs)) == 4 and all(0.0003 <= lr <= 0.01 for lr in lrs)
    for t in trials:
        assert t["status"] == "done" and isinstance(t["test_acc"], float) and t["test_acc"] > 0.5, t
        assert isinstance(t["best_val_acc"], float)
    assert res["best"]["run_id"] in {t["run_id"] for t in trials}
    assert res["best"]["best_val_acc"] == max(t["best_val_acc"] for t in trials)

    runs = _runs(env)
    mine = [r for r in runs if r["sweep"] == sid]
    assert sorted(r["id"] for r in mine) == sorted(t["run_id"] for t in trials)
    assert all(r["status"] == "done" and isinstance(r["test_acc"], float) for r in mine)
    for t in trials:  # a trial's folder is a complete run: config with its lr, curves, weights, result
        folder = store / t["run_id"]
        cfg = json.loads((folder / "config.json").read_text())
        assert cfg["sweep"] == sid and cfg["recipe"]["lr"] == t["params"]["lr"] and cfg["source"] == "sweep"
        for name in ("result.json", "last.pt", "best.pt", "epoch_1.pt", "metrics.jsonl"):
            assert (folder / name).is_file(), name
        recs = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]
        assert [r["epoch"] for r in recs if r["kind"] == "epoch"] == [1]
        assert sum(r["kind"] == "step" for r in recs) >= 30  # 63 steps of batch 32, thinned to at most 200
    listed = last_json(cli(["sweeps", "--json"], env, timeout=300))
    assert [s["sweep_id"] for s in listed] == [sid] and listed[0]["best"]["run_id"] == res["best"]["run_id"]


def test_sweep_on_a_ray_start_cluster_with_token_auth(ray_dirs):
    store, ray_tmp = ray_dirs
    head = RayHead(cpus=2)
    try:
        head.wait_ready()
        env = sweep_env(store, ray_tmp, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=head.token)
        # a wrong token: a clear message, nothing written
        bad = cli(["sweep", "--preset", "seed002", "--trials", "2", "--epochs", "1", "--subset", "1000",
                   "--param", LR, "--address", head.address, "--json"],
                  {**env, "RAY_AUTH_TOKEN": "0" * 32}, timeout=300)
        assert bad.returncode == 2, bad.stderr[-3000:]
        err = last_json(bad)
        assert err["status"] == "error" and "refused the authentication token" in err["error"], err
        assert not store.exists() or not any(store.iterdir())
        # the right token: trials run on the cluster (TPE through Optuna), land in the local store
        out = cli(["sweep", "--preset", "seed002", "--trials", "2", "--epochs", "1", "--subset", "1000",
                   "--param", LR, "--param", "optimizer=choice:sgd,adam", "--search", "tpe",
                   "--address", head.address, "--json"], env)
        assert out.returncode == 0, out.stderr[-4000:]
        res = last_json(out)
        assert res["address"] == head.address and res["search"] == "tpe"
        assert len(res["trials"]) == 2 and all(isinstance(t["test_acc"], float) for t in res["trials"])
        assert all(t["params"]["optimizer"] in ("sgd", "adam") for t in res["trials"])
        runs = _runs(env)
        assert sorted(r["id"] for r in runs if r["sweep"] == res["sweep_id"]) == sorted(
            t["run_id"] for t in res["trials"])
        # the session dir of the head holds the trials' worker logs: they ran there
        logs = list((head.tmp / "r").glob("session_*/logs/worker-*.out"))
        assert logs, "no worker ran on the cluster"
    finally:
        head.stop()


def test_unreachable_address_is_a_fast_clear_error_and_writes_nothing(ray_dirs):
    store, ray_tmp = ray_dirs
    port = free_port()  # nothing listens there
    env = sweep_env(store, ray_tmp)
    out = cli(["sweep", "--preset", "seed002", "--trials", "2", "--param", LR, "--address", f"127.0.0.1:{port}",
               "--json"], env, timeout=120)
    assert out.returncode == 2
    err = last_json(out)
    assert err["field"] == "address" and f"cannot reach a Ray cluster at 127.0.0.1:{port}" in err["error"]
    assert not store.exists() or not any(store.iterdir())
    env_addr = {**env, "RAY_ADDRESS": f"127.0.0.1:{port}"}  # RAY_ADDRESS is honoured the same way
    out = cli(["sweep", "--preset", "seed002", "--trials", "2", "--param", LR, "--json"], env_addr, timeout=120)
    assert out.returncode == 2 and "cannot reach" in last_json(out)["error"]
