"""The CPU description and the training precision: parsed from /proc/cpuinfo texts given here, never this machine's."""

import logging

import pytest
import torch

from inspector.artifacts.meta import BundleMeta
from inspector.config import PreprocessSpec
from inspector.model import devices
from inspector.model.cpu import CpuDescription, describe_cpu, hardware_line, training_hardware

EPYC = """processor	: 0
vendor_id	: AuthenticAMD
model name	: AMD EPYC 9454 48-Core Processor
flags		: fpu vme sse sse2 avx avx2 fma avx512f avx512dq avx512_bf16 avx512_vnni
processor	: 1
model name	: AMD EPYC 9454 48-Core Processor
flags		: fpu vme sse sse2 avx avx2 fma avx512f avx512dq avx512_bf16 avx512_vnni
"""
SAPPHIRE_RAPIDS = """model name	: Intel(R) Xeon(R) Platinum 8480+
flags		: avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8
"""
SKYLAKE = "model name\t: Intel(R) Xeon(R) Gold 6130 CPU @ 2.10GHz\nflags\t\t: sse4_2 avx avx2 avx512f avx512cd\n"
HASWELL = "model name\t: Intel(R) Core(TM) i7-4770 CPU @ 3.40GHz\nflags\t\t: sse4_2 avx avx2 fma\n"
ARM = "processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics\n"


@pytest.mark.parametrize("text, model, flags, isa", [
    (EPYC, "AMD EPYC 9454 48-Core Processor", ("avx2", "avx512f", "avx512_bf16"), "AVX512-BF16, no AMX"),
    (SAPPHIRE_RAPIDS, "Intel(R) Xeon(R) Platinum 8480+", ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16"),
     "AMX (bf16), AVX512-BF16"),
    (SKYLAKE, "Intel(R) Xeon(R) Gold 6130 CPU @ 2.10GHz", ("avx2", "avx512f"), "AVX-512 without BF16, no AMX"),
    (HASWELL, "Intel(R) Core(TM) i7-4770 CPU @ 3.40GHz", ("avx2",), "AVX2 only"),
])
def test_cpuinfo_gives_the_model_and_the_flags_that_matter(text, model, flags, isa):
    cpu = describe_cpu(text)
    assert (cpu.model, cpu.flags, cpu.isa) == (model, flags, isa)
    assert cpu.capability == torch.backends.cpu.get_cpu_capability() and cpu.threads == torch.get_num_threads()


def test_a_cpuinfo_without_model_name_or_flags_still_describes_the_cpu():
    for text in (ARM, ""):
        cpu = describe_cpu(text)
        assert cpu.model and cpu.flags == () and cpu.isa == "no AVX2"


def _cpu(flags=("avx2", "avx512f", "avx512_bf16")) -> CpuDescription:
    return CpuDescription("AMD EPYC 9454", flags, "AVX512", threads=2, cores=2)


@pytest.mark.parametrize("asked, native, precision", [(True, True, "bf16"), (True, False, "fp32"),
                                                      (False, True, "fp32"), (False, False, "fp32")])
def test_the_precision_named_is_the_one_autocast_uses(monkeypatch, asked, native, precision):
    monkeypatch.setattr(devices, "bf16_native", lambda device: native)
    cpu = torch.device("cpu")
    assert devices.training_precision(cpu, asked) == precision
    assert devices.training_autocast(cpu, asked).fast_dtype == torch.bfloat16
    with devices.training_autocast(cpu, asked):
        assert torch.is_autocast_enabled("cpu") == (precision == "bf16")
    record = training_hardware(cpu, asked, _cpu())
    assert record == {"device": "cpu", "precision": precision, "cpu": {
        "model": "AMD EPYC 9454", "flags": ["avx2", "avx512f", "avx512_bf16"], "capability": "AVX512", "threads": 2,
        "cores": 2}}
    word = "bf16 autocast" if precision == "bf16" else "fp32"
    assert hardware_line(record) == (f"cpu, {word}; CPU AMD EPYC 9454 (avx2 avx512f avx512_bf16; torch AVX512), "
                                     "2 torch threads")


def test_no_bf16_trains_fp32_whatever_the_cpu(monkeypatch):
    monkeypatch.setattr(devices, "bf16_native", lambda device: pytest.fail("asked the hardware with bf16 off"))
    assert devices.training_precision(torch.device("cpu"), bf16=False) == "fp32"


def test_a_cpu_without_the_flags_is_said_so():
    record = training_hardware(torch.device("cpu"), False, _cpu(flags=()))
    assert "CPU AMD EPYC 9454 (no AVX2/AVX-512/AMX; torch AVX512)" in hardware_line(record)


def test_train_logs_the_precision_and_cpu(demo_data, tmp_path, caplog):
    from inspector.config import TrainConfig
    from inspector.train.fit import fit

    cfg = TrainConfig(image_size=64, epochs_frozen=0, epochs_finetune=0, batch_size=4, workers=0,
                      device="cpu", pretrained=False, anomaly=False, calibrate=False, bf16=False)
    with caplog.at_level(logging.INFO, logger="inspector.train.fit"):
        path = fit(demo_data, tmp_path, "hw", cfg)
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("training on cpu, fp32; CPU ")]
    assert len(said) == 1 and f"{torch.get_num_threads()} torch threads" in said[0]
    hardware = BundleMeta.read(path).train_hardware
    assert hardware["precision"] == "fp32" and hardware["cpu"]["model"] == describe_cpu().model


def test_bundles_without_train_hardware_still_load():
    spec = PreprocessSpec(64, 64)
    meta = BundleMeta(classes=("good", "crack"), preprocess=spec, backbone="efficientnet_lite0", name="m", version="v1",
                      weights_sha256="0" * 64)
    raw = meta.to_dict()
    assert raw["train_hardware"] is None
    del raw["train_hardware"]  # written before the field
    assert BundleMeta.from_dict(raw).train_hardware is None
    hardware = {"device": "cpu", "precision": "bf16", "cpu": _cpu().as_dict()}
    again = BundleMeta.from_dict({**raw, "train_hardware": hardware})
    assert again.train_hardware == hardware and BundleMeta.from_dict(again.to_dict()) == again


def test_threads_here_sets_the_calling_threads_count_only():
    import threading

    import torch

    from inspector.model.cpu import threads_here

    budget, seen = torch.get_num_threads(), {}

    def lane() -> None:
        threads_here(3)
        seen["lane"] = torch.get_num_threads()
        threads_here(1)  # a later predictor with other lanes: the count changes again, the default stays
        seen["again"] = torch.get_num_threads()

    def fresh() -> None:
        seen["fresh"] = torch.get_num_threads()

    for target in (lane, fresh):
        thread = threading.Thread(target=target)
        thread.start()
        thread.join()
    assert seen == {"lane": 3, "again": 1, "fresh": budget} and torch.get_num_threads() == budget
