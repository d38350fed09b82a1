"""Install that cannot mismatch: torch's CUDA major against cupy's (stand-ins for the version
probes), the extras, ``--nproc`` against the GPU count, and the GPU check's dry run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import torch

from gnnsys import cli
from gnnsys.errors import ConfigError, DeviceUnavailableError
from gnnsys.features import cuda_versions
from gnnsys.features.cuda_versions import PACKAGES, check_cuda_agreement
from gnnsys.launch import check_gpu_ranks

REPO = Path(__file__).resolve().parents[1]


def _torch(version="2.11.0+cu130", cuda="13.0"):
    return lambda: (version, cuda)


def _cupy(*found):
    return lambda: tuple(found)


def test_matching_majors_pass():
    found = check_cuda_agreement(_torch(), _cupy(("cupy-cuda13x", "14.2.0", 13)))
    assert found.torch_major == 13 and found.as_dict()["cupy"][0]["cuda_major"] == 13
    check_cuda_agreement(_torch("2.6.0+cu126", "12.6"), _cupy(("cupy-cuda12x", "14.2.0", 12)))


def test_mismatch_is_one_line_naming_the_two_packages():
    with pytest.raises(DeviceUnavailableError) as exc:
        check_cuda_agreement(_torch(), _cupy(("cupy-cuda12x", "14.2.0", 12)))
    msg = str(exc.value)
    assert "\n" not in msg
    assert "torch 2.11.0+cu130 is built for CUDA 13 but cupy-cuda12x 14.2.0 is for CUDA 12" in msg
    assert "pip install cupy-cuda13x nvidia-cuda-nvrtc" in msg and "gnnsys[cuda13]" in msg
    with pytest.raises(DeviceUnavailableError, match="pip install cupy-cuda12x nvidia-cuda-nvrtc-cu12"):
        check_cuda_agreement(_torch("2.6.0+cu126", "12.6"), _cupy(("cupy-cuda13x", "14.2.0", 13)))


def test_missing_or_doubled_cupy_and_cpu_torch():
    with pytest.raises(DeviceUnavailableError, match="no cupy is installed: pip install cupy-cuda13x"):
        check_cuda_agreement(_torch(), _cupy())
    with pytest.raises(DeviceUnavailableError, match="several cupy packages"):
        check_cuda_agreement(_torch(), _cupy(("cupy-cuda12x", "14.2.0", 12), ("cupy-cuda13x", "14.2.0", 13)))
    # a CPU-only torch is not a version mismatch (the device check says CUDA is missing)
    assert check_cuda_agreement(_torch("2.13.0+cpu", None), _cupy(("cupy-cuda12x", "14.2.0", 12)))


def test_real_probe_reads_the_installed_cupy_wheel():
    found = cuda_versions.probe_cupy()
    for package, _, major in found:
        assert package.startswith("cupy")
        if package != "cupy":
            assert major == int(package[len("cupy-cuda"):-1])


def test_extras_pin_matching_cupy_and_nvrtc():
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for major, (cupy, nvrtc) in PACKAGES.items():
        names = [r.split(">")[0].split("=")[0].split("<")[0] for r in extras[f"cuda{major}"]]
        assert names == [cupy, nvrtc]


def test_cli_refuses_a_mismatch_at_start_up(monkeypatch, capsys, tiny, tmp_path):
    """``gnnsys train --device cuda --features uva`` with torch for CUDA 13 and cupy for 12: one
    line on stderr, exit 2, before any dataset is opened or device used."""
    monkeypatch.setattr(cuda_versions, "probe_torch", _torch())
    monkeypatch.setattr(cuda_versions, "probe_cupy", _cupy(("cupy-cuda12x", "14.2.0", 12)))
    code = cli.main(["train", "--dataset", str(tiny.path), "--device", "cuda", "--features", "uva",
                     "--epochs", "1", "--out", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("gnnsys: error: torch 2.11.0+cu130 is built for CUDA 13")
    assert "pip install cupy-cuda13x nvidia-cuda-nvrtc" in err
    assert not (tmp_path / "run" / "config.json").exists()  # no run was started


def test_nproc_above_the_gpu_count_is_refused(monkeypatch, capsys, tiny, tmp_path):
    with pytest.raises(ConfigError, match=r"--nproc 3 with --device cuda needs 3 GPUs .* has 2"):
        check_gpu_ranks(3, "cuda", device_count=lambda: 2)
    check_gpu_ranks(2, "cuda", device_count=lambda: 2)
    check_gpu_ranks(8, "cpu", device_count=lambda: 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    code = cli.main(["train", "--dataset", str(tiny.path), "--device", "cuda", "--nproc", "2",
                     "--epochs", "1", "--out", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "--nproc 2 with --device cuda needs 2 GPUs" in err and "has 1" in err


def test_sampler_gpu_needs_cuda_device():
    from gnnsys.train import TrainConfig

    with pytest.raises(ConfigError, match="sampler gpu runs on the GPU: it needs --device cuda"):
        TrainConfig(sampler="gpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without a GPU")
def test_gpu_check_dry_run_without_a_gpu_exits_at_once_with_one_line():
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    res = subprocess.run(["bash", str(REPO / "bench" / "gpu_check.sh"), "--dry-run"],
                         capture_output=True, text=True, timeout=120, env=env, cwd=REPO)
    assert res.returncode != 0
    lines = [line for line in (res.stdout + res.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "no CUDA GPU" in lines[0]


def test_gnnsys_imports_and_builds_without_ogb(tiny, tmp_path):
    """The GPU machines have no ogb: gnnsys, its trainer and a training run without evaluation
    (what the GPU check runs) must not import it."""
    code = (
        "import sys; sys.modules['ogb'] = None\n"
        "import gnnsys, gnnsys.train, gnnsys.features.cuda_backends, gnnsys.loader.gpu_sampler\n"
        "from gnnsys.train import TrainConfig, train\n"
        f"s = train(TrainConfig(dataset={str(tiny.path)!r}, epochs=1, eval_every=0, batch_size=256, "
        f"progress=False, out={str(tmp_path / 'run')!r}))\n"
        "import json; print(json.dumps({'loss': s['final']['loss']}))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads(res.stdout.strip().splitlines()[-1])["loss"] > 0


def test_gpu_check_reports_every_failing_step_and_ends_with_json():
    """The check's parent without a GPU (a hidden test flag): each GPU step fails in its own
    process, is reported with its reason, and the next one still runs; the last line is JSON."""
    res = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_check.py"), "--without-gpu",
                          "--only", "versions,sampler", "--scale", "0.01"], capture_output=True, text=True, timeout=240,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO)
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert res.returncode == 1 and summary["ok"] is False
    assert summary["steps"]["versions"]["torch"] == torch.__version__
    sampler = summary["steps"]["sampler"]
    assert sampler["ok"] is False and "needs a CUDA GPU" in sampler["error"]
    assert set(summary["goals"]) == {"zero_copy_vs_memcpy", "uva_epoch_speedup_vs_cpu"}
