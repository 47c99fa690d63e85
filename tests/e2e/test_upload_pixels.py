"""What `e2train train` uploads for a data set of 8-bit pixels: the codes and their table, which
the board's loader turns back into the host's standardised images bit for bit, at a quarter of
the memory, so that CIFAR-10 passes the board's memory check where its float32 images do not."""
from __future__ import annotations

import io
import pickle
import zipfile

import numpy as np

from e2train.app.train_cli import dataset_npz
from e2train.core.pixels import Pixels
from e2train.data import datasets
from e2train.device import agent as agent_mod


def _cifar(root, n, rng):
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                         b"labels": list(rng.integers(0, 10, n))}, f, protocol=2)


def test_a_pixel_set_is_uploaded_as_codes_and_the_board_reads_the_hosts_images(tmp_path):
    _cifar(tmp_path, 6, np.random.default_rng(2))
    blob = dataset_npz("cifar10", str(tmp_path))
    with np.load(io.BytesIO(blob), allow_pickle=False) as z:
        stored = {k: z[k] for k in z.files}
    assert stored["x_train"].dtype == np.uint8 and stored["pixel_table"].shape == (3, 256)
    f = tmp_path / "up.npz"
    f.write_bytes(blob)
    xtr, ytr, xte, yte = agent_mod.load_dataset_npz(f, mem_available=None)
    htr, hytr, hte, hyte = datasets.load("cifar10", tmp_path)
    assert isinstance(xtr, Pixels)
    assert np.array_equal(xtr.standardised().view(np.uint32), htr.view(np.uint32))
    assert np.array_equal(xte.standardised().view(np.uint32), hte.view(np.uint32))
    assert np.array_equal(ytr, hytr) and np.array_equal(yte, hyte)


def test_a_set_of_other_values_is_uploaded_as_float32(tmp_path):
    blob = dataset_npz("sat6synthetic", None)
    f = tmp_path / "s.npz"
    f.write_bytes(blob)
    xtr, _, _, _ = agent_mod.load_dataset_npz(f, mem_available=None)
    assert isinstance(xtr, np.ndarray) and xtr.dtype == np.float32


def _headers_only(path, arrays: dict[str, tuple[tuple[int, ...], str]]):
    """An npz whose members hold only their .npy headers: enough for dataset_memory_bytes, which
    reads nothing else (CIFAR-10's 184 MB need not be written to test its size)."""
    with zipfile.ZipFile(path, "w") as zf:
        for key, (shape, dtype) in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array_header_1_0(buf, {"descr": np.dtype(dtype).str, "fortran_order": False,
                                                       "shape": shape})      # the magic string, then the header
            zf.writestr(f"{key}.npy", buf.getvalue())


def test_cifar10_as_uploaded_needs_a_quarter_of_its_float32_images(tmp_path):
    """CIFAR-10 as codes: 60,000 x 3 x 32 x 32 bytes, labels as int64, the table; 176 MiB, which
    the 75% rule lets through where the board reports 236 MiB available. As float32 it needs
    704 MiB and no 512 MB board can take it."""
    shapes = {"x_train": ((50000, 3, 32, 32), "u1"), "y_train": ((50000,), "<i8"),
              "x_test": ((10000, 3, 32, 32), "u1"), "y_test": ((10000,), "<i8")}
    codes, floats = tmp_path / "codes.npz", tmp_path / "floats.npz"
    _headers_only(codes, dict(shapes, pixel_table=((3, 256), "<f4")))
    _headers_only(floats, dict(shapes, x_train=((50000, 3, 32, 32), "<f4"), x_test=((10000, 3, 32, 32), "<f4")))
    need = agent_mod.dataset_memory_bytes(codes)
    assert need == 60000 * 3072 + 60000 * 8 + 3 * 256 * 4
    assert agent_mod.dataset_memory_bytes(floats) == 60000 * 3072 * 4 + 60000 * 8
    assert round(need / 2**20) == 176 and need <= agent_mod.DATASET_MEMORY_SHARE * 236 * 2**20
    assert agent_mod.dataset_memory_bytes(floats) > agent_mod.DATASET_MEMORY_SHARE * 512 * 2**20


def test_cifar_shaped_pixels_train_end_to_end_on_the_simulated_board(tmp_path, capsys):
    """Three-channel 32 x 32 images through the whole path: `e2train train`'s upload as codes and
    a per-channel table, the agent's check and loader, one epoch on the simulated board's PYNQ
    driver and C-simulated kernels, every batch looked up on the board and tallied. A second run
    on the same board does not send the data set again, and says so."""
    from e2train.app.train_cli import build_config, train_session
    from e2train.link.client import BoardClient, SimulatedBoard
    (tmp_path / "data").mkdir()
    _cifar(tmp_path / "data", 32, np.random.default_rng(6))
    cfg = build_config("e2train", None, ["epochs=1", "model=resnet8", "width=4", "batch_size=32"])
    with SimulatedBoard(data_dir=tmp_path / "board") as sim:
        with BoardClient(sim.link) as client:
            rep = train_session(client, cfg, dataset="cifar10", data_dir=str(tmp_path / "data"),
                                out=str(tmp_path / "run"), run_id="cifar", quiet=True)
            capsys.readouterr()
            again = train_session(client, dict(cfg, epochs=1), dataset="cifar10", data_dir=str(tmp_path / "data"),
                                  out=str(tmp_path / "run2"), run_id="cifar2", quiet=False)
            client.shutdown()
    assert "data set cifar10: the board already holds it" in capsys.readouterr().err
    assert again["results"]["state"] == "finished"
    res = rep["results"]
    assert res["state"] == "finished" and res["summary"]["epochs"] == 1
    with np.load(tmp_path / "board" / "datasets" / "cifar10.npz") as z:
        assert z["x_train"].dtype == np.uint8 and z["x_train"].shape == (160, 3, 32, 32)
        assert z["pixel_table"].shape == (3, 256)
    kinds = res["skips"]["arm_ops_by_kind"]
    assert kinds["standardise"] == kinds["batch"] > 0          # every gathered pixel looked up once


def test_an_agent_that_predates_pixel_codes_gets_float32_images(tmp_path, capsys):
    """A hello without "pixel_codes" (an agent from before them, which would refuse uint8 images)
    gets the standardised float32 images, the same numbers, and the user is told to update it;
    this agent says it reads codes and gets them."""
    from e2train.app.train_cli import build_config, dataset_for_agent, train_session
    from e2train.link.client import BoardClient, SimulatedBoard
    (tmp_path / "data").mkdir()
    _cifar(tmp_path / "data", 4, np.random.default_rng(8))
    blob = dataset_npz("cifar10", str(tmp_path / "data"))
    assert dataset_for_agent(blob, {"features": ["pixel_codes"]}) == (blob, None)
    floats, note = dataset_for_agent(blob, {})
    assert "predates 8-bit data sets" in note and "e2train flash --package" in note
    with np.load(io.BytesIO(floats)) as z:
        assert "pixel_table" not in z.files and z["x_train"].dtype == np.float32
        assert np.array_equal(z["x_train"], datasets.load("cifar10", tmp_path / "data")[0])
    cfg = build_config("e2train", None, ["epochs=1", "model=resnet8", "width=4", "batch_size=8"])
    with SimulatedBoard(data_dir=tmp_path / "board") as sim:
        with BoardClient(sim.link) as client:
            assert "pixel_codes" in client.hello["features"]
            client.hello = {k: v for k, v in client.hello.items() if k != "features"}     # as an older agent says it
            rep = train_session(client, cfg, dataset="cifar10", dataset_bytes=blob, out=str(tmp_path / "run"),
                                run_id="old", quiet=True)
            client.shutdown()
    assert rep["results"]["state"] == "finished"
    assert "predates 8-bit data sets" in capsys.readouterr().err
    with np.load(tmp_path / "board" / "datasets" / "cifar10.npz") as z:
        assert z["x_train"].dtype == np.float32 and "pixel_table" not in z.files
