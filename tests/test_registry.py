import textwrap

import pytest

from bench.registry import DuplicateName, Registry, UnknownName


def test_register_get_list():
    reg: Registry[type] = Registry("widget")

    @reg.register("alpha", "the first")
    class Alpha:
        pass

    @reg.register("beta")
    class Beta:
        """Second widget.

        More text that is not the description."""

    assert reg.get("alpha") is Alpha
    assert reg.names() == ["alpha", "beta"]
    assert [e.description for e in reg.entries()] == ["the first", "Second widget."]
    assert "alpha" in reg and "gamma" not in reg


def test_duplicate_name_raises():
    reg: Registry[type] = Registry("widget")
    reg.add("alpha", int)
    with pytest.raises(DuplicateName, match="already registered"):
        reg.add("alpha", float)


def test_unknown_name_suggests_close_matches():
    reg: Registry[type] = Registry("widget")
    for n in ("kmeans32", "unet", "zhang"):
        reg.add(n, int)
    with pytest.raises(UnknownName) as exc:
        reg.get("kmean32")
    assert "Did you mean 'kmeans32'" in str(exc.value)
    assert "kmeans32, unet, zhang" in str(exc.value)


def test_base_class_checked():
    class Base:
        pass

    reg: Registry[type] = Registry("widget", base=Base)
    with pytest.raises(TypeError, match="must subclass Base"):
        reg.add("bad", int)


def write_plugin(tmp_path, group: str, dist: str, module: str, body: str, entry: str) -> None:
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(body))
    info = tmp_path / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{group}]\n{entry}\n")


def test_entry_point_method_plugin(tmp_path, monkeypatch, results):
    """A third-party method arrives through the entry-point group and trains through the shared loop."""
    write_plugin(
        tmp_path, "colorbench.methods", "bench-plugin-demo", "bench_plugin_demo",
        '''
        from dataclasses import dataclass
        import torch
        from bench.methods.base import Method, Update

        @dataclass(frozen=True)
        class P:
            scale: float = 1.0

        class ConstantAB(Method):
            """Predicts a learned constant ab."""
            Params = P
            recipe = {"adapter": "plugin-const", "training": "supervised",
                      "sizes": {"cpu": {"steps": 3, "batch_size": 2, "image_size": 32, "prepare_images": 2}}}

            def __init__(self, params, train):
                super().__init__(params, train)
                self.ab = torch.nn.Parameter(torch.zeros(2))

            def training_step(self, L, ab, step):
                pred = self.ab.view(1, 2, 1, 1).expand_as(ab) * self.params.scale
                loss = (pred - ab).abs().mean()
                yield Update("main", loss, {})

            def predict_ab(self, L):
                return self.ab.view(1, 2, 1, 1).expand(L.shape[0], 2, *L.shape[2:]) * self.params.scale
        ''',
        "plugin-const = bench_plugin_demo:ConstantAB",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    from bench.methods import METHODS

    fresh: Registry = Registry("method", "colorbench.methods")
    assert "plugin-const" in fresh.names()
    assert fresh.entry("plugin-const").source == "bench-plugin-demo"

    monkeypatch.setattr(METHODS, "_plugins_loaded", False)
    try:
        from click.testing import CliRunner

        from bench.cli import main

        out = CliRunner().invoke(main, ["list", "methods"])
        assert "plugin-const" in out.output, out.output
        out = CliRunner().invoke(main, ["run", "--methods", "plugin-const", "--dataset", "samples", "--no-progress"])
        assert out.exit_code == 0, out.output
        assert "plugin-const" in out.output
    finally:
        METHODS._entries.pop("plugin-const", None)


def test_entry_point_dataset_plugin(tmp_path, monkeypatch):
    write_plugin(
        tmp_path, "colorbench.datasets", "bench-plugin-data", "bench_plugin_data",
        '''
        import torch
        from bench.datasets.base import ImageSet

        class Checker(ImageSet):
            """Synthetic checkerboards."""
            name = "checker"
            needs_root = False
            card_data = {"short_side": None, "eval": {"mode": "full"}}  # a plugin without a card file carries its card
            def __len__(self):
                return 3
            def image_id(self, i):
                return f"c{i}"
            def load(self, i):
                return torch.full((3, 16, 16), 40 * i, dtype=torch.uint8)
        ''',
        "checker = bench_plugin_data:Checker",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    fresh: Registry = Registry("dataset", "colorbench.datasets")
    cls = fresh.get("checker")
    assert len(cls("test")) == 3 and cls("test").load(2).shape == (3, 16, 16)
