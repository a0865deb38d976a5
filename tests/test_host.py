"""rocmci.validate.host: GPUs from the KFD topology, render nodes from drm_render_minor, and the job's assignment
(--render-nodes / ROCMCI_RENDER_NODES) against a fake device tree; the check container's devices from it; and
`--parallel` handing out one GPU per entry."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from rocmci.plan import load_plan
from rocmci.progress import Progress
from rocmci.validate import entries as entry_loop
from rocmci.validate.entries import RunOptions, validate_entries
from rocmci.validate.host import (
    Assignment,
    DeviceAssignmentError,
    Gpu,
    NoneAssigned,
    Request,
    assigned_gpus,
    gpu_pool,
    read_kfd_gpus,
    requested_render_nodes,
)
from rocmci.validate.results import RunResult
from rocmci.validate.spec import container_spec

MI300X = 0x74A1


def fake_host(
    root: Path, gfx_versions: Sequence[int] = (90402, 90402), device_id: int = MI300X, step: int = 8
) -> tuple[Path, Path]:
    """(dev root, sys root) of an AMD host under `root`: node 0 the CPU, then one KFD node per GPU whose render minor
    steps by `step` from 128 (8 on an 8 x MI300X host: renderD128, renderD136, ...); ids in decimal as the kernel
    writes them. /dev/kfd and the render nodes are links to /dev/null, a character device as theirs are."""
    dev, sys_root = root / "dev", root / "sys"
    (dev / "dri").mkdir(parents=True)
    (dev / "kfd").symlink_to("/dev/null")
    nodes = sys_root / "devices/virtual/kfd/kfd/topology/nodes"
    for i, version in enumerate((0, *gfx_versions)):
        (nodes / str(i)).mkdir(parents=True)
        if version:
            minor = 128 + step * (i - 1)
            (dev / "dri" / f"renderD{minor}").symlink_to("/dev/null")
            extra = f"vendor_id 4098\ndevice_id {device_id}\ngpu_id {1000 + i}\ndrm_render_minor {minor}\n"
        else:
            extra = "vendor_id 0\ndevice_id 0\ngpu_id 0\ndrm_render_minor 0\n"
        (nodes / str(i) / "properties").write_text(f"cpu_cores_count 96\ngfx_target_version {version}\n{extra}")
    return dev, sys_root


# ---------------------------------------------------------------- discovery and assignment


def test_gpus_map_to_render_nodes_through_the_topology(tmp_path: Path) -> None:
    _dev, sys_root = fake_host(tmp_path, (90402, 90402, 90500))
    gpus = read_kfd_gpus(sys_root)
    assert [(g.node, g.gfx, g.render_node) for g in gpus] == [
        (1, "gfx942", "renderD128"),
        (2, "gfx942", "renderD136"),
        (3, "gfx950", "renderD144"),
    ]
    assert read_kfd_gpus(tmp_path / "no-sys") is None


def test_requests_from_option_or_environment() -> None:
    env = {"ROCMCI_RENDER_NODES": "renderD136"}
    assert requested_render_nodes(None, env) == Request(("renderD136",), "ROCMCI_RENDER_NODES")
    assert requested_render_nodes("/dev/dri/renderD128, renderD144", env) == Request(
        ("renderD128", "renderD144"), "--render-nodes"
    )
    assert requested_render_nodes(None, {}) == Request()
    with pytest.raises(DeviceAssignmentError, match=r"ROCMCI_RENDER_NODES: 'card0' is not a render node"):
        requested_render_nodes(None, {"ROCMCI_RENDER_NODES": "renderD128,card0"})
    with pytest.raises(DeviceAssignmentError, match="renderD128 is named twice"):
        requested_render_nodes("renderD128,renderD128", {})
    with pytest.raises(DeviceAssignmentError, match="--render-nodes: empty"):
        requested_render_nodes(" ", {})


def test_two_jobs_given_different_render_nodes_get_disjoint_devices(tmp_path: Path) -> None:
    dev, sys_root = fake_host(tmp_path, (90402,) * 8)
    entry = load_plan().select("mi300x")[0]
    jobs = [
        assigned_gpus(requested_render_nodes(None, {"ROCMCI_RENDER_NODES": node}), dev, sys_root)
        for node in ("renderD136", "renderD184")
    ]
    specs = [container_spec(entry, dev, job.gpus) for job in jobs]
    inside = [[d.split(":")[1] for d in spec.devices] for spec in specs]
    assert inside == [["/dev/kfd", "/dev/dri/renderD136"], ["/dev/kfd", "/dev/dri/renderD184"]]
    assert set(specs[0].render_nodes).isdisjoint(specs[1].render_nodes)
    assert specs[1].devices[1] == f"{dev}/dri/renderD184:/dev/dri/renderD184:rwm"
    assert specs[0].labels["io.rocmci.devices"] == "/dev/kfd,/dev/dri/renderD136"
    assert all("/dev/dri:" not in d for spec in specs for d in spec.devices), "never all of /dev/dri"


def test_nothing_assigned_on_a_multi_gpu_host_is_an_error_naming_the_way_out(tmp_path: Path) -> None:
    dev, sys_root = fake_host(tmp_path, (90402,) * 4)
    with pytest.raises(NoneAssigned) as raised:
        assigned_gpus(Request(), dev, sys_root)
    message = str(raised.value)
    assert "this host has 4 GPUs" in message and "none is assigned to this job" in message
    assert "--render-nodes" in message and "ROCMCI_RENDER_NODES" in message and "--parallel N" in message
    assert len(raised.value.gpus) == 4


def test_one_gpu_host_uses_its_gpu_and_no_gpu_host_none(tmp_path: Path) -> None:
    dev, sys_root = fake_host(tmp_path / "one", (90500,))
    assert assigned_gpus(Request(), dev, sys_root) == Assignment((read_kfd_gpus(sys_root)[0],), "the host's only GPU")
    bare = tmp_path / "bare"
    (bare / "dev").mkdir(parents=True)
    assert assigned_gpus(Request(), bare / "dev", bare / "sys") == Assignment((), "no GPU on this host")


@pytest.mark.parametrize(
    ("requested", "prepare", "message"),
    [
        ("renderD129", None, "renderD129 is not the render node of any GPU in the KFD topology (GPUs: renderD128 (KFD node 1"),
        ("renderD136", "unlink", "renderD136: {dev}/dri/renderD136 does not exist although the KFD topology names it"),
        ("renderD128", "no-topology", "renderD128 assigned, but there is no KFD topology at"),
    ],
)
def test_a_bad_assignment_is_a_clear_error(tmp_path: Path, requested: str, prepare: str | None, message: str) -> None:
    dev, sys_root = fake_host(tmp_path)
    if prepare == "unlink":
        (dev / "dri" / requested).unlink()
    if prepare == "no-topology":
        sys_root = tmp_path / "empty-sys"
    with pytest.raises(DeviceAssignmentError) as raised:
        assigned_gpus(Request((requested,), "--render-nodes"), dev, sys_root)
    assert str(raised.value).startswith("--render-nodes: ")
    assert message.format(dev=dev) in str(raised.value)


def test_the_parallel_pool_is_the_assignment_or_every_gpu(tmp_path: Path) -> None:
    dev, sys_root = fake_host(tmp_path, (90402,) * 4)
    assert [g.render_node for g in gpu_pool(Request(), dev, sys_root)] == ["renderD128", "renderD136", "renderD144", "renderD152"]
    chosen = gpu_pool(Request(("renderD152", "renderD136"), "ROCMCI_RENDER_NODES"), dev, sys_root)
    assert [g.render_node for g in chosen] == ["renderD152", "renderD136"]


# ---------------------------------------------------------------- --parallel: scheduling on the fake tree


def test_parallel_runs_each_amd_entry_on_one_gpu_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The scheduler alone (no container: validate_entry is replaced by a recorder): with 2 GPUs and --parallel 3,
    at most 2 AMD entries run at once, each on one GPU, never two on the same GPU."""
    dev, sys_root = fake_host(tmp_path, (90402, 90402))
    plan = load_plan()
    entries = plan.select("mi300x") + plan.select("mi325x")
    assert len(entries) >= 3, "the matrix should have several gfx942 entries"
    lock = threading.Lock()
    busy: dict[str, str] = {}
    seen: list[tuple[str, list[str]]] = []
    most = [0]

    def record(entry, options, progress, gpus=None, cancel=None) -> RunResult:
        nodes = [g.render_node for g in gpus]
        with lock:
            assert len(nodes) == 1 and nodes[0] not in busy, (entry.id, nodes, busy)
            busy[nodes[0]] = entry.id
            most[0] = max(most[0], len(busy))
            seen.append((entry.id, nodes))
        time.sleep(0.2)
        with lock:
            del busy[nodes[0]]
        return RunResult(entry.id, entry.image_ref(options.repository), options.reports_dir / entry.id, render_nodes=nodes)

    monkeypatch.setattr(entry_loop, "validate_entry", record)
    options = RunOptions("127.0.0.1:5000/unused", reports_dir=tmp_path / "reports", dev_root=dev, sys_root=sys_root, parallel=3)
    results = validate_entries(plan, entries, options, Progress(width=10))
    assert [r.entry_id for r in results] == [e.id for e in entries], "results keep the plan's order"
    assert most[0] == 2, "two GPUs: two entries at once"
    assert {n for _, nodes in seen for n in nodes} == {"renderD128", "renderD136"}


def test_sequential_run_on_a_multi_gpu_host_without_assignment_refuses_before_anything_runs(tmp_path: Path) -> None:
    dev, sys_root = fake_host(tmp_path, (90402, 90402))
    plan = load_plan()
    options = RunOptions("127.0.0.1:5000/unused", reports_dir=tmp_path / "reports", dev_root=dev, sys_root=sys_root)
    with pytest.raises(NoneAssigned, match="this host has 2 GPUs"):
        validate_entries(plan, plan.select("mi300x"), options)
    assert not (tmp_path / "reports").exists(), "nothing may be written"


def test_gpu_describes_itself() -> None:
    assert Gpu(3, 1003, "gfx950", 0x75A3, 144).describe() == "renderD144 (KFD node 3, gfx950)"
    assert Gpu(3, 1003, "gfx950", 0x75A3, None).render_node is None
